namespace Millrace.Tests;

/// <summary>The RabbitMQ broker the test command starts (scripts/test.sh), on 127.0.0.1, with a fresh virtual host.</summary>
internal static class Broker
{
    /// <summary>The broker's URI: MILLRACE_BROKER (set by the test command), else the local default.</summary>
    public static string Uri => Environment.GetEnvironmentVariable("MILLRACE_BROKER") ?? "amqp://guest:guest@127.0.0.1:5672/";

    /// <summary>A run id no other test uses: its exchanges and queues are its own.</summary>
    public static string NewRunId() => "test-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>The virtual host of <see cref="Uri"/> ("/" when it names none).</summary>
    public static string VirtualHost
    {
        get
        {
            string path = new System.Uri(Uri).AbsolutePath.TrimStart('/');
            return path.Length == 0 ? "/" : System.Uri.UnescapeDataString(path);
        }
    }

    /// <summary>Waits until each named queue has at least <paramref name="consumers"/> consumers (rabbitmqctl), or fails after <paramref name="seconds"/>.</summary>
    public static async Task WaitForConsumersAsync(string[] queues, int consumers, int seconds = 90, string? virtualHost = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        string last = "";
        while (DateTime.UtcNow < deadline)
        {
            var (exit, output, _) = await ExampleProgram.RunFileAsync("rabbitmqctl", ["list_queues", "-q", "-p", virtualHost ?? VirtualHost, "name", "consumers"], seconds: 60);
            last = output;
            if (exit == 0)
            {
                var counts = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                    .Select(l => l.Split('\t'))
                    .Where(f => f.Length == 2 && int.TryParse(f[1], out _))
                    .ToDictionary(f => f[0].Trim(), f => int.Parse(f[1]));
                if (queues.All(q => counts.GetValueOrDefault(q) >= consumers)) return;
            }
            await Task.Delay(200);
        }
        throw new TimeoutException($"The queues {string.Join(", ", queues)} did not get {consumers} consumers each within {seconds} s. Last listing:\n{last}");
    }
}
