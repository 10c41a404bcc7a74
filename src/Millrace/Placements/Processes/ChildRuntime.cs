using System.Runtime.InteropServices;
using Millrace.Control;

namespace Millrace.Placements.Processes;

/// <summary>What the coordinator tells a child through its environment.</summary>
internal sealed record ChildInfo(int Group, string Dir, int[] GroupOf, string Signature, string Label, long Resume = -1)
{
    /// <summary>With checkpoints on: the complete checkpoint the children resume from (-1: none).</summary>
    public const string ResumeVariable = "MILLRACE_RESUME";
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
        Taken = true;
        var info = new ChildInfo(
            int.Parse(group),
            Environment.GetEnvironmentVariable(DirVariable) ?? throw Missing(DirVariable),
            (Environment.GetEnvironmentVariable(GroupsVariable) ?? throw Missing(GroupsVariable)).Split(',').Select(int.Parse).ToArray(),
            Environment.GetEnvironmentVariable(SignatureVariable) ?? throw Missing(SignatureVariable),
            Environment.GetEnvironmentVariable(ProcessesVariable) ?? $"group {group}",
            long.TryParse(Environment.GetEnvironmentVariable(ResumeVariable), out long resume) ? resume : -1);
        foreach (string v in new[] { GroupVariable, DirVariable, GroupsVariable, SignatureVariable, ProcessesVariable, ResumeVariable })
            Environment.SetEnvironmentVariable(v, null);
        return info;
    }

    /// <summary>This OS process is a child, and its variables were taken (removed) already.</summary>
    public static volatile bool Taken;

    /// <summary>This OS process is a child of a coordinator (before or after its variables were taken).</summary>
    public static bool IsChild => Taken || Environment.GetEnvironmentVariable(GroupVariable) is not null;

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
            control.Send(new FailureMessage(label, null, null, null,
                $"The OS process for '{label}' built a different graph than the coordinator. The graph must be built the same way " +
                "every time the program starts (no randomness, clock or environment in its names and shape).", null, info.Group));
            Environment.Exit(3);
        }

        // Hello first: nothing else may reach the coordinator before it knows who this is.
        control.Send(new Hello(info.Group, Environment.ProcessId));

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
        // Checkpoints: parts go to the shared state folder; the coordinator counts them and marks checkpoints complete.
        if (Checkpoints.Open(model, options, warn: false) is { } store)
            Checkpoints.Attach(local, store, info.Resume, new ChildCheckpoints(store, control, model));
        AppDomain.CurrentDomain.UnhandledException += (_, e) => control.Send(new FailureMessage(label, null, null, null,
            $"The OS process for '{label}' crashed: {e.ExceptionObject}", e.ExceptionObject.GetType().Name));

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
                switch (message)
                {
                    case StatusQuery query:
                        reporter.ClearPoke();
                        control.Send(new StatusReport(query.Seq, Reports(mine, runners, ReportKind.Status)));
                        break;
                    case BlockedQuery query:
                        control.Send(new BlockedReport(query.Seq, LocalStatusSource.DescribeBlocked(local)));
                        break;
                    case CheckpointRequest request:
                        foreach (ProcessRunner source in local.Where(r => r.IsSource)) source.RequestMarker(request.Checkpoint);
                        break;
                    case ForceEnd forceEnd when forceEnd.Process >= 0 && forceEnd.Process < runners.Length:
                        runners[forceEnd.Process]?.Inbox.EnqueueControl(new Envelope(EnvelopeKind.ForceEnd, null, null, 0, -1));
                        break;
                    case StopMessage stop:
                        if (stop.Hard && !Volatile.Read(ref running))
                        {
                            // Stopped at once before it started (another child failed to start): nothing to end.
                            Environment.Exit(0);
                        }
                        // A graceful stop before it started: its sources will end at once, and the rest drains as usual.
                        if (stop.Hard) run.StopAll();
                        else run.RequestStop();
                        break;
                    default:
                        control.Send(new FailureMessage(label, null, null, null,
                            $"The OS process for '{label}' received {message.GetType().Name} from its coordinator, which a child does not expect.", null));
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
            control.Send(new FailureMessage(label, null, null, null, $"Process {label}: {e.Message}", null, info.Group));
            Environment.Exit(3);
        }
        Volatile.Write(ref running, true);
        control.Send(new Ready());

        // Counts and queue depths for the coordinator's metrics and views (a few hundred bytes, four times a second).
        // The shared timer thread must not block on a socket: a thread of this child's own sends them.
        using (var stats = new StatsSender(control, () => new StatsReport(Reports(mine, runners, ReportKind.Stats)), TimeSpan.FromMilliseconds(250)))
            await host.RunProcessesAsync();

        control.Send(new FinalReport(Reports(mine, runners, ReportKind.Final)));
        // Every process here has ended and sent its end marks: the data connections may close.
        links.Dispose();
        Console.Out.Flush();
        Console.Error.Flush();
        Environment.Exit(0);
        throw new InvalidOperationException("unreachable");
    }

    private sealed class ChildCheckpoints(CheckpointStore store, ControlChannel control, GraphModel model) : ICheckpointPort
    {
        public CheckpointStore Store => store;

        public void Stored(long checkpoint, ProcessRunner runner) =>
            control.Send(new CheckpointStored(checkpoint, model.Shape.IndexOf(runner.Name)));

        public bool KeepsFinalParts => true;
    }

    private enum ReportKind { Status, Stats, Final }

    private static List<ProcessReport> Reports(int[] mine, ProcessRunner?[] runners, ReportKind kind) => mine.Select(p =>
    {
        ProcessRunner r = runners[p]!;
        ProcessStatus status = r.Status;
        bool counts = kind != ReportKind.Status;
        return new ProcessReport
        {
            Index = p,
            State = kind == ReportKind.Final ? RunnerState.Ended : status.State,
            Sent = status.Sent,
            Received = status.Received,
            ItemsIn = counts ? Volatile.Read(ref r.ItemsIn) : 0,
            Outputs = counts ? r.Outputs.ToDictionary(o => o.Stream.Name, o => o.ItemsOut) : null,
            Busy = counts ? r.BusySeconds : 0,
            Skipped = counts ? r.ItemsSkipped : 0,
            DeadLettered = counts ? r.ItemsDeadLettered : 0,
            Queued = kind == ReportKind.Stats ? r.Lanes.GroupBy(l => l.StreamName).ToDictionary(g => g.Key, g => g.Sum(l => (long)Volatile.Read(ref l.Queued))) : null,
        };
    }).ToList();

    /// <summary>Sends a stats report every interval from a thread of its own, until disposed.</summary>
    private sealed class StatsSender : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Thread _thread;

        public StatsSender(ControlChannel control, Func<ControlMessage> report, TimeSpan interval)
        {
            _thread = new Thread(() =>
            {
                while (!_stop.Token.WaitHandle.WaitOne(interval))
                {
                    if (!control.Send(report())) return;
                }
            }) { IsBackground = true, Name = "millrace stats" };
            _thread.Start();
        }

        public void Dispose()
        {
            _stop.Cancel();
            _thread.Join();
            _stop.Dispose();
        }
    }

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
            if (_cyclic && Interlocked.Exchange(ref _pokePending, 1) == 0) _control.Send(new Poke());
        }

        public void Halted(string process, string? reason) => _control.Send(new HaltMessage(process, reason));

        public void Failed(ProcessFailure failure) => _control.Send(FailureMessage.Of(failure));
    }
}
