using System.Diagnostics;

namespace Millrace.Engine;

/// <summary>
/// The processes of one run that this OS process hosts, and everything they share: the run's
/// context, a runner per process, the wiring of their streams, termination detection, and the
/// result. Every placement that runs processes uses it: the threads placement hosts them all, a
/// child of the processes placement its group, a broker host those named on its command line.
/// What a placement supplies is where the others are (<see cref="ITransport"/>) and how their
/// status is read (<see cref="IStatusSource"/>).
/// </summary>
public sealed class RunHost : IDisposable
{
    private readonly Stopwatch _stopwatch = new();

    /// <summary>
    /// Runners for the processes in <paramref name="hosted"/> (indexes in the graph; null: every process);
    /// with <paramref name="itemIds"/>, each has an <see cref="ItemIdentity"/> (the placement may deliver an item twice).
    /// </summary>
    internal RunHost(GraphModel model, RunOptions options, IReadOnlyList<int>? hosted = null, bool itemIds = false)
    {
        Model = model;
        Graph = model.Shape;
        Run = new RunContext(options);
        hosted ??= Enumerable.Range(0, model.Processes.Count).ToArray();
        Runners = new ProcessRunner?[model.Processes.Count];
        foreach (int p in hosted) Runners[p] = new ProcessRunner(model.Processes[p], Run, itemIds);
        Local = hosted.Select(p => Runners[p]!).ToArray();
        Run.SetRunners(Local);
    }

    internal GraphModel Model { get; }

    /// <summary>The graph.</summary>
    public GraphShape Graph { get; }

    /// <summary>What the processes here share: stop tokens, halts, failures, the outcome.</summary>
    public RunContext Run { get; }

    /// <summary>The run's options.</summary>
    public RunOptions Options => Run.Options;

    /// <summary>Per process of the graph (by index), its runner, or null when it runs elsewhere.</summary>
    public ProcessRunner?[] Runners { get; }

    /// <summary>The runners of the processes hosted here.</summary>
    public ProcessRunner[] Local { get; }

    /// <summary>Time from <see cref="RunProcessesAsync"/>'s start to the end of the last process here.</summary>
    public TimeSpan Elapsed => _stopwatch.Elapsed;

    /// <summary>Connects every hosted process's inputs and outputs: in memory here, through <paramref name="transport"/> to the others.</summary>
    public void Wire(ITransport? transport) => Wiring.Wire(Model, Runners, Options, transport);

    /// <summary>How items of <paramref name="stream"/> become bytes: the codec registered for its item type, else <paramref name="codec"/> (auto, json or binary; default: the run's <see cref="RunOptions.Codec"/>).</summary>
    public BatchCodec CodecFor(StreamShape stream, string? codec = null) => new CodecSet(Model.Codecs, codec ?? Options.Codec).For(stream.ItemType);

    /// <summary>Which processes here wait on which full streams, for a deadlock error.</summary>
    public string DescribeBlocked() => LocalStatusSource.DescribeBlocked(Local);

    /// <summary>Stops the run gracefully when <paramref name="cancellationToken"/> is cancelled and, unless the options say not to, on Ctrl+C and SIGTERM (the second one stops at once). Dispose to stop listening.</summary>
    public IDisposable ListenForStops(CancellationToken cancellationToken) => StopSignals.Listen(Run, cancellationToken);

    /// <summary>
    /// Registers the run with the Millrace meter and starts the views the options ask for (dashboard,
    /// terminal view), showing what <paramref name="sample"/> says (default: <see cref="Sample"/>);
    /// <paramref name="meterSample"/>, when given, is what this OS process's meter reports (a broker host: its own processes).
    /// </summary>
    public async Task<RunWatch> WatchAsync(Func<double, RunSample>? sample = null, Func<double, RunSample>? meterSample = null) =>
        await RunMonitor.StartAsync(Model, Options, sample ?? Sample, meterSample);

    /// <summary>Sets up termination detection (graphs with cycles), reading statuses from <paramref name="source"/> (default: the hosted processes).</summary>
    public void DetectTermination(IStatusSource? source = null)
    {
        if (Model.Cycles.Count > 0) Run.Detector = new TerminationDetector(Run, source ?? new LocalStatusSource(Local), Model);
    }

    /// <summary>
    /// Whether the processes' end counts as the run drained (<see cref="RunContext.ProcessesEnded"/>); the broker placement
    /// says so itself, once what they published is confirmed.
    /// </summary>
    public bool MarksProcessesEnded { get; set; } = true;

    /// <summary>
    /// Runs the hosted processes until each has ended (and the termination detector, if any); after a
    /// halt, failure or hard stop, waits at most the stop timeout and names the processes that did not stop.
    /// </summary>
    public async Task RunProcessesAsync()
    {
        _stopwatch.Start();
        Run.Detector?.Start();
        Task[] tasks = Local.Select(r => ProcessThread.Start(r.Name, r.RunAsync)).ToArray();
        Task all = Task.WhenAll(tasks);
        if (MarksProcessesEnded)
            _ = all.ContinueWith(_ => Run.ProcessesEnded(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        if (await Task.WhenAny(all, Run.HardStopped) != all &&
            await Task.WhenAny(all, Task.Delay(Options.StopTimeout)) != all)
        {
            foreach (var (runner, task) in Local.Zip(tasks))
            {
                if (!task.IsCompleted)
                    Run.Fail(new ProcessFailure(runner.Name, null, null, null,
                        $"Process '{runner.Name}' did not stop within {Options.StopTimeout.TotalSeconds:0.#} s (a handler that ignores its cancellation token?).", null));
            }
        }
        _stopwatch.Stop();
    }

    /// <summary>Ends termination detection and waits for it.</summary>
    public async Task StopDetectorAsync()
    {
        if (Run.Detector is not { } detector) return;
        detector.Stop();
        await detector.Completion;
    }

    /// <summary>A sample of the hosted processes, for the meter and the views.</summary>
    public RunSample Sample(double elapsed)
    {
        IReadOnlyList<ProcessFailure> errors = Run.Errors;
        var processes = new List<ProcessSample>(Local.Length);
        var queues = new List<QueueSample>();
        foreach (ProcessRunner runner in Local)
        {
            processes.Add(Sampling.Of(runner, errors));
            Sampling.AddQueuesOf(runner, queues);
        }
        return new RunSample(elapsed, processes, queues, errors, null);
    }

    /// <summary>What the hosted processes did, as the run's result; <paramref name="duration"/> defaults to <see cref="Elapsed"/>.</summary>
    public RunResult Result(TimeSpan? duration = null) => RunResult.From(
        Run,
        duration ?? Elapsed,
        Local.ToDictionary(r => r.Name, r => new ProcessStats(r.ItemsIn, r.Outputs.Sum(o => o.ItemsOut), Environment.ProcessId, r.Identity?.Skipped ?? 0, r.ItemsSkipped, r.ItemsDeadLettered)),
        Model.Streams.Values.ToDictionary(
            s => s.Name,
            s => new StreamStats(s.Writers.Where(w => Runners[w] is not null)
                .Sum(w => Runners[w]!.Outputs.First(o => o.Stream.Name == s.Name).ItemsOut))));

    /// <summary>Releases the run's timers and tokens once every process has ended.</summary>
    public void Dispose() => ((IDisposable)Run).Dispose();
}
