using Microsoft.Extensions.Logging;

namespace Millrace.Monitoring;

/// <summary>
/// What Millrace says about a run, as structured log events (Microsoft.Extensions.Logging) to
/// <see cref="RunOptions.Logger"/>. Without a logger, warnings go to standard error as before and
/// the rest is not said.
/// </summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, EventName = "RunStarted", Level = LogLevel.Information,
        Message = "Run {RunId} started: {Placement} placement, {ProcessCount} processes, {StreamCount} streams")]
    public static partial void RunStarted(ILogger logger, string runId, string placement, int processCount, int streamCount);

    [LoggerMessage(EventId = 2, EventName = "RunEnded", Level = LogLevel.Information,
        Message = "Run {RunId} ended: {Outcome} after {Seconds} s; {ItemsIn} items handled")]
    public static partial void RunEnded(ILogger logger, string runId, RunOutcome outcome, double seconds, long itemsIn);

    [LoggerMessage(EventId = 3, EventName = "ProcessFailed", Level = LogLevel.Error,
        Message = "Process {Process} failed (stream {Stream}, item {ItemIndex}): {Reason}")]
    public static partial void ProcessFailed(ILogger logger, string process, string? stream, long? itemIndex, string reason, Exception? exception);

    [LoggerMessage(EventId = 4, EventName = "RunHalted", Level = LogLevel.Warning, Message = "Run halted by process {Process}: {Reason}")]
    public static partial void Halted(ILogger logger, string process, string reason);

    [LoggerMessage(EventId = 5, EventName = "GracefulStop", Level = LogLevel.Information,
        Message = "Stop asked: sources stop and the rest drains (at most {DrainSeconds} s)")]
    public static partial void GracefulStop(ILogger logger, double drainSeconds);

    [LoggerMessage(EventId = 6, EventName = "HardStop", Level = LogLevel.Warning, Message = "Every process stops at once ({Outcome})")]
    public static partial void HardStop(ILogger logger, RunOutcome outcome);

    [LoggerMessage(EventId = 7, EventName = "Notice", Level = LogLevel.Warning, Message = "{Component}: {Text}")]
    private static partial void NoticeEvent(ILogger logger, string component, string text);

    [LoggerMessage(EventId = 8, EventName = "Info", Level = LogLevel.Information, Message = "{Component}: {Text}")]
    private static partial void InfoEvent(ILogger logger, string component, string text);

    /// <summary>Something a person should know (a reconnection, a file left in a folder): to the logger, else to standard error.</summary>
    public static void Notice(ILogger? logger, string component, string text)
    {
        if (logger is null) Console.Error.WriteLine($"[millrace] {component}: {text}");
        else NoticeEvent(logger, component, text);
    }

    /// <summary>Something worth saying when someone listens (a server's address): to the logger only.</summary>
    public static void Info(ILogger? logger, string component, string text)
    {
        if (logger is not null) InfoEvent(logger, component, text);
    }
}
