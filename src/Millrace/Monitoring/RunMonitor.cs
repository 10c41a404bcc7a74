using System.Collections.Concurrent;
using System.Diagnostics;

namespace Millrace.Monitoring;

/// <summary>
/// A run being watched: the graph's shape and a way to sample it. Registered while the run lasts,
/// so the "Millrace" meter (dotnet-counters, OpenTelemetry) and the live views read the same numbers.
/// A view (<see cref="IRunObserver"/>) is given one when the run starts.
/// </summary>
public sealed class RunMonitor
{
    private static readonly ConcurrentDictionary<RunMonitor, byte> ActiveRuns = new();
    private readonly Func<RunSample> _sample;
    private readonly Func<RunSample> _meterSample;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    internal RunMonitor(GraphModel model, RunOptions options, Func<double, RunSample> sample, Func<double, RunSample>? meterSample = null)
    {
        Model = model;
        Graph = GraphShape.Of(model);
        Options = options;
        _sample = () => sample(_clock.Elapsed.TotalSeconds);
        _meterSample = meterSample is null ? _sample : () => meterSample(_clock.Elapsed.TotalSeconds);
        RunId = options.RunId ?? Guid.NewGuid().ToString("N")[..8];
    }

    internal GraphModel Model { get; }

    /// <summary>The graph: processes, streams, cycles.</summary>
    public GraphShape Graph { get; }

    /// <summary>The run's options (placement, dashboard port, logger...).</summary>
    public RunOptions Options { get; }

    /// <summary>The run's name (<see cref="RunOptions.RunId"/>, or a random one): the <c>run</c> tag of its metrics.</summary>
    public string RunId { get; }

    /// <summary>Items per batch between processes, at most: a queue is full for a writer when its next batch does not fit (<see cref="QueueSample.IsFull"/>).</summary>
    public int BatchSize => Options.EffectiveBatchSize;

    /// <summary>Set when the run has ended: the last sample, taken as it ended.</summary>
    public RunSample? Final { get; internal set; }

    internal RunSample SampleNow() => _sample();

    internal Stopwatch Clock => _clock;

    internal static IEnumerable<RunMonitor> Active => ActiveRuns.Keys;

    internal static void Unregister(RunMonitor monitor) => ActiveRuns.TryRemove(monitor, out _);

    /// <summary>The run now (the last sample once it has ended): counts since the run started. Cheap enough to call a few times a second.</summary>
    public RunSample Sample() => Final ?? _sample();

    /// <summary>What this OS process's meter reports: the whole run, except in the broker placement, where each host reports its own processes (a backend adds the hosts up).</summary>
    internal RunSample MeterSample() => Final is { } final && ReferenceEquals(_meterSample, _sample) ? final : _meterSample();

    /// <summary>Registers the run with the meter and starts what the options ask to show (dashboard, terminal view).</summary>
    internal static async Task<RunWatch> StartAsync(GraphModel model, RunOptions options, Func<double, RunSample> sample, Func<double, RunSample>? meterSample = null)
    {
        var monitor = new RunMonitor(model, options, sample, meterSample);
        Metrics.EnsureCreated();
        ActiveRuns[monitor] = 0;
        var observers = new List<IRunObserver>();
        try
        {
            if (options.Dashboard)
                observers.Add(await ObserverLoader.StartAsync("dashboard", "Millrace.Dashboard.Dashboard, Millrace.Dashboard", "Millrace.Dashboard", monitor, required: true));
            if (!options.Quiet && !Console.IsOutputRedirected && ObserverLoader.Available("Millrace.Terminal.LiveView, Millrace.Terminal"))
                observers.Add(await ObserverLoader.StartAsync("terminal view", "Millrace.Terminal.LiveView, Millrace.Terminal", "Millrace.Terminal", monitor, required: false));
            foreach (IRunObserver own in options.Observers)
            {
                await own.StartAsync(monitor);
                observers.Add(own);
            }
        }
        catch
        {
            RunMonitor.Unregister(monitor);
            foreach (IRunObserver o in observers) await o.StopAsync();
            throw;
        }
        if (options.Logger is { } logger) Log.RunStarted(logger, monitor.RunId, options.Placement, model.Processes.Count, model.Streams.Count);
        return new RunWatch(monitor, observers);
    }
}

/// <summary>
/// A run's registration with the meter and its views. <see cref="EndAsync"/> (with the outcome) takes
/// the final sample and stops the views; disposing it without that (an exception left the placement)
/// ends it as failed, so no view or port outlives the run.
/// </summary>
public sealed class RunWatch : IAsyncDisposable
{
    private readonly RunMonitor monitor;
    private readonly List<IRunObserver> observers;

    internal RunWatch(RunMonitor monitor, List<IRunObserver> observers)
    {
        this.monitor = monitor;
        this.observers = observers;
    }

        private int _ended;

        /// <summary>The run being watched.</summary>
        public RunMonitor Monitor => monitor;

        /// <summary>The run has ended with <paramref name="outcome"/>: the last sample is taken and the views stop.</summary>
        public async Task EndAsync(RunOutcome outcome)
        {
            if (Interlocked.Exchange(ref _ended, 1) != 0) return;
            RunSample last;
            try
            {
                last = monitor.SampleNow();
            }
            catch (Exception)
            {
                last = new RunSample(monitor.Clock.Elapsed.TotalSeconds, [], [], [], null);
            }
            monitor.Final = last with { Outcome = outcome };
            if (monitor.Options.Logger is { } logger)
                Log.RunEnded(logger, monitor.RunId, outcome, Math.Round(last.ElapsedSeconds, 3), last.Processes.Sum(p => p.ItemsIn));
            foreach (IRunObserver o in observers)
            {
                try
                {
                    await o.StopAsync();
                }
                catch (Exception e)
                {
                    Log.Notice(monitor.Options.Logger, "monitor", $"a view failed to stop: {e.Message}");
                }
            }
            RunMonitor.Unregister(monitor);
        }

        /// <summary>Ends the watch as failed, unless <see cref="EndAsync"/> ended it.</summary>
        public async ValueTask DisposeAsync() => await EndAsync(RunOutcome.Failed);
}
