using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Millrace.Runtime;

/// <summary>The embedded default: every process has a thread of its own in this OS process; streams are bounded in-memory queues.</summary>
internal static class ThreadsPlacement
{
    public static async Task<RunResult> RunAsync(GraphModel model, RunOptions options, CancellationToken cancellationToken)
    {
        using var run = new RunContext(options);
        ProcessRunner[] runners = model.Processes.Select(p => new ProcessRunner(p, run)).ToArray();
        run.SetRunners(runners);
        Wiring.Wire(model, runners, options, remote: null);
        if (model.Cycles.Count > 0) run.Detector = new TerminationDetector(run, new LocalStatusSource(runners), model);

        await using RunMonitor.Watch watch = await RunMonitor.StartAsync(model, options, elapsed => LocalSample(run, runners, elapsed));
        var stopwatch = Stopwatch.StartNew();
        using CancellationTokenRegistration onCancel = cancellationToken.Register(run.RequestStop);
        using StopSignals? signals = options.HandleStopSignals ? new StopSignals(run) : null;

        Task detector = run.Detector?.RunAsync() ?? Task.CompletedTask;
        await RunRunnersAsync(run, runners, options);
        stopwatch.Stop();
        run.StopDetector();
        await detector;
        await watch.EndAsync(run.Outcome);

        return new RunResult(
            run.Outcome,
            stopwatch.Elapsed,
            run.HaltedBy,
            run.HaltReason,
            run.TerminationDetected,
            run.Errors,
            runners.ToDictionary(r => r.Name, r => new ProcessStats(r.ItemsIn, r.Outputs.Sum(o => o.ItemsOut), Environment.ProcessId)),
            model.Streams.Values.ToDictionary(
                s => s.Name,
                s => new StreamStats(s.Writers.Sum(w => runners[w].Outputs.First(o => o.Stream.Name == s.Name).ItemsOut))));
    }

    /// <summary>A sample of the processes running in this OS process.</summary>
    public static RunSample LocalSample(RunContext run, IEnumerable<ProcessRunner> runners, double elapsed)
    {
        IReadOnlyList<ProcessFailure> errors = run.Errors;
        var list = runners.ToList();
        return new RunSample(elapsed, list.Select(r => Sampling.Of(r, errors)).ToList(), list.SelectMany(Sampling.QueuesOf).ToList(),
            errors, null);
    }

    /// <summary>
    /// Starts every runner on its own thread and waits until all have ended; after a halt, failure
    /// or hard stop, waits at most the stop timeout and names the processes that did not stop.
    /// </summary>
    public static async Task RunRunnersAsync(RunContext run, ProcessRunner[] runners, RunOptions options)
    {
        Task[] tasks = runners.Select(r => ProcessThread.Start(r.Name, r.RunAsync)).ToArray();
        Task all = Task.WhenAll(tasks);
        if (await Task.WhenAny(all, run.HardStopped) == all) return;
        // Halt, failure or hard stop: processes should leave promptly; do not wait forever for one that does not.
        if (await Task.WhenAny(all, Task.Delay(options.StopTimeout)) == all) return;
        foreach (var (runner, task) in runners.Zip(tasks))
        {
            if (!task.IsCompleted)
                run.Fail(new ProcessFailure(runner.Name, null, null, null,
                    $"Process '{runner.Name}' did not stop within {options.StopTimeout.TotalSeconds:0.#} s (a handler that ignores its cancellation token?).", null));
        }
    }

    /// <summary>First Ctrl+C or SIGTERM: graceful stop; the second: stop at once.</summary>
    internal sealed class StopSignals : IDisposable
    {
        private readonly RunContext _run;
        private readonly PosixSignalRegistration[] _registrations;
        private int _count;

        public StopSignals(RunContext run)
        {
            _run = run;
            _registrations = new[]
            {
                PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal),
                PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal),
            };
        }

        private void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            if (Interlocked.Increment(ref _count) == 1) _run.RequestStop();
            else _run.StopAll();
        }

        public void Dispose()
        {
            foreach (PosixSignalRegistration r in _registrations) r.Dispose();
        }
    }
}
