using System.Diagnostics;

namespace Millrace.Engine;

/// <summary>
/// The processes of one run that this OS process hosts, and everything they share: the run's
/// context, a runner per process, the wiring of their streams, termination detection, and the
/// result. Every placement that runs processes uses it: the threads placement hosts them all, a
/// child of the processes placement its group, a broker host those named on its command line.
/// What a placement supplies is where the others are (<see cref="IRemoteLinks"/>) and how their
/// status is read (<see cref="IStatusSource"/>).
/// </summary>
internal sealed class RunHost : IDisposable
{
    private readonly Stopwatch _stopwatch = new();

    /// <summary>
    /// Runners for the processes in <paramref name="hosted"/> (indexes in the graph; null: every process);
    /// with <paramref name="itemIds"/>, each has an <see cref="ItemIdentity"/> (the placement may deliver an item twice).
    /// </summary>
    public RunHost(GraphModel model, RunOptions options, IReadOnlyList<int>? hosted = null, bool itemIds = false)
    {
        Model = model;
        Run = new RunContext(options);
        hosted ??= Enumerable.Range(0, model.Processes.Count).ToArray();
        Runners = new ProcessRunner?[model.Processes.Count];
        foreach (int p in hosted) Runners[p] = new ProcessRunner(model.Processes[p], Run, itemIds);
        Local = hosted.Select(p => Runners[p]!).ToArray();
        Run.SetRunners(Local);
    }

    public GraphModel Model { get; }
    public RunContext Run { get; }
    public RunOptions Options => Run.Options;

    /// <summary>Per process of the graph, its runner, or null when it runs elsewhere.</summary>
    public ProcessRunner?[] Runners { get; }

    /// <summary>The runners of the processes hosted here.</summary>
    public ProcessRunner[] Local { get; }

    /// <summary>Time from <see cref="RunProcessesAsync"/>'s start to the end of the last process here.</summary>
    public TimeSpan Elapsed => _stopwatch.Elapsed;

    /// <summary>Connects every hosted process's inputs and outputs: in memory here, through <paramref name="remote"/> to the others.</summary>
    public void Wire(IRemoteLinks? remote) => Wiring.Wire(Model, Runners, Options, remote);

    /// <summary>Sets up termination detection (graphs with cycles), reading statuses from <paramref name="source"/> (default: the hosted processes).</summary>
    public void DetectTermination(IStatusSource? source = null)
    {
        if (Model.Cycles.Count > 0) Run.Detector = new TerminationDetector(Run, source ?? new LocalStatusSource(Local), Model);
    }

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
        return new RunSample(elapsed, Local.Select(r => Sampling.Of(r, errors)).ToList(), Local.SelectMany(Sampling.QueuesOf).ToList(), errors, null);
    }

    /// <summary>What the hosted processes did, as the run's result; <paramref name="duration"/> defaults to <see cref="Elapsed"/>.</summary>
    public RunResult Result(TimeSpan? duration = null) => RunResult.From(
        Run,
        duration ?? Elapsed,
        Local.ToDictionary(r => r.Name, r => new ProcessStats(r.ItemsIn, r.Outputs.Sum(o => o.ItemsOut), Environment.ProcessId)),
        Model.Streams.Values.ToDictionary(
            s => s.Name,
            s => new StreamStats(s.Writers.Where(w => Runners[w] is not null)
                .Sum(w => Runners[w]!.Outputs.First(o => o.Stream.Name == s.Name).ItemsOut))));

    public void Dispose() => Run.Dispose();
}
