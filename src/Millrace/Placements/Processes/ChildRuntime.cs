using System.Runtime.InteropServices;

namespace Millrace.Placements.Processes;

/// <summary>What the coordinator tells a child through its environment.</summary>
internal sealed record ChildInfo(int Group, string Dir, int[] GroupOf, string Signature, string Label)
{
    public const string GroupVariable = "MILLRACE_CHILD";
    public const string DirVariable = "MILLRACE_DIR";
    public const string GroupsVariable = "MILLRACE_GROUPS";
    public const string SignatureVariable = "MILLRACE_SIGNATURE";
    public const string ProcessesVariable = "MILLRACE_PROCESSES";

    /// <summary>
    /// Reads (and removes, so that programs the user starts do not inherit them) the variables that
    /// make this OS process a child; null when it is not one.
    /// </summary>
    public static ChildInfo? TakeFromEnvironment()
    {
        string? group = Environment.GetEnvironmentVariable(GroupVariable);
        if (group is null) return null;
        var info = new ChildInfo(
            int.Parse(group),
            Environment.GetEnvironmentVariable(DirVariable) ?? throw Missing(DirVariable),
            (Environment.GetEnvironmentVariable(GroupsVariable) ?? throw Missing(GroupsVariable)).Split(',').Select(int.Parse).ToArray(),
            Environment.GetEnvironmentVariable(SignatureVariable) ?? throw Missing(SignatureVariable),
            Environment.GetEnvironmentVariable(ProcessesVariable) ?? $"group {group}");
        foreach (string v in new[] { GroupVariable, DirVariable, GroupsVariable, SignatureVariable, ProcessesVariable })
            Environment.SetEnvironmentVariable(v, null);
        return info;
    }

    private static InvalidOperationException Missing(string variable) =>
        new($"{GroupVariable} is set but {variable} is not: this program was not started by a Millrace coordinator.");
}

/// <summary>
/// The child side of the processes placement: runs the processes of one group, talks to the
/// coordinator over the control socket and to other children over data sockets, and exits when
/// they end. It never returns to the program that called <see cref="Graph.RunAsync"/>.
/// </summary>
internal static class ChildRuntime
{
    public const int CoordinatorLostExitCode = 70;

    public static async Task<RunResult> RunAsync(GraphModel model, RunOptions options, ChildInfo info)
    {
        bool sameGraph = model.Signature == info.Signature && info.GroupOf.Length == model.Processes.Count;
        int[] mine = sameGraph ? Enumerable.Range(0, model.Processes.Count).Where(p => info.GroupOf[p] == info.Group).ToArray() : Array.Empty<int>();
        string label = info.Label;

        ControlChannel control;
        try
        {
            control = ControlChannel.Connect(Path.Combine(info.Dir, "control.sock"));
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"[millrace {label}] cannot reach the coordinator: {e.Message}");
            Environment.Exit(CoordinatorLostExitCode);
            throw;
        }

