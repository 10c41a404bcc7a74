using System.Diagnostics;

namespace Millrace;

/// <summary>How a run ended.</summary>
public enum RunOutcome
{
    /// <summary>Every process ended: streams ended when their writers did, cycles by termination detection.</summary>
    Completed,
    /// <summary>A process called <see cref="ProcessBuilder.Halt"/>.</summary>
    Halted,
    /// <summary>The run was stopped from outside (cancellation token, Ctrl+C, SIGTERM).</summary>
    Stopped,
    /// <summary>A process threw, or the run could not go on (see <see cref="RunResult.Errors"/>).</summary>
    Failed,
}

/// <summary>What happened in a run.</summary>
public sealed class RunResult
{
    internal RunResult(RunOutcome outcome, TimeSpan duration, string? haltedBy, string? haltReason, bool terminationDetected,
        IReadOnlyList<ProcessFailure> errors, IReadOnlyDictionary<string, ProcessStats> processes,
        IReadOnlyDictionary<string, StreamStats> streams)
    {
        Outcome = outcome;
        Duration = duration;
        HaltedBy = haltedBy;
        HaltReason = haltReason;
        TerminationDetected = terminationDetected;
        Debug.Assert(errors.Count == 0 || outcome == RunOutcome.Failed, "a run with errors reports Failed");
        Errors = errors;
        Processes = processes;
        Streams = streams;
    }

    /// <summary>The result of what <paramref name="run"/> saw, with the counts of the processes it knows.</summary>
    internal static RunResult From(RunContext run, TimeSpan duration, IReadOnlyDictionary<string, ProcessStats> processes,
        IReadOnlyDictionary<string, StreamStats> streams) =>
        new(run.Outcome, duration, run.HaltedBy, run.HaltReason, run.TerminationDetected, run.Errors, processes, streams)
        {
            StoppedAtOnce = run.StoppedAtOnce,
        };

    /// <summary>The result of a run that failed before any process ran (a placement could not set up: a broker out of reach, say).</summary>
    public static RunResult Failed(ProcessFailure failure, TimeSpan duration) =>
        new(RunOutcome.Failed, duration, null, null, false, new[] { failure },
            new Dictionary<string, ProcessStats>(), new Dictionary<string, StreamStats>());

    /// <summary>How the run ended.</summary>
    public RunOutcome Outcome { get; }

    /// <summary>
    /// A stopped run (<see cref="RunOutcome.Stopped"/>) whose processes were stopped at once — a second Ctrl+C or SIGTERM, or
    /// <see cref="RunOptions.DrainTimeout"/> passed — instead of draining what was in flight: items may have been left
    /// unhandled (in the broker placement they stay in their queues). False for a graceful stop and for every other outcome.
    /// </summary>
    public bool StoppedAtOnce { get; private init; }

    /// <summary>True unless the run failed (halted and stopped runs are successful endings).</summary>
    public bool Succeeded => Outcome != RunOutcome.Failed;

    /// <summary>From start to the end of the last process.</summary>
    public TimeSpan Duration { get; }

    /// <summary>The process that halted the run, or null.</summary>
    public string? HaltedBy { get; }

    /// <summary>The reason the halting process gave, if any.</summary>
    public string? HaltReason { get; }

    /// <summary>True when cycles were ended by termination detection (every source done, nothing in flight).</summary>
    public bool TerminationDetected { get; }

    /// <summary>What went wrong, first error first. Empty unless <see cref="Outcome"/> is <see cref="RunOutcome.Failed"/>.</summary>
    public IReadOnlyList<ProcessFailure> Errors { get; }

    /// <summary>Counts per process, by name.</summary>
    public IReadOnlyDictionary<string, ProcessStats> Processes { get; }

    /// <summary>Counts per stream, by name.</summary>
    public IReadOnlyDictionary<string, StreamStats> Streams { get; }

