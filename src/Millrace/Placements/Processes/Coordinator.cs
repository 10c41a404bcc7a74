using System.Diagnostics;
using System.Net.Sockets;
using Millrace.Control;

namespace Millrace.Placements.Processes;

/// <summary>
/// The coordinator of the processes placement: starts this program again once per group of
/// processes (the same Main builds the same graph and runs only its share), connects them, runs
/// termination detection over the control sockets, watches them, and stops them.
/// </summary>
internal sealed class Coordinator
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private readonly GraphModel _model;
    private readonly RunOptions _options;
    private readonly RunContext _run;
    private readonly int[] _groupOf;
    private readonly string _dir;
    private readonly Child[] _children;
    private readonly TaskCompletionSource _allFinal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CheckpointStore? _store;
    private readonly long _resume;
    private CheckpointCoordinator? _checkpoints;
    private int _seq;

    /// <summary>The run stopped because a child died (killed, crashed), not for a reason of its own: it may start again.</summary>
    private volatile bool _childDied;

    private Coordinator(GraphModel model, RunOptions options, RunContext run, int[] groupOf, string dir, CheckpointStore? store, long resume)
    {
        _store = store;
        _resume = resume;
        _model = model;
        _options = options;
        _run = run;
        _groupOf = groupOf;
        _dir = dir;
        _children = Enumerable.Range(0, groupOf.Max() + 1)
            .Select(g => new Child(g, Enumerable.Range(0, groupOf.Length).Where(p => groupOf[p] == g).ToArray(), model))
            .ToArray();
    }

    public static async Task<RunResult> RunAsync(GraphModel model, RunOptions options, CancellationToken cancellationToken)
    {
        int[] groupOf = Groups(model, options);
        CheckpointStore? store = Checkpoints.Open(model, options);
        var restarts = new Queue<DateTime>();
        while (true)
        {
            long resume = store?.LastComplete() ?? -1;
            if (resume >= 0) Millrace.Monitoring.Log.Notice(options.Logger, "checkpoints", $"resuming from checkpoint {resume} in {store!.Path_}");
            var (result, childDied) = await AttemptAsync(model, options, groupOf, store, resume, cancellationToken);
            // A run that completed leaves nothing to resume: the next one starts afresh.
            if (store is not null && result.Outcome == RunOutcome.Completed && result.Errors.Count == 0) store.Clear();
            if (!childDied || store is null || cancellationToken.IsCancellationRequested) return result;
            DateTime now = DateTime.UtcNow;
            while (restarts.Count > 0 && now - restarts.Peek() > options.Processes.RestartWindow) restarts.Dequeue();
            string cause = result.Errors.FirstOrDefault()?.Message ?? "a child died";
            if (restarts.Count >= options.Processes.Restarts)
            {
                Millrace.Monitoring.Log.Notice(options.Logger, "restarts",
                    $"not starting again: {restarts.Count} restarts within {options.Processes.RestartWindow.TotalSeconds:0.#} s already (--restarts {options.Processes.Restarts}); the run fails with the cause: {cause}");
                return result;
            }
            restarts.Enqueue(now);
            Millrace.Monitoring.Log.Notice(options.Logger, "restarts",
                $"starting the children again from the last complete checkpoint (restart {restarts.Count} of at most {options.Processes.Restarts} within {options.Processes.RestartWindow.TotalSeconds:0.#} s) after: {cause}");
        }
    }

    private static async Task<(RunResult Result, bool ChildDied)> AttemptAsync(GraphModel model, RunOptions options, int[] groupOf,
        CheckpointStore? store, long resume, CancellationToken cancellationToken)
    {
        using var run = new RunContext(options);
        string dir = Directory.CreateTempSubdirectory("millrace-").FullName;
        try
        {
            var coordinator = new Coordinator(model, options, run, groupOf, dir, store, resume);
            RunResult result = await coordinator.RunAsync(cancellationToken);
            return (result, coordinator._childDied);
        }
        finally
        {
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Only sockets are left in it; a failure to clean up must not replace the run's result.
            }
        }
    }

    /// <summary>Which OS process (group) each process runs in: the requested groups, then one each.</summary>
    internal static int[] Groups(GraphModel model, RunOptions options)
    {
        var groupOf = new int[model.Processes.Count];
        Array.Fill(groupOf, -1);
        var index = model.Processes.Select((p, i) => (p.Name, i)).ToDictionary(x => x.Name, x => x.i);
        int next = 0;
        foreach (string[] group in options.Processes.Groups)
        {
            foreach (string name in group)
            {
                if (!index.TryGetValue(name, out int p))
                    throw new ArgumentException($"--group names process '{name}', which the graph does not have (processes: {string.Join(", ", index.Keys)}).");
                if (groupOf[p] >= 0) throw new ArgumentException($"--group names process '{name}' twice.");
                groupOf[p] = next;
            }
            if (group.Length > 0) next++;
        }
        for (int p = 0; p < groupOf.Length; p++)
        {
            if (groupOf[p] < 0) groupOf[p] = next++;
        }
        return groupOf;
    }

    private async Task<RunResult> RunAsync(CancellationToken cancellationToken)
    {
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(Path.Combine(_dir, "control.sock")));
        listener.Listen(_children.Length + 8);
        _run.HardStopRequested += () => Broadcast(new StopMessage(Hard: true));
        _run.GracefulStopRequested += () => Broadcast(new StopMessage(Hard: false));
        using IDisposable stops = StopSignals.Listen(_run, cancellationToken);

        var stopwatch = Stopwatch.StartNew();
        bool debug = Environment.GetEnvironmentVariable("MILLRACE_DEBUG") is not null;
        // The detector listens before anything runs, so that no early poke is lost.
        if (_model.Cycles.Count > 0) _run.Detector = new TerminationDetector(_run, new ChildrenStatus(this), _model);
        // Made before the children start: a process may end (and report its final part) before every child is ready.
        if (_store is not null)
        {
            _checkpoints = new CheckpointCoordinator(_run, _model.Processes.Count, RequestMarkers, AnyEnded, _store, _options.CheckpointEvery, _resume, _options.Logger)
            {
                GoesOnAfterEnds = true,
            };
        }
        _run.Detector?.Start();
        // The children first: their runtimes' start is most of a short run's time. What they say is read from the start;
        // the views start meanwhile.
        RunWatch watch;
        Task accepting = Task.CompletedTask;
        try
        {
            foreach (Child child in _children) StartChild(child);
            if (debug) Console.Error.WriteLine($"[millrace] {stopwatch.ElapsedMilliseconds} ms: children started");
            accepting = AcceptAsync(listener);
            watch = await RunMonitor.StartAsync(_model, _options, Sample);
        }
        catch
        {
            // A child that cannot be started, or a view that cannot start (a dashboard port in use), fails the run as it
            // starts: no child outlives it.
            _run.Detector?.Stop();
            KillChildren();
            throw;
        }
        await using RunWatch watched = watch;
        Task taking = Task.CompletedTask;

        if (await Started(c => c.Hello.Task, "start"))
        {
            if (debug) Console.Error.WriteLine($"[millrace] {stopwatch.ElapsedMilliseconds} ms: all said hello");
            // Each child connects to its readers and runs as soon as it can; "ready" says it got there.
            if (await Started(c => c.Ready.Task, "connect to the others"))
            {
                if (debug) Console.Error.WriteLine($"[millrace] {stopwatch.ElapsedMilliseconds} ms: all running");
                if (_checkpoints is not null) taking = _checkpoints.RunAsync();
                if (await Task.WhenAny(_allFinal.Task, _run.HardStopped) != _allFinal.Task)
                {
                    // Stopped hard (a child died, a halt, a failure): wait for the final reports of the
                    // children still alive, not for those of children that are gone and never will send one.
                    Task accounted = Task.WhenAll(_children.Select(c => c.Exited.Task));
                    await Task.WhenAny(_allFinal.Task, accounted, Task.Delay(_options.StopTimeout));
                }
            }
        }
        _checkpoints?.Stop();
        await taking;
        _run.Detector?.Stop();
        await (_run.Detector?.Completion ?? Task.CompletedTask);
        if (debug) Console.Error.WriteLine($"[millrace] {stopwatch.ElapsedMilliseconds} ms: all reported");
        stopwatch.Stop();
        await EndChildrenAsync();
        if (debug) Console.Error.WriteLine($"[millrace] {stopwatch.ElapsedMilliseconds} ms: all exited");
        listener.Dispose();
        foreach (Child child in _children) child.Control?.Dispose();
        await accepting;
        RunResult result = Result(stopwatch.Elapsed);
        // Every line the children wrote is through before the run ends.
        await Task.WhenAny(Task.WhenAll(_children.Where(c => c.Os is { HasExited: true } && c.Os.StartInfo.RedirectStandardOutput)
            .Select(c => Task.Run(() => c.Os!.WaitForExit()))), Task.Delay(5000));
        await watch.EndAsync(_run.Outcome);
        foreach (Child child in _children) child.Os?.Dispose();
        return result;
    }

    /// <summary>Checkpoints: the children that run sources send the markers of <paramref name="checkpoint"/>.</summary>
    private void RequestMarkers(long checkpoint)
    {
        foreach (Child child in _children.Where(c => c.Members.Any(p => _model.Processes[p].Source is not null)))
            child.Control?.Send(new CheckpointRequest(checkpoint));
    }

    /// <summary>A process that has ended (as its child last reported), if any: the run is finishing, and takes no more checkpoints.</summary>
    private string? AnyEnded()
    {
        foreach (Child c in _children)
        {
            if (c.Final is not null) return _model.Processes[c.Members[0]].Name;
            if (c.Stats?.FirstOrDefault(r => r.State == RunnerState.Ended) is { } report) return _model.Processes[report.Index].Name;
        }
        return null;
    }

    /// <summary>Waits until every child has passed a start-up step; false if the run failed or stopped meanwhile.</summary>
    private async Task<bool> Started(Func<Child, Task> step, string what)
    {
        Task all = Task.WhenAll(_children.Select(step));
        Task first = await Task.WhenAny(all, _run.HardStopped, Task.Delay(StartTimeout));
        if (first == all) return true;
        if (!_run.HardStopped.IsCompleted)
        {
            foreach (Child c in _children.Where(c => !step(c).IsCompleted))
                _run.Fail(Failure(c, $"did not {what} within {StartTimeout.TotalSeconds:0} s"));
        }
        return false;
    }

    private void StartChild(Child child)
    {
        var (file, args) = SelfCommand();
        var info = new ProcessStartInfo(file) { UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        info.Environment[ChildInfo.GroupVariable] = child.Group.ToString();
        info.Environment[ChildInfo.DirVariable] = _dir;
        info.Environment[ChildInfo.GroupsVariable] = string.Join(",", _groupOf);
        info.Environment[ChildInfo.SignatureVariable] = _model.Signature;
        info.Environment[ChildInfo.ProcessesVariable] = child.Label;
        if (_store is not null) info.Environment[ChildInfo.ResumeVariable] = _resume.ToString(System.Globalization.CultureInfo.InvariantCulture);
        // On a terminal, a live view may be drawing: the children's lines come through this program's
        // standard output, so the view can show them instead of drawing over them.
        bool forward = !Console.IsOutputRedirected;
        info.RedirectStandardOutput = forward;
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        process.Exited += (_, _) => _ = OnExitedAsync(child);
        if (forward) process.OutputDataReceived += (_, e) => { if (e.Data is not null) Console.Out.WriteLine(e.Data); };
        child.Os = process;
        process.Start();
        if (forward) process.BeginOutputReadLine();
        child.Pid = process.Id;
    }

    /// <summary>How to start this program again: the same host, entry assembly and arguments.</summary>
    private static (string File, string[] Args) SelfCommand()
    {
        string host = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot tell which executable runs this program.");
        string[] args = Environment.GetCommandLineArgs();
        // Under `dotnet app.dll`, the host is dotnet and args[0] is the app; an apphost or a published executable is the app itself.
        bool viaDotnet = Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.OrdinalIgnoreCase);
        return viaDotnet ? (host, args) : (host, args[1..]);
    }

    private async Task AcceptAsync(Socket listener)
    {
        var readers = new List<Task>();
        for (int accepted = 0; accepted < _children.Length; accepted++)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                break;
            }
            readers.Add(ReadChildAsync(new ControlChannel(socket)));
        }
        await Task.WhenAll(readers);
    }

    private async Task ReadChildAsync(ControlChannel control)
    {
        Child? child = null;
        try
        {
            while (await control.ReadAsync() is { } message)
            {
                if (child is null || !child.Hello.Task.IsCompleted)
                {
                    if (message is FailureMessage failure)
                    {
                        // A child that fails before saying hello (a different graph, say).
                        if (failure.Group >= 0 && failure.Group < _children.Length)
                        {
                            child = _children[failure.Group];
                            child.LastError = failure.Message;
                        }
                        _run.Fail(failure.ToFailure());
                        continue;
                    }
                    if (message is not Hello hello || hello.Group < 0 || hello.Group >= _children.Length)
                        throw new InvalidDataException($"A child began its control connection with {message.GetType().Name} instead of hello.");
                    child = _children[hello.Group];
                    child.Control = control;
                    Interlocked.MemoryBarrier(); // a stop broadcast either sees this control channel or is seen below
                    child.Pid = hello.Pid;
                    child.Hello.TrySetResult();
                    // Said hello after the run was told to stop: it missed the broadcast (a second stop message is harmless).
                    if (_run.HardStopped.IsCompleted) control.Send(new StopMessage(Hard: true));
                    else if (_run.StopRequested) control.Send(new StopMessage(Hard: false));
                    continue;
                }
                Handle(child, message);
            }
        }
        catch (InvalidDataException e)
        {
            _run.Fail(new ProcessFailure(child?.Label ?? "?", null, null, null, $"The control connection of a child broke: {e.Message}", e));
        }
        finally
        {
            child?.ControlClosed.TrySetResult();
        }
    }

    private void Handle(Child child, ControlMessage message)
    {
        switch (message)
        {
            case Ready:
                child.Ready.TrySetResult();
                break;
            case Poke:
                _run.Detector?.Poke();
                break;
            case StatusReport { Seq: var seq }:
                Answer(child, seq, message);
                break;
            case BlockedReport { Seq: var seq }:
                Answer(child, seq, message);
                break;
            case HaltMessage halt:
                _run.Halt(halt.Process, halt.Reason);
                break;
            case FailureMessage failure:
                _run.Fail(failure.ToFailure());
                child.LastError = failure.Message;
                break;
            case StatsReport stats:
                child.Stats = stats.Processes;
                break;
            case CheckpointStored stored:
                if ((uint)stored.Process < (uint)_model.Processes.Count) _checkpoints?.Stored(stored.Checkpoint, _model.Processes[stored.Process].Name);
                break;
            case FinalReport final:
                // Final first, then every question still open is answered with it; a question asked
                // from now on sees Final itself (ChildrenStatus.AskAll). Whoever removes a question answers it.
                child.Final = final.Processes;
                foreach (int seq in child.Pending.Keys) Answer(child, seq, final);
                if (_children.All(c => c.Final is not null))
                {
                    _run.ProcessesEnded();
                    _allFinal.TrySetResult();
                }
                break;
            default:
                throw new InvalidDataException($"A child sent {message.GetType().Name}, which children do not send.");
        }
    }

    private static void Answer(Child child, int seq, ControlMessage reply)
    {
        if (child.Pending.TryRemove(seq, out var question)) question.TrySetResult(reply);
    }

    private async Task OnExitedAsync(Child child)
    {
        // What it wrote before dying (its final report, an error) comes first.
        await Task.WhenAny(child.ControlClosed.Task, Task.Delay(2000));
        // A child that reported its own error has explained itself; one that leaves cleanly after
        // being told to stop (before it ran, say) did as asked.
        bool explained = child.LastError is not null || (_run.HardStopped.IsCompleted && child.Os!.ExitCode == 0);
        if (child.Final is null && !child.KilledByCoordinator && !explained)
        {
            int code = child.Os!.ExitCode;
            string how = code > 128 ? $"killed by signal {code - 128}{SignalName(code - 128)}" : $"exited with code {code}";
            if (code == 0 && child.Hello.Task.IsCompleted) how = "exited without reporting (did the program end before its run did?)";
            // The first thing to go wrong, after the children started: the run may start again from its last checkpoint.
            if (_run.Errors.Count == 0 && !_run.HardStopped.IsCompleted && (child.Hello.Task.IsCompleted || code > 128)) _childDied = true;
            _run.Fail(Failure(child, (child.Hello.Task.IsCompleted ? "died: " : "died before it started: ") + how));
        }
        child.Exited.TrySetResult();
    }

    private static string SignalName(int signal) => signal switch
    {
        2 => " (SIGINT)",
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    };

    private ProcessFailure Failure(Child child, string what) =>
        new(child.Label, null, null, null,
            $"Process {string.Join(", ", child.Members.Select(p => $"'{_model.Processes[p].Name}'"))} (OS process {child.Pid}) {what}.", null);

    /// <summary>Every child has reported or is told to stop; wait for them to exit, and kill those that do not.</summary>
    private async Task EndChildrenAsync()
    {
        if (_children.Any(c => c.Final is null)) _run.StopAll();
        Task exited = Task.WhenAll(_children.Where(c => c.Os is not null).Select(c => c.Exited.Task));
        if (await Task.WhenAny(exited, Task.Delay(_options.StopTimeout)) == exited) return;
        foreach (Child child in _children.Where(c => c.Os is not null && !c.Exited.Task.IsCompleted))
        {
            child.KilledByCoordinator = true;
            if (child.Final is null)
                _run.Fail(Failure(child, $"did not stop within {_options.StopTimeout.TotalSeconds:0.#} s and was killed"));
            try
            {
                child.Os!.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }
        }
        await Task.WhenAny(exited, Task.Delay(5000));
    }

    /// <summary>The run failed before it ran (a view could not start): the children started are killed, not left waiting.</summary>
    private void KillChildren()
    {
        foreach (Child child in _children.Where(c => c.Os is not null))
        {
            child.KilledByCoordinator = true;
            try
            {
                child.Os!.Kill(entireProcessTree: true);
                child.Os.WaitForExit(5000);
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // Already gone.
            }
        }
    }

    private void Broadcast(ControlMessage message)
    {
        foreach (Child child in _children)
        {
            if (child.Final is null) child.Control?.Send(message);
        }
    }

    private RunResult Result(TimeSpan duration)
    {
        var processes = new Dictionary<string, ProcessStats>();
        var written = _model.Streams.Keys.ToDictionary(s => s, _ => 0L);
        foreach (Child child in _children)
        {
            foreach (int p in child.Members)
            {
                ProcessReport? report = child.Final?.FirstOrDefault(r => r.Index == p);
                long itemsOut = report?.Outputs?.Values.Sum() ?? 0;
                processes[_model.Processes[p].Name] = new ProcessStats(report?.ItemsIn ?? 0, itemsOut, child.Pid, 0, report?.Skipped ?? 0, report?.DeadLettered ?? 0);
                foreach (var (stream, count) in report?.Outputs ?? new Dictionary<string, long>())
                    written[stream] += count;
            }
        }
        return RunResult.From(_run, duration, processes, written.ToDictionary(w => w.Key, w => new StreamStats(w.Value)));
    }

    /// <summary>The run as its children last reported it (every 250 ms), their final reports once they have ended.</summary>
    private RunSample Sample(double elapsed)
    {
        IReadOnlyList<ProcessFailure> errors = _run.Errors;
        var processes = new List<ProcessSample>();
        var queues = new List<QueueSample>();
        foreach (Child child in _children)
        {
            IReadOnlyList<ProcessReport>? last = child.Final ?? child.Stats;
            foreach (int p in child.Members)
            {
                string name = _model.Processes[p].Name;
                ProcessReport? report = last?.FirstOrDefault(r => r.Index == p);
                processes.Add(new ProcessSample(name, report?.ItemsIn ?? 0, report?.Outputs?.Values.Sum() ?? 0, errors.Count(e => e.Process == name),
                    report?.Busy ?? 0, child.Final is not null ? "ended" : (report?.State ?? RunnerState.Running).LowerName(),
                    child.Pid, report?.Outputs ?? new Dictionary<string, long>())
                {
                    Total = _model.Processes[p].Source?.Total,
                    ItemsSkipped = report?.Skipped ?? 0,
                    ItemsDeadLettered = report?.DeadLettered ?? 0,
                });
                foreach (InputSpec input in _model.Processes[p].Inputs.DistinctBy(i => i.Stream.Name))
                {
                    // Each writer in another OS process has room of its own in this queue; writers beside the reader share one.
                    int[] writers = _model.Streams[input.Stream.Name].Writers;
                    int windows = writers.Count(w => _groupOf[w] != _groupOf[p]) + (writers.Any(w => _groupOf[w] == _groupOf[p]) ? 1 : 0);
                    queues.Add(new QueueSample(input.Stream.Name, name, report?.Queued?.GetValueOrDefault(input.Stream.Name) ?? 0,
                        (long)_options.StreamCapacity * Math.Max(1, windows)));
                }
            }
        }
        return new RunSample(elapsed, processes, queues, errors, null) { Checkpoints = _checkpoints?.Sample() };
    }

    /// <summary>One OS process of the run and what the coordinator knows of it.</summary>
    private sealed class Child
    {
        public Child(int group, int[] members, GraphModel model)
        {
            Group = group;
            Members = members;
            Label = string.Join(",", members.Select(p => model.Processes[p].Name));
        }

        public int Group { get; }
        public int[] Members { get; }
        public string Label { get; }
        public Process? Os { get; set; }
        public int Pid { get; set; }
        public ControlChannel? Control { get; set; }
        /// <summary>Its final report, once it sent it (written by the control reader; read by waves and samplers).</summary>
        public volatile IReadOnlyList<ProcessReport>? Final;

        /// <summary>The latest stats report (written by the control reader, read by samplers).</summary>
        public volatile IReadOnlyList<ProcessReport>? Stats;
        public string? LastError { get; set; }
        public bool KilledByCoordinator { get; set; }
        public TaskCompletionSource Hello { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Ready { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource ControlClosed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Exited { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public System.Collections.Concurrent.ConcurrentDictionary<int, TaskCompletionSource<ControlMessage>> Pending { get; } = new();
    }

    /// <summary>Termination-detection waves over the control sockets.</summary>
    private sealed class ChildrenStatus : IStatusSource
    {
        private readonly Coordinator _p;

        public ChildrenStatus(Coordinator placement) => _p = placement;

        /// <summary>Asks every child the question <paramref name="ask"/> makes of a sequence number; a child that has ended answers with its final report.</summary>
        private async Task<ControlMessage[]> AskAll(Func<int, ControlMessage> ask, CancellationToken token)
        {
            int seq = Interlocked.Increment(ref _p._seq);
            var replies = new List<Task<ControlMessage>>();
            foreach (Child child in _p._children)
            {
                if (child.Final is { } final)
                {
                    replies.Add(Task.FromResult<ControlMessage>(new FinalReport(final)));
                    continue;
                }
                if (child.Control is not { } control)
                {
                    // Not connected yet: its processes have not started, which counts as working.
                    replies.Add(Task.FromResult<ControlMessage>(new StatusReport(seq,
                        child.Members.Select(p => new ProcessReport { Index = p, State = RunnerState.Running }).ToList())));
                    continue;
                }
                var reply = new TaskCompletionSource<ControlMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
                child.Pending[seq] = reply;
                // Registered before looking at Final: either the final report's handler finds the question
                // and answers it, or this sees the final report (the handler sets it before it looks).
                if (child.Final is { } late)
                {
                    if (child.Pending.TryRemove(seq, out _)) reply.TrySetResult(new FinalReport(late));
                }
                else if (!control.Send(ask(seq)) && child.Pending.TryRemove(seq, out _))
                {
                    // The child is gone: it cannot answer, and the coordinator hears of its exit; until then it counts as working.
                    reply.TrySetResult(new StatusReport(seq, child.Members.Select(p => new ProcessReport { Index = p, State = RunnerState.Running }).ToList()));
                }
                replies.Add(reply.Task);
            }
            return await Task.WhenAll(replies).WaitAsync(token);
        }

        public async ValueTask<WaveReading> ReadAsync(CancellationToken cancellationToken)
        {
            ControlMessage[] replies = await AskAll(seq => new StatusQuery(seq), cancellationToken);
            var statuses = new ProcessStatus[_p._groupOf.Length];
            foreach (ControlMessage reply in replies)
            {
                IReadOnlyList<ProcessReport> reports = reply switch
                {
                    StatusReport status => status.Processes,
                    FinalReport final => final.Processes.Select(r => r with { State = RunnerState.Ended }).ToList(),
                    _ => throw new InvalidDataException($"A child answered a status question with {reply.GetType().Name}."),
                };
                foreach (ProcessReport r in reports)
                {
                    if (r.Index < 0 || r.Index >= statuses.Length) throw new InvalidDataException($"A child reported process {r.Index}, which the graph does not have.");
                    statuses[r.Index] = new ProcessStatus(r.State, r.Sent, r.Received);
                }
            }
            return new WaveReading(statuses);
        }

        public void ForceEnd(int process) =>
            _p._children[_p._groupOf[process]].Control?.Send(new ForceEnd(process));

        public async ValueTask<string> DescribeBlockedAsync(CancellationToken cancellationToken)
        {
            ControlMessage[] replies = await AskAll(seq => new BlockedQuery(seq), cancellationToken);
            return string.Join("; ", replies.OfType<BlockedReport>().Select(r => r.Text).Where(t => t.Length > 0));
        }
    }
}
