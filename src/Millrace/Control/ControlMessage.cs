namespace Millrace.Control;

/// <summary>
/// What the parts of one run tell each other, whatever carries it: the coordinator and its children
/// in the processes placement (JSON lines on a Unix socket), the hosts of the broker placement (JSON
/// bodies on the run's control exchange). One set of typed messages, one encoding (<see cref="ControlCodec"/>).
/// </summary>
public abstract record ControlMessage
{
    /// <summary>Who sent it, where several senders share one channel (a broker host's id); null otherwise.</summary>
    public string? From { get; init; }
}

/// <summary>Child to coordinator, first on its connection: which group of processes it runs, and its OS process id.</summary>
public sealed record Hello(int Group, int Pid) : ControlMessage;

/// <summary>Child to coordinator: connected to every reader, running.</summary>
public sealed record Ready : ControlMessage;

/// <summary>A process became passive, blocked or ended: time for a termination-detection wave (one poke until the next wave).</summary>
public sealed record Poke : ControlMessage;

/// <summary>Termination detection asks every process's status (a wave).</summary>
public sealed record StatusQuery(int Seq) : ControlMessage;

/// <summary>The answer to a <see cref="StatusQuery"/>: the status of the processes of the one answering.</summary>
public sealed record StatusReport(int Seq, IReadOnlyList<ProcessReport> Processes) : ControlMessage;

/// <summary>Termination detection found the run stuck: which processes wait on which full streams?</summary>
public sealed record BlockedQuery(int Seq) : ControlMessage;

/// <summary>The answer to a <see cref="BlockedQuery"/>, as text for the deadlock error.</summary>
public sealed record BlockedReport(int Seq, string Text) : ControlMessage;

/// <summary>A process halted the run.</summary>
public sealed record HaltMessage(string Process, string? Reason) : ControlMessage;

/// <summary>A process failed (or a part of the run could not go on); <see cref="Group"/> names a child that failed before its hello.</summary>
public sealed record FailureMessage(string Process, string? Stream, long? ItemIndex, string? Item, string Message, string? ExceptionType, int Group = -1)
    : ControlMessage
{
    /// <summary>The message that says <paramref name="failure"/>.</summary>
    public static FailureMessage Of(ProcessFailure failure) =>
        new(failure.Process, failure.Stream, failure.ItemIndex, failure.Item, failure.Message, failure.ExceptionType);

    /// <summary>The failure it says (without the exception object, which stayed where it was thrown).</summary>
    public ProcessFailure ToFailure() => new(Process, Stream, ItemIndex, Item, Message, null, ExceptionType);
}

/// <summary>Stop: gracefully (sources stop, the rest drains) or at once.</summary>
public sealed record StopMessage(bool Hard) : ControlMessage;

/// <summary>Termination detection closed the cycle of <see cref="Process"/> (index in the graph): its writers inside the cycle count as ended.</summary>
public sealed record ForceEnd(int Process) : ControlMessage;

/// <summary>Counts of the sender's processes for the meter and the views (a few times a second).</summary>
public sealed record StatsReport(IReadOnlyList<ProcessReport> Processes) : ControlMessage;

/// <summary>Child to coordinator, last: its processes have ended; their final counts.</summary>
public sealed record FinalReport(IReadOnlyList<ProcessReport> Processes) : ControlMessage;

/// <summary>Coordinator to the children that run sources: send the markers of checkpoint <see cref="Checkpoint"/> with your items.</summary>
public sealed record CheckpointRequest(long Checkpoint, long Generation = 0) : ControlMessage;

/// <summary>Child to coordinator: process <see cref="Process"/> (index in the graph) stored its part of checkpoint <see cref="Checkpoint"/>.</summary>
public sealed record CheckpointStored(long Checkpoint, int Process, long Generation = 0) : ControlMessage;

/// <summary>
/// Broker placement: a process started again, so the whole run goes back to checkpoint <see cref="Checkpoint"/>
/// (-1: the start) as generation <see cref="Generation"/>; messages of older generations are dropped.
/// </summary>
public sealed record Rollback(long Generation, long Checkpoint) : ControlMessage;

/// <summary>The detecting broker host closed every cycle: hosts whose processes ended may leave.</summary>
public sealed record CyclesClosed : ControlMessage;

/// <summary>The steps of the replicas' end protocol (instances of one process agree when its inputs are over).</summary>
public enum ReplicaStep
{
    /// <summary>An instance is here (a heartbeat, every second).</summary>
    Member,
    /// <summary>An instance took an end mark (lane, writer) from the process's queues.</summary>
    EndSeen,
    /// <summary>The closer asks every instance to stop taking and finish what it holds.</summary>
    Prepare,
    /// <summary>An instance's answer: whether it is idle.</summary>
    Prepared,
    /// <summary>The closer: the inputs are over; finish.</summary>
    Finish,
    /// <summary>The closer: not yet; take again.</summary>
    Resume,
    /// <summary>An instance has finished (its outputs are confirmed).</summary>
    Finished,
    /// <summary>The closer sent the process's end marks.</summary>
    EndsSent,
}

/// <summary>One step of the replicas' end protocol of process <see cref="Process"/> (index in the graph), from its instance <see cref="Instance"/>.</summary>
public sealed record ReplicaMessage(ReplicaStep Step, int Process, string Instance, int Round = 0, bool Ok = false, int Lane = 0, int Writer = 0)
    : ControlMessage;

/// <summary>One process's status and counts, as its host reports them.</summary>
public sealed record ProcessReport
{
    /// <summary>The process's index in the graph (every part of a run builds the same graph).</summary>
    public int Index { get; init; }
    /// <summary>What it is doing.</summary>
    public RunnerState State { get; init; }
    /// <summary>Envelopes sent, for termination detection.</summary>
    public long Sent { get; init; }
    /// <summary>Envelopes received, for termination detection.</summary>
    public long Received { get; init; }
    /// <summary>Items handed to its handlers (stats and final reports).</summary>
    public long ItemsIn { get; init; }
    /// <summary>Items written per output stream (stats and final reports).</summary>
    public IReadOnlyDictionary<string, long>? Outputs { get; init; }
    /// <summary>Seconds spent handling items (stats and final reports).</summary>
    public double Busy { get; init; }
    /// <summary>Items waiting in this process's queue of each input stream (stats reports).</summary>
    public IReadOnlyDictionary<string, long>? Queued { get; init; }
    /// <summary>The bound of each of those queues, where the sender knows it better than the receiver (broker hosts).</summary>
    public IReadOnlyDictionary<string, long>? Capacity { get; init; }
    /// <summary>The OS process it runs in.</summary>
    public int Pid { get; init; }
    /// <summary>Items its error policy skipped (final reports).</summary>
    public long Skipped { get; init; }
    /// <summary>Items its error policy sent to the dead letters (final reports).</summary>
    public long DeadLettered { get; init; }
}