    /// <summary>Throws <see cref="ProcessFailedException"/> if the run failed.</summary>
    public RunResult EnsureSuccess()
    {
        if (!Succeeded) throw new ProcessFailedException(Errors);
        return this;
    }

    /// <summary>One line: outcome, duration, who halted, first error.</summary>
    public override string ToString()
    {
        string text = $"{Outcome}{(StoppedAtOnce ? " at once" : "")} in {Duration.TotalSeconds:0.000} s";
        if (HaltedBy is not null) text += $"; halted by process '{HaltedBy}'" + (HaltReason is null ? "" : $": {HaltReason}");
        if (Errors.Count > 0) text += $"; {Errors[0].Message}";
        return text;
    }
}

/// <summary>Counts for one process.</summary>
/// <param name="ItemsIn">Items its handlers were called with, all inputs together.</param>
/// <param name="ItemsOut">Items it emitted, all outputs together.</param>
/// <param name="OsProcessId">The id of the OS process it ran in.</param>
/// <param name="RepeatsSkipped">Items delivered again and skipped, because the process asked to skip repeats
/// (<see cref="ProcessBuilder.SkipRepeats"/>; only the broker placement delivers an item twice).</param>
/// <param name="ItemsSkipped">Items its handlers threw on that its error policy skipped (<see cref="ErrorPolicy.Skip"/>).</param>
/// <param name="ItemsDeadLettered">Items its handlers threw on that its error policy sent to the dead letters (<see cref="ErrorPolicy.DeadLetter"/>).</param>
public sealed record ProcessStats(long ItemsIn, long ItemsOut, int OsProcessId, long RepeatsSkipped = 0, long ItemsSkipped = 0, long ItemsDeadLettered = 0);

/// <summary>Counts for one stream.</summary>
/// <param name="ItemsWritten">Items its writers emitted (each reader sees all of them).</param>
public sealed record StreamStats(long ItemsWritten);

/// <summary>One error of a run: which process, while handling which item of which stream.</summary>
public sealed class ProcessFailure
{
    /// <summary>An error of <paramref name="process"/> (a placement reporting what went wrong where it runs).</summary>
    /// <param name="process">The process that failed, or the processes the error concerns.</param>
    /// <param name="stream">The input stream whose item was being handled, or null.</param>
    /// <param name="itemIndex">The item's position in that stream, or null.</param>
    /// <param name="item">The item as text, or null.</param>
    /// <param name="message">A sentence naming the process, the stream, the item and the cause.</param>
    /// <param name="exception">The exception, if it was thrown in this OS process.</param>
    /// <param name="exceptionType">The exception's type name, when only that is known (it was thrown elsewhere).</param>
    public ProcessFailure(string process, string? stream, long? itemIndex, string? item, string message, Exception? exception,
        string? exceptionType = null)
    {
        ExceptionType = exceptionType ?? exception?.GetType().Name;
        Process = process;
        Stream = stream;
        ItemIndex = itemIndex;
        Item = item;
        Message = message;
        Exception = exception;
    }

    /// <summary>The process that failed (or that the error concerns).</summary>
    public string Process { get; }

    /// <summary>The input stream whose item was being handled, or null (start or completion action, source).</summary>
    public string? Stream { get; }

    /// <summary>The item's position in that stream as this process saw it (0 is the first item), or null.</summary>
    public long? ItemIndex { get; }

    /// <summary>The item, as text (shortened when long), or null.</summary>
    public string? Item { get; }

    /// <summary>A sentence naming the process, the stream, the item and the cause.</summary>
    public string Message { get; }

    /// <summary>The exception user code threw, if it was thrown in this OS process.</summary>
    public Exception? Exception { get; }

    /// <summary>The name of the exception's type (InvalidOperationException), wherever it was thrown, or null.</summary>
    public string? ExceptionType { get; }

    /// <inheritdoc />
    public override string ToString() => Message;
}
