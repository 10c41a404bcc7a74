namespace Millrace.Monitoring;

/// <summary>One process at one moment: counts since the run started.</summary>
/// <param name="Name">The process.</param>
/// <param name="ItemsIn">Items handed to its handlers.</param>
/// <param name="ItemsOut">Items it emitted, all outputs together.</param>
/// <param name="Errors">Its failures.</param>
/// <param name="BusySeconds">Seconds at work (handlers, source, start action, ticks), waits for room downstream excluded.</param>
/// <param name="State">running, passive (waiting for input), blocked (waiting for room downstream) or ended.</param>
/// <param name="OsProcessId">The OS process it runs in.</param>
/// <param name="Outputs">Items it emitted per output stream.</param>
public sealed record ProcessSample(string Name, long ItemsIn, long ItemsOut, long Errors, double BusySeconds, string State, int OsProcessId,
    IReadOnlyDictionary<string, long> Outputs)
{
    /// <summary>For a source that knows it: how many items it will emit.</summary>
    public long? Total { get; init; }

    /// <summary>Items its error policy skipped (<see cref="ErrorPolicy.Skip"/>).</summary>
    public long ItemsSkipped { get; init; }

    /// <summary>Items its error policy sent to the dead letters (<see cref="ErrorPolicy.DeadLetter"/>).</summary>
    public long ItemsDeadLettered { get; init; }
}

/// <summary>The run's checkpoints at one moment.</summary>
/// <param name="Completed">Checkpoints completed in this run (since it started or resumed).</param>
/// <param name="LastNumber">The number of the last complete checkpoint (the one a restart resumes from), or -1.</param>
/// <param name="LastDurationMs">How long the last one took, from asking the sources to the last part stored.</param>
/// <param name="LastSizeBytes">The bytes of the last one in the store.</param>
/// <param name="AgeSeconds">Seconds since the last one completed (since the run started, if none has): what a crash now would redo.</param>
public sealed record CheckpointSample(long Completed, long LastNumber, double LastDurationMs, long LastSizeBytes, double AgeSeconds);

/// <summary>One reader's queue of one stream at one moment.</summary>
/// <param name="Stream">The stream.</param>
/// <param name="Reader">The process reading it.</param>
/// <param name="Queued">Items waiting for the reader.</param>
/// <param name="Capacity">The most items the queue holds.</param>
public sealed record QueueSample(string Stream, string Reader, long Queued, long Capacity)
{
    /// <summary>Full for a writer whose batches hold <paramref name="batch"/> items (<see cref="RunMonitor.BatchSize"/>): its next batch does not fit (items move in batches, so a full queue rarely holds Capacity items).</summary>
    public bool IsFull(int batch) => Queued > Capacity - Math.Min(batch, Capacity);
}

/// <summary>A whole run at one moment, in every placement the same shape.</summary>
/// <param name="ElapsedSeconds">Seconds since the run started.</param>
/// <param name="Processes">Every process (every process of the run, in every placement; replicas added up).</param>
/// <param name="Queues">Every reader's queue of every stream it reads.</param>
/// <param name="Errors">The run's errors so far.</param>
/// <param name="Outcome">How the run ended, in the last sample; null while it runs.</param>
public sealed record RunSample(double ElapsedSeconds, IReadOnlyList<ProcessSample> Processes, IReadOnlyList<QueueSample> Queues,
    IReadOnlyList<ProcessFailure> Errors, RunOutcome? Outcome)
{
    /// <summary>With checkpoints on: how they go; null otherwise.</summary>
    public CheckpointSample? Checkpoints { get; init; }

    /// <summary>Items written to each stream: what its writers emitted into it.</summary>
    public long Written(string stream) => Processes.Sum(p => p.Outputs.TryGetValue(stream, out long n) ? n : 0);
}

/// <summary>What a process reports of itself; read from any thread (the counters are written by its own thread only).</summary>
internal static class Sampling
{
    // Loops, not LINQ: a run without views samples once, at its end, where LINQ over these types is compiled first.

    public static ProcessSample Of(ProcessRunner r, IReadOnlyList<ProcessFailure> errors)
    {
        var outputs = new Dictionary<string, long>(r.Outputs.Count);
        long itemsOut = 0;
        foreach (IOutputPort output in r.Outputs)
        {
            long items = output.ItemsOut;
            outputs.Add(output.Stream.Name, items);
            itemsOut += items;
        }
        int failures = 0;
        foreach (ProcessFailure error in errors)
            if (error.Process == r.Name) failures++;
        return new ProcessSample(r.Name, Volatile.Read(ref r.ItemsIn), itemsOut, failures, r.BusySeconds, r.Status.State.LowerName(), Environment.ProcessId, outputs)
        {
            Total = r.SourceTotal,
            ItemsSkipped = Volatile.Read(ref r.ItemsSkipped),
            ItemsDeadLettered = Volatile.Read(ref r.ItemsDeadLettered),
        };
    }

    public static void AddQueuesOf(ProcessRunner r, List<QueueSample> queues)
    {
        foreach (Lane lane in r.Lanes) queues.Add(new QueueSample(lane.StreamName, r.Name, Volatile.Read(ref lane.Queued), lane.Capacity));
    }

}
