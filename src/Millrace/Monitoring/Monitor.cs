using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Millrace.Monitoring;

/// <summary>One process at one moment: counts since the run started.</summary>
internal sealed record ProcessSample(string Name, long ItemsIn, long ItemsOut, long Errors, double BusySeconds, string State, int OsProcessId,
    IReadOnlyDictionary<string, long> Outputs)
{
    /// <summary>For a source that knows it: how many items it will emit.</summary>
    public long? Total { get; init; }
}

/// <summary>One reader's queue of one stream at one moment.</summary>
internal sealed record QueueSample(string Stream, string Reader, long Queued, long Capacity)
{
    /// <summary>Full for a writer: its next batch does not fit (items move in batches, so a full queue rarely holds Capacity items).</summary>
    public bool IsFull(int batch) => Queued > Capacity - Math.Min(batch, Capacity);
}

/// <summary>A whole run at one moment, in every placement the same shape.</summary>
internal sealed record RunSample(double ElapsedSeconds, IReadOnlyList<ProcessSample> Processes, IReadOnlyList<QueueSample> Queues,
    IReadOnlyList<ProcessFailure> Errors, RunOutcome? Outcome)
{
    /// <summary>Items written to each stream: what its writers emitted into it.</summary>
    public long Written(string stream) => Processes.Sum(p => p.Outputs.TryGetValue(stream, out long n) ? n : 0);
}

/// <summary>What a process reports of itself; read from any thread (the counters are written by its own thread only).</summary>
internal static class Sampling
{
    public static ProcessSample Of(ProcessRunner r, IReadOnlyList<ProcessFailure> errors) => new(
        r.Name,
        Volatile.Read(ref r.ItemsIn),
        r.Outputs.Sum(o => o.ItemsOut),
        errors.Count(e => e.Process == r.Name),
        r.BusySeconds,
        r.Status.State.ToString().ToLowerInvariant(),
        Environment.ProcessId,
        r.Outputs.ToDictionary(o => o.Stream.Name, o => o.ItemsOut)) { Total = r.SourceTotal };

    public static IEnumerable<QueueSample> QueuesOf(ProcessRunner r) =>
        r.Lanes.Select(l => new QueueSample(l.StreamName, r.Name, Volatile.Read(ref l.Queued), l.Capacity));
}

/// <summary>
/// A run being watched: the graph's shape and a way to sample it. Registered while the run lasts,
/// so the "Millrace" meter (dotnet-counters, OpenTelemetry) and the live views read the same numbers.
/// </summary>
internal sealed class RunMonitor
{
    private static readonly ConcurrentDictionary<RunMonitor, byte> ActiveRuns = new();
    private readonly Func<RunSample> _sample;
    private readonly Func<RunSample> _meterSample;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    public RunMonitor(GraphModel model, RunOptions options, Func<double, RunSample> sample, Func<double, RunSample>? meterSample = null)
    {
        Model = model;
        Options = options;
        _sample = () => sample(_clock.Elapsed.TotalSeconds);
        _meterSample = meterSample is null ? _sample : () => meterSample(_clock.Elapsed.TotalSeconds);
        RunId = options.RunId ?? Guid.NewGuid().ToString("N")[..8];
    }

    public GraphModel Model { get; }
    public RunOptions Options { get; }
    public string RunId { get; }

    /// <summary>Set when the run has ended: the last sample, taken as it ended.</summary>
    public RunSample? Final { get; private set; }

    public static IEnumerable<RunMonitor> Active => ActiveRuns.Keys;

    public RunSample Sample() => Final ?? _sample();

    /// <summary>What this OS process's meter reports: the whole run, except in the broker placement, where each host reports its own processes (a backend adds the hosts up).</summary>
    public RunSample MeterSample() => Final is { } final && ReferenceEquals(_meterSample, _sample) ? final : _meterSample();

    /// <summary>Registers the run with the meter and starts what the options ask to show (dashboard, terminal view).</summary>
    public static async Task<Watch> StartAsync(GraphModel model, RunOptions options, Func<double, RunSample> sample, Func<double, RunSample>? meterSample = null)
    {
        var monitor = new RunMonitor(model, options, sample, meterSample);
        Metrics.EnsureCreated();
        ActiveRuns[monitor] = 0;
        var observers = new List<IRunObserver>();
        try
        {
            if (options.Dashboard)
                observers.Add(await ObserverLoader.StartAsync("dashboard", "Millrace.Web.Dashboard, Millrace.Web", "Millrace.Web", monitor, required: true));
            if (!options.Quiet && !Console.IsOutputRedirected && ObserverLoader.Available("Millrace.Terminal.LiveView, Millrace.Terminal"))
                observers.Add(await ObserverLoader.StartAsync("terminal view", "Millrace.Terminal.LiveView, Millrace.Terminal", "Millrace.Terminal", monitor, required: false));
        }
        catch
        {
            ActiveRuns.TryRemove(monitor, out _);
            foreach (IRunObserver o in observers) await o.StopAsync();
            throw;
        }
        if (options.Logger is { } logger) Log.RunStarted(logger, monitor.RunId, options.Placement, model.Processes.Count, model.Streams.Count);
        return new Watch(monitor, observers);
    }

