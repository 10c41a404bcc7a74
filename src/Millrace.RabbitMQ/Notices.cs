using Microsoft.Extensions.Logging;

namespace Millrace.RabbitMQ;

/// <summary>What the broker placement says a person should know (a reconnection, a message it could not send).</summary>
internal static class Notices
{
    /// <summary>To the run's logger (<see cref="RunOptions.Logger"/>), else to standard error.</summary>
    public static void Say(ILogger? logger, string text)
    {
        if (logger is not null) logger.LogWarning("broker: {Text}", text);
        else Console.Error.WriteLine($"[millrace] broker: {text}");
    }
}
