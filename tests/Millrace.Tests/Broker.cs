namespace Millrace.Tests;

/// <summary>The RabbitMQ broker the test command starts (scripts/test.sh), on 127.0.0.1, with a fresh virtual host.</summary>
internal static class Broker
{
    /// <summary>The broker's URI: MILLRACE_BROKER (set by the test command), else the local default.</summary>
    public static string Uri => Environment.GetEnvironmentVariable("MILLRACE_BROKER") ?? "amqp://guest:guest@127.0.0.1:5672/";

    /// <summary>A run id no other test uses: its exchanges and queues are its own.</summary>
    public static string NewRunId() => "test-" + Guid.NewGuid().ToString("N")[..12];
}