    /// <summary>
    /// The run's registration. <see cref="EndAsync"/> (with the final sample) stops the views; disposing
    /// it without that (an exception left the placement) ends it as failed, so no view or port outlives the run.
    /// </summary>
    internal sealed class Watch(RunMonitor monitor, List<IRunObserver> observers) : IAsyncDisposable
    {
        private int _ended;

        public RunMonitor Monitor => monitor;

        public async Task EndAsync(RunOutcome outcome)
        {
            if (Interlocked.Exchange(ref _ended, 1) != 0) return;
            RunSample last;
            try
            {
                last = monitor._sample();
            }
            catch (Exception)
            {
                last = new RunSample(monitor._clock.Elapsed.TotalSeconds, [], [], [], null);
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
            ActiveRuns.TryRemove(monitor, out _);
        }

        public async ValueTask DisposeAsync() => await EndAsync(RunOutcome.Failed);
    }
}

/// <summary>Something that shows a run while it lasts (the dashboard, the terminal view); lives in a library of its own.</summary>
internal interface IRunObserver
{
    Task StartAsync(RunMonitor monitor);

    Task StopAsync();
}

internal static class ObserverLoader
{
    public static bool Available(string typeName)
    {
        try
        {
            return Type.GetType(typeName, throwOnError: false) is not null;
        }
        catch (Exception e) when (e is IOException or BadImageFormatException)
        {
            return false;
        }
    }

    public static async Task<IRunObserver> StartAsync(string what, string typeName, string library, RunMonitor monitor, bool required)
    {
        Type? type = Available(typeName) ? Type.GetType(typeName) : null;
        if (type is null)
            throw new InvalidOperationException($"The {what} lives in the {library} library, which this program does not reference. " +
                $"Add it: dotnet add package {library} (or a project reference to src/{library}).");
        var observer = (IRunObserver)Activator.CreateInstance(type)!;
        await observer.StartAsync(monitor);
        return observer;
    }
}

/// <summary>
/// The "Millrace" meter: per stream items written and queue depth, per process items in and out,
/// errors and busy time. Observable instruments: they cost nothing until a listener (dotnet-counters,
/// OpenTelemetry, a MeterListener) reads them, and then read the runs being watched.
/// </summary>
internal static class Metrics
{
    public const string MeterName = "Millrace";
    private static readonly object CreateLock = new();
    private static Meter? _meter;

    public static void EnsureCreated()
    {
        if (Volatile.Read(ref _meter) is not null) return;
        lock (CreateLock)
        {
            if (_meter is not null) return;
            var meter = new Meter(MeterName, typeof(Metrics).Assembly.GetName().Version?.ToString());
            meter.CreateObservableCounter("millrace.stream.items_written", () => Each((m, s) =>
                m.Model.Streams.Keys.Select(name => new Measurement<long>(s.Written(name), Tag("stream", name), Tag("run", m.RunId)))),
                unit: "{item}", description: "Items written to the stream by its writers.");
            meter.CreateObservableGauge("millrace.stream.queue_depth", () => Each((m, s) =>
                s.Queues.Select(q => new Measurement<long>(q.Queued, Tag("stream", q.Stream), Tag("reader", q.Reader), Tag("run", m.RunId)))),
                unit: "{item}", description: "Items waiting in a reader's queue of the stream.");
            meter.CreateObservableGauge("millrace.stream.queue_capacity", () => Each((m, s) =>
                s.Queues.Select(q => new Measurement<long>(q.Capacity, Tag("stream", q.Stream), Tag("reader", q.Reader), Tag("run", m.RunId)))),
                unit: "{item}", description: "The most items a reader's queue of the stream holds.");
            meter.CreateObservableCounter("millrace.process.items_in", () => Each((m, s) =>
                s.Processes.Select(p => new Measurement<long>(p.ItemsIn, Tag("process", p.Name), Tag("run", m.RunId)))),
                unit: "{item}", description: "Items handed to the process's handlers.");
            meter.CreateObservableCounter("millrace.process.items_out", () => Each((m, s) =>
                s.Processes.Select(p => new Measurement<long>(p.ItemsOut, Tag("process", p.Name), Tag("run", m.RunId)))),
                unit: "{item}", description: "Items the process emitted.");
            meter.CreateObservableCounter("millrace.process.errors", () => Each((m, s) =>
                s.Processes.Select(p => new Measurement<long>(p.Errors, Tag("process", p.Name), Tag("run", m.RunId)))),
                unit: "{error}", description: "Failures of the process.");
            meter.CreateObservableCounter("millrace.process.busy_time", () => Each((m, s) =>
                s.Processes.Select(p => new Measurement<double>(p.BusySeconds, Tag("process", p.Name), Tag("run", m.RunId)))),
                unit: "s", description: "Time spent in the process's handlers, waits for room downstream excluded; its rate is how busy the process is.");
            Volatile.Write(ref _meter, meter);
        }
    }

    private static KeyValuePair<string, object?> Tag(string key, object? value) => new(key, value);

    private static IEnumerable<Measurement<T>> Each<T>(Func<RunMonitor, RunSample, IEnumerable<Measurement<T>>> measure) where T : struct
    {
        var all = new List<Measurement<T>>();
        foreach (RunMonitor monitor in RunMonitor.Active) all.AddRange(measure(monitor, monitor.MeterSample()));
        return all;
    }
}
