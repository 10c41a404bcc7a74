using System.Diagnostics.Metrics;

namespace Millrace.Monitoring;

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
            meter.CreateObservableCounter("millrace.process.items_skipped", () => Each((m, s) =>
                s.Processes.Select(p => new Measurement<long>(p.ItemsSkipped, Tag("process", p.Name), Tag("run", m.RunId)))),
                unit: "{item}", description: "Items the process's handlers threw on that its error policy skipped.");
            meter.CreateObservableCounter("millrace.process.items_dead_lettered", () => Each((m, s) =>
                s.Processes.Select(p => new Measurement<long>(p.ItemsDeadLettered, Tag("process", p.Name), Tag("run", m.RunId)))),
                unit: "{item}", description: "Items the process's handlers threw on that its error policy sent to the dead letters.");
            meter.CreateObservableCounter("millrace.process.busy_time", () => Each((m, s) =>
                s.Processes.Select(p => new Measurement<double>(p.BusySeconds, Tag("process", p.Name), Tag("run", m.RunId)))),
                unit: "s", description: "Time spent in the process's handlers, waits for room downstream excluded; its rate is how busy the process is.");
            meter.CreateObservableCounter("millrace.checkpoint.completed", () => Each<long>((m, s) =>
                s.Checkpoints is { } c ? [new Measurement<long>(c.Completed, Tag("run", m.RunId))] : []),
                unit: "{checkpoint}", description: "Checkpoints completed in this run (with --checkpoint-interval).");
            meter.CreateObservableGauge("millrace.checkpoint.duration", () => Each<double>((m, s) =>
                s.Checkpoints is { Completed: > 0 } c ? [new Measurement<double>(c.LastDurationMs / 1000, Tag("run", m.RunId))] : []),
                unit: "s", description: "How long the last checkpoint took, from asking the sources to the last part stored.");
            meter.CreateObservableGauge("millrace.checkpoint.size", () => Each<long>((m, s) =>
                s.Checkpoints is { Completed: > 0 } c ? [new Measurement<long>(c.LastSizeBytes, Tag("run", m.RunId))] : []),
                unit: "By", description: "The bytes of the last complete checkpoint in the store.");
            meter.CreateObservableGauge("millrace.checkpoint.age", () => Each<double>((m, s) =>
                s.Checkpoints is { } c ? [new Measurement<double>(c.AgeSeconds, Tag("run", m.RunId))] : []),
                unit: "s", description: "Seconds since the last checkpoint completed: what a crash now would do again.");
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
