using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Millrace.Monitoring;

namespace Millrace.Dashboard;

/// <summary>
/// The live page of a run (<c>--dashboard</c>): served on 127.0.0.1 while the run lasts. The page
/// (plain HTML, JavaScript and SVG, no CDN) asks <c>/api/graph</c> once and <c>/api/sample</c>
/// twice a second, and draws the graph with each process's rate and each queue's depth. <c>/metrics</c> is the
/// <c>Millrace</c> meter for a Prometheus scrape.
/// </summary>
internal sealed class Dashboard : IRunObserver
{
    /// <summary>How much history <c>/api/history</c> keeps: a point a second for the last five minutes.</summary>
    internal const int HistoryPoints = 300;

    private WebApplication? _app;
    private RunMonitor? _monitor;
    private Timer? _recorder;
    private readonly Queue<object> _history = new();
    private long _lastAsked;
    private readonly TaskCompletionSource _finalSeen = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task StartAsync(RunMonitor monitor)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<IHostLifetime, RunOwnedLifetime>();
        builder.WebHost.UseUrls($"http://127.0.0.1:{monitor.Options.DashboardPort}");
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxConcurrentConnections = 64;
            k.Limits.MaxRequestBodySize = 0;
        });
        _app = builder.Build();
        _monitor = monitor;
        byte[] graph = JsonSerializer.SerializeToUtf8Bytes(DescribeGraph(monitor), Json);
        _app.Run(async context =>
        {
            HttpResponse response = context.Response;
            response.Headers.CacheControl = "no-store";
            // Only pages of this machine: a page elsewhere that points a name at 127.0.0.1 (DNS rebinding) is refused.
            string host = context.Request.Host.Host;
            if (host is not ("127.0.0.1" or "localhost" or "[::1]" or "::1"))
            {
                response.StatusCode = 400;
                await response.WriteAsync($"The dashboard answers requests for 127.0.0.1 or localhost, not '{host}'.", context.RequestAborted);
                return;
            }
            switch (context.Request.Path.Value)
            {
                case "/":
                case "/index.html":
                    response.ContentType = "text/html; charset=utf-8";
                    await response.WriteAsync(DashboardPage.Html, context.RequestAborted);
                    break;
                case "/api/graph":
                    response.ContentType = "application/json";
                    await response.Body.WriteAsync(graph, context.RequestAborted);
                    break;
                case "/api/sample":
                {
                    response.ContentType = "application/json";
                    Interlocked.Exchange(ref _lastAsked, Environment.TickCount64);
                    RunSample sample = monitor.Sample();
                    await response.Body.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(DescribeSample(sample, monitor.BatchSize), Json), context.RequestAborted);
                    if (sample.Outcome is not null) _finalSeen.TrySetResult();
                    break;
                }
                case "/api/history":
                    // A point a second for the last minutes: a page opened late draws its charts from the start of the window.
                    response.ContentType = "application/json";
                    object[] points;
                    lock (_history) points = _history.ToArray();
                    await response.Body.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(new { points }, Json), context.RequestAborted);
                    break;
                case "/metrics":
                    // A Prometheus scrape: the Millrace meter as it reads now.
                    response.ContentType = PrometheusText.ContentType;
                    await response.WriteAsync(PrometheusText.Scrape(), context.RequestAborted);
                    break;
                default:
                    response.StatusCode = 404;
                    await response.WriteAsync($"No page '{context.Request.Path}': the dashboard is at /.", context.RequestAborted);
                    break;
            }
        });
        try
        {
            await _app.StartAsync();
        }
        catch (IOException e)
        {
            await _app.DisposeAsync();
            _app = null;
            // Marked: the message tells the whole story, printed without a stack trace (ObserverLoader).
            throw new InvalidOperationException($"The dashboard cannot listen on 127.0.0.1:{monitor.Options.DashboardPort}: {e.Message} " +
                "Choose another port with --dashboard-port PORT (0: any free port).", e) { Data = { ["Millrace.RunStart"] = true } };
        }
        _recorder = new Timer(_ => Record(), null, TimeSpan.Zero, TimeSpan.FromSeconds(1));
        string address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() ?? "?";
        Console.Error.WriteLine($"dashboard: {address}/");
        monitor.Options.Logger?.LogInformation("dashboard: serving {Address}/", address);
    }

    public async Task StopAsync()
    {
        if (_app is null) return;
        if (_recorder is not null) await _recorder.DisposeAsync();
        Record();
        // A page that is watching gets the final sample before the server goes (it keeps showing it): at most 2 s.
        if (Environment.TickCount64 - Interlocked.Read(ref _lastAsked) < 2_000)
            await Task.WhenAny(_finalSeen.Task, Task.Delay(TimeSpan.FromSeconds(2)));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        try { await _app.StopAsync(timeout.Token); } catch (OperationCanceledException) { }
        await _app.DisposeAsync();
        _app = null;
    }

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Keeps a point of history: what each process took in and gave out, and each queue's fill.</summary>
    private void Record()
    {
        if (_monitor is not { } monitor) return;
        RunSample sample;
        try
        {
            sample = monitor.Sample();
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            return; // the run is ending
        }
        object point = new
        {
            elapsed = sample.ElapsedSeconds,
            processes = sample.Processes.Select(p => new { name = p.Name, itemsIn = p.ItemsIn, itemsOut = p.ItemsOut }),
            queues = sample.Queues.Select(q => new { stream = q.Stream, reader = q.Reader, queued = q.Queued, capacity = q.Capacity, full = q.IsFull(monitor.BatchSize) }),
        };
        lock (_history)
        {
            _history.Enqueue(point);
            while (_history.Count > HistoryPoints) _history.Dequeue();
        }
    }

    private static object DescribeGraph(RunMonitor monitor) => new
    {
        run = monitor.RunId,
        placement = monitor.Options.Placement,
        processes = monitor.Graph.Processes.Select(p => new { name = p.Name, inputs = p.Inputs, outputs = p.Outputs }),
        streams = monitor.Graph.Streams.Select(s => new { name = s.Name, writers = s.Writers, readers = s.Readers }),
    };

    private static object DescribeSample(RunSample sample, int batch) => new
    {
        elapsed = sample.ElapsedSeconds,
        outcome = sample.Outcome?.ToString(),
        processes = sample.Processes.Select(p => new { name = p.Name, itemsIn = p.ItemsIn, itemsOut = p.ItemsOut, errors = p.Errors, busy = p.BusySeconds, state = p.State, pid = p.OsProcessId, total = p.Total }),
        queues = sample.Queues.Select(q => new { stream = q.Stream, reader = q.Reader, queued = q.Queued, capacity = q.Capacity, full = q.IsFull(batch) }),
        streams = sample.Processes.SelectMany(p => p.Outputs.Keys).Distinct().Select(s => new { name = s, written = sample.Written(s) }),
        errors = sample.Errors.Select(e => new { process = e.Process, message = e.Message }),
        checkpoints = sample.Checkpoints is { } c
            ? new { completed = c.Completed, last = c.LastNumber, durationMs = c.LastDurationMs, sizeBytes = c.LastSizeBytes, ageSeconds = c.AgeSeconds }
            : null,
    };
}