        // The coordinator decides when to stop; Ctrl+C reaches every process of the terminal's group.
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => c.Cancel = true);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => c.Cancel = true);

        if (!sameGraph)
        {
            control.Send(new ControlMessage
            {
                Type = "error", Name = label, Group = info.Group,
                Message = $"The OS process for '{label}' built a different graph than the coordinator. The graph must be built the same way " +
                          "every time the program starts (no randomness, clock or environment in its names and shape).",
            });
            Environment.Exit(3);
        }

        // Hello first: nothing else may reach the coordinator before it knows who this is.
        control.Send(new ControlMessage { Type = "hello", Group = info.Group, Pid = Environment.ProcessId });

        // The coordinator logs for the run (it hears of every halt and failure): a child saying it too would say it twice.
        options.Logger = null;
        using var host = new RunHost(model, options, mine);
        RunContext run = host.Run;
        ProcessRunner?[] runners = host.Runners;
        ProcessRunner[] local = host.Local;
        var links = new ProcessLinks(model, info.GroupOf, info.Group, info.Dir, run, options);
        host.Wire(links);
        links.Listen();
        var reporter = new ChildReporter(control, cyclic: model.Cycles.Count > 0);
        run.Reporter = reporter;
        AppDomain.CurrentDomain.UnhandledException += (_, e) => control.Send(new ControlMessage
        {
            Type = "error", Name = label,
            Message = $"The OS process for '{label}' crashed: {e.ExceptionObject}",
            Exception = e.ExceptionObject.GetType().Name,
        });

        bool running = false;
        var thread = new Thread(() =>
        {
            while (true)
            {
                ControlMessage? message = control.Read();
                if (message is null)
                {
                    // No orphans: without a coordinator nobody would ever stop this process, nor
                    // remove the run's socket folder (every child tries; the first one wins).
                    Console.Error.WriteLine($"[millrace {label}] the coordinator is gone; exiting.");
                    try
                    {
                        Directory.Delete(info.Dir, recursive: true);
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                    {
                    }
                    Environment.Exit(CoordinatorLostExitCode);
                    return;
                }
                switch (message.Type)
                {
                    case "status":
                        reporter.ClearPoke();
                        control.Send(Report("status", message.Seq, mine, runners, links, final: false));
                        break;
                    case "describe-blocked":
                        control.Send(new ControlMessage { Type = "blocked", Seq = message.Seq, Text = LocalStatusSource.DescribeBlocked(local) });
                        break;
                    case "force-end":
                        runners[message.Process]?.Inbox.EnqueueControl(new Envelope(EnvelopeKind.ForceEnd, null, null, 0, -1));
                        break;
                    case "stop":
                        if (!Volatile.Read(ref running))
                        {
                            // Stopped before it started (another child failed to start): nothing to end.
                            Environment.Exit(0);
                        }
                        if (message.Hard) run.StopAll();
                        else run.RequestStop();
                        break;
                }
            }
        })
        { IsBackground = true, Name = "millrace control" };
        thread.Start();

        // No start signal: readers already listen, and what arrives early waits in their inboxes.
        try
        {
            links.ConnectOutgoing(TimeSpan.FromSeconds(60), run.HardToken);
        }
        catch (TimeoutException e)
        {
            control.Send(new ControlMessage { Type = "error", Name = label, Group = info.Group, Message = $"Process {label}: {e.Message}" });
            Environment.Exit(3);
        }
        Volatile.Write(ref running, true);
        control.Send(new ControlMessage { Type = "ready" });

        // Counts and queue depths for the coordinator's metrics and views (a few hundred bytes, four times a second).
        using (Ticker.Every(TimeSpan.FromMilliseconds(250), () => control.Send(Report("stats", 0, mine, runners, links, final: false, stats: true))))
            await host.RunProcessesAsync();

        control.Send(Report("final", 0, mine, runners, links, final: true));
        Console.Out.Flush();
        Console.Error.Flush();
        Environment.Exit(0);
        throw new InvalidOperationException("unreachable");
    }

    private static ControlMessage Report(string type, int seq, int[] mine, ProcessRunner?[] runners, ProcessLinks links, bool final, bool stats = false) => new()
    {
        Type = type,
        Seq = seq,
        Processes = mine.Select(p =>
        {
            ProcessRunner r = runners[p]!;
            ProcessStatus status = r.Status;
            return new ProcessReport
            {
                Index = p,
                State = final ? RunnerState.Ended : status.State,
                Sent = status.Sent,
                Received = status.Received,
                ItemsIn = final || stats ? Volatile.Read(ref r.ItemsIn) : 0,
                Outputs = final || stats ? r.Outputs.ToDictionary(o => o.Stream.Name, o => o.ItemsOut) : null,
                Busy = final || stats ? r.BusySeconds : 0,
                Queued = stats ? r.Lanes.GroupBy(l => l.StreamName).ToDictionary(g => g.Key, g => g.Sum(l => (long)Volatile.Read(ref l.Queued))) : null,
            };
        }).ToList(),
    };

    private sealed class ChildReporter : IRunReporter
    {
        private readonly ControlChannel _control;
        private readonly bool _cyclic;
        private int _pokePending;

        public ChildReporter(ControlChannel control, bool cyclic)
        {
            _control = control;
            _cyclic = cyclic;
        }

        public void ClearPoke() => Volatile.Write(ref _pokePending, 0);

        public void Poke()
        {
            // One poke until the coordinator's next wave: it learns the rest from the wave itself.
            if (_cyclic && Interlocked.Exchange(ref _pokePending, 1) == 0) _control.Send(new ControlMessage { Type = "poke" });
        }

        public void Halted(string process, string? reason) =>
            _control.Send(new ControlMessage { Type = "halt", Name = process, Reason = reason });

        public void Failed(ProcessFailure failure) => _control.Send(new ControlMessage
        {
            Type = "error",
            Name = failure.Process,
            Stream = failure.Stream,
            ItemIndex = failure.ItemIndex,
            Item = failure.Item,
            Message = failure.Message,
            Exception = failure.ExceptionType,
        });
    }
}
