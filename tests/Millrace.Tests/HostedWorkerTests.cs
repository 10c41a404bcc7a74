using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace Millrace.Tests;

/// <summary>examples/HostedWorker: a graph as a hosted service of the generic host, in every placement.</summary>
public class HostedWorkerTests
{
    [Theory]
    [InlineData("threads")]
    [InlineData("processes")]
    [InlineData("broker")]
    public async Task The_hosted_worker_answers_its_health_check_posts_from_a_process_with_injected_services_and_stops_gracefully_on_SIGTERM(string placement)
    {
        // The store process posts a summary every 50 words with the HttpClient it takes from dependency injection.
        int webhookPort = FreePort();
        using var webhook = new HttpListener();
        webhook.Prefixes.Add($"http://127.0.0.1:{webhookPort}/");
        webhook.Start();
        var posts = new List<JsonElement>();
        TaskCompletionSource twoPosts = Waits.Signal();
        Task receiving = Task.Run(async () =>
        {
            while (webhook.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await webhook.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }
                using (var reader = new StreamReader(context.Request.InputStream))
                {
                    JsonElement body = JsonDocument.Parse(await reader.ReadToEndAsync()).RootElement.Clone();
                    lock (posts)
                    {
                        posts.Add(body);
                        if (posts.Count >= 2) twoPosts.TrySetResult();
                    }
                }
                context.Response.StatusCode = 200;
                context.Response.Close();
            }
        });

        int port = FreePort();
        var args = new List<string>
        {
            "--Urls", $"http://127.0.0.1:{port}", "--Worker:NotifyUrl", $"http://127.0.0.1:{webhookPort}/",
            "--Worker:IntervalMs", "2", "--Worker:NotifyEvery", "50", "--Millrace:Placement", placement,
        };
        if (placement == "broker") args.AddRange(["--Millrace:Broker", Broker.Uri, "--Millrace:RunId", $"hosted-{Guid.NewGuid():N}"]);
        using ExampleProgram program = ExampleProgram.Start("HostedWorker", args.ToArray());

        await Waits.For(twoPosts.Task, $"two summaries posted by the store process ({placement})\n{program.Output}\n{program.ErrorOutput}");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        string health = "";
        await Waits.Until(async () =>
        {
            try
            {
                health = await http.GetStringAsync($"http://127.0.0.1:{port}/health");
                return true;
            }
            catch (HttpRequestException)
            {
                return false; // the server is not listening yet
            }
        }, "the health endpoint");
        Assert.Equal("Healthy", health);

        // SIGTERM to the program the user started (as a service manager or `docker stop` sends it): a graceful stop, exit 0.
        program.Signal(15);
        var (exit, output, err) = await program.WaitAsync(60);
        Assert.True(exit == 0, $"exit code {exit}\n{output}\n{err}");
        Assert.Contains("The hosted run ended: Stopped in", output);
        Assert.DoesNotContain("at once", output);
        webhook.Stop();
        await receiving;
        lock (posts)
        {
            // Each summary counts 50 words more than the one before: nothing counted twice or lost between the posts.
            long[] counts = posts.Select(p => p.GetProperty("words").GetInt64()).ToArray();
            Assert.Equal(Enumerable.Range(1, counts.Length).Select(i => 50L * i), counts);
            Assert.All(posts, p => Assert.True(p.GetProperty("top").GetArrayLength() > 0));
        }
    }

    [Theory]
    [InlineData("threads")]
    [InlineData("processes")]
    public async Task OpenTelemetry_exports_the_millrace_meter_and_the_logs_to_the_console_and_an_OTLP_collector(string placement)
    {
        // A stand-in OTLP/HTTP collector: it keeps what is posted to /v1/metrics and /v1/logs (protobuf: names are plain UTF-8 in it).
        int collectorPort = FreePort();
        using var collector = new HttpListener();
        collector.Prefixes.Add($"http://127.0.0.1:{collectorPort}/");
        collector.Start();
        var bodies = new List<(string Path, string Text)>();
        TaskCompletionSource both = Waits.Signal();
        Task receiving = Task.Run(async () =>
        {
            while (collector.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await collector.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }
                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                lock (bodies)
                {
                    bodies.Add((context.Request.Url!.AbsolutePath, System.Text.Encoding.UTF8.GetString(body.ToArray())));
                    if (bodies.Any(b => b.Path == "/v1/metrics" && b.Text.Contains("millrace.process.items_in") && b.Text.Contains("store")) &&
                        bodies.Any(b => b.Path == "/v1/logs" && b.Text.Contains("words so far")))
                        both.TrySetResult();
                }
                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/x-protobuf";
                context.Response.Close();
            }
        });

        using ExampleProgram program = ExampleProgram.Start("HostedWorker",
            "--Urls", $"http://127.0.0.1:{FreePort()}", "--Worker:IntervalMs", "2", "--Worker:NotifyEvery", "50", "--Millrace:Placement", placement,
            "--Telemetry:Console", "true", "--Telemetry:Otlp", $"http://127.0.0.1:{collectorPort}", "--Telemetry:ExportIntervalMs", "300");
        await Waits.For(both.Task, $"the meter's instruments and a log record at the collector ({placement})\n{program.ErrorOutput}");
        // The console exporter prints the same instruments.
        await Waits.Until(() => program.Output.Contains("Metric Name: millrace.process.items_in"), $"the console exporter's metrics\n{program.Output}");
        program.Signal(15);
        var (exit, output, err) = await program.WaitAsync(60);
        Assert.True(exit == 0, $"exit code {exit}\n{output}\n{err}");
        collector.Stop();
        await receiving;
        lock (bodies) Assert.Contains(bodies, b => b.Path == "/v1/metrics" && b.Text.Contains("HostedWorker")); // the service's name
    }

    [Fact]
    public async Task A_misspelt_millrace_setting_is_named_and_the_host_exits_with_code_2()
    {
        using ExampleProgram program = ExampleProgram.Start("HostedWorker", "--Urls", $"http://127.0.0.1:{FreePort()}", "--Millrace:Placment", "processes");
        var (exit, output, err) = await program.WaitAsync(60);
        Assert.True(exit == ExitCodes.Usage, $"exit code {exit}\n{output}\n{err}");
        Assert.Contains("Configuration 'Millrace:Placment' is not a Millrace option", output + err);
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }
}
