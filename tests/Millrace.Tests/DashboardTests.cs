using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace Millrace.Tests;

/// <summary>The dashboard of a run in this process: what it serves, and the bottleneck it marks.</summary>
public sealed class DashboardTests
{
    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>A fast source, a slow middle process (2 ms an item) and a sink: the middle one is the bottleneck.</summary>
    private static Graph SlowMiddle()
    {
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        var parsed = graph.Stream<long>("parsed");
        graph.Source("source", numbers, Helpers.Forever());
        graph.Map("slow", numbers, parsed, x =>
        {
            Thread.Sleep(2);
            return x;
        });
        graph.Sink("sink", parsed, _ => { });
        return graph;
    }

    [Fact]
    public async Task The_page_marks_the_slow_process_as_the_bottleneck()
    {
        int port = FreePort();
        using var stop = new CancellationTokenSource();
        Task<RunResult> run = SlowMiddle().RunWithin(new RunOptions { Dashboard = true, DashboardPort = port, StreamCapacity = 100, BatchSize = 10 }, stop.Token, seconds: 90);
        var (playwright, browser) = await Browser.LaunchAsync();
        try
        {
            Microsoft.Playwright.IPage page = await browser.NewPageAsync();
            await page.GotoAsync($"http://127.0.0.1:{port}/", new() { Timeout = 30_000 });
            await page.WaitForSelectorAsync("tr.bottleneck[data-process='slow']", new() { Timeout = 30_000 });
            Assert.Equal(1, await page.Locator("tr.bottleneck").CountAsync());
            Assert.Contains("bottleneck: slow", await page.InnerTextAsync("#status"));
            Assert.Equal("▲ bottleneck", await page.TextContentAsync("g.process[data-name='slow'] .tag-svg"));
            await page.ScreenshotAsync(new() { Path = Browser.ArtifactPath("dashboard-bottleneck.png"), FullPage = true });
        }
        finally
        {
            await browser.DisposeAsync();
            playwright.Dispose();
            stop.Cancel();
            await run;
        }
    }

    [Fact]
    public async Task Metrics_is_the_millrace_meter_in_the_prometheus_text_format_and_counts_rise_between_scrapes()
    {
        int port = FreePort();
        using var stop = new CancellationTokenSource();
        var logger = new SeenLogger();
        // Other tests' runs in this process are in the meter too: this run's series are told by their run label.
        string runId = $"prometheus-{Guid.NewGuid():N}";
        Task<RunResult> run = SlowMiddle().RunWithin(new RunOptions { Dashboard = true, DashboardPort = port, Logger = logger, StreamCapacity = 100, BatchSize = 10, RunId = runId }, stop.Token, seconds: 90);
        await logger.Messages.WaitFor(m => m.Any(x => x.StartsWith("dashboard: serving", StringComparison.Ordinal)), "the dashboard to serve", seconds: 60);
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        async Task<Dictionary<string, double>> Scrape()
        {
            using HttpResponseMessage response = await client.GetAsync($"http://127.0.0.1:{port}/metrics");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType!.ToString());
            var values = new Dictionary<string, double>();
            foreach (string line in (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                if (line.StartsWith('#'))
                {
                    Assert.Matches(@"^# (HELP [a-z_]+ .*|TYPE [a-z_]+ (counter|gauge))$", line);
                    continue;
                }
                // name{label="value",...} number: what a Prometheus server parses.
                var sample = System.Text.RegularExpressions.Regex.Match(line, @"^([a-z_]+\{[^}]*\}) (\S+)$");
                Assert.True(sample.Success, $"not a sample line: {line}");
                if (!sample.Groups[1].Value.Contains($"run=\"{runId}\"", StringComparison.Ordinal)) continue;
                values[System.Text.RegularExpressions.Regex.Replace(sample.Groups[1].Value, @",?run=""[^""]*""", "")] =
                    double.Parse(sample.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
            }
            return values;
        }
        try
        {
            Dictionary<string, double> first = await Scrape(), later = first;
            const string sinkIn = "millrace_process_items_in_total{process=\"sink\"}";
            Assert.Contains(sinkIn, first.Keys);
            await Waits.Until(async () => (later = await Scrape())[sinkIn] > first[sinkIn], "a scrape with more items into the sink", seconds: 60);
            Assert.Contains("millrace_process_busy_time_seconds_total{process=\"slow\"}", later.Keys);
            Assert.Contains("millrace_stream_items_written_total{stream=\"numbers\"}", later.Keys);
            double depth = later["millrace_stream_queue_depth{stream=\"numbers\",reader=\"slow\"}"];
            double capacity = later["millrace_stream_queue_capacity{stream=\"numbers\",reader=\"slow\"}"];
            Assert.InRange(depth, 0, capacity + 10);
        }
        finally
        {
            stop.Cancel();
            await run;
        }
    }

    [Fact]
    public async Task The_charts_move_with_the_run_every_box_fits_its_text_and_the_final_state_stays_after_the_program_ends()
    {
        const string slow = "a-process-with-a-rather-long-and-descriptive-name";
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        var parsed = graph.Stream<long>("parsed");
        graph.Source("source", numbers, Helpers.Forever());
        graph.Map(slow, numbers, parsed, x =>
        {
            Thread.Sleep(2);
            return x;
        });
        graph.Sink("sink", parsed, _ => { });
        int port = FreePort();
        using var stop = new CancellationTokenSource();
        Task<RunResult> run = graph.RunWithin(new RunOptions { Dashboard = true, DashboardPort = port, StreamCapacity = 100, BatchSize = 10 }, stop.Token, seconds: 90);
        var (playwright, browser) = await Browser.LaunchAsync();
        try
        {
            Microsoft.Playwright.IPage page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1400, Height = 900 } });
            await page.GotoAsync($"http://127.0.0.1:{port}/", new() { Timeout = 30_000 });
            const string sinkLine = "#throughput-chart polyline[data-series='sink']";
            await page.WaitForSelectorAsync(sinkLine, new() { Timeout = 30_000 });
            int points = int.Parse((await page.GetAttributeAsync(sinkLine, "data-points"))!);
            // The charts change while the run goes on: more points, a rate above zero, the slow process's input queue full.
            await page.WaitForFunctionAsync(
                $"() => {{ const l = document.querySelector(\"{sinkLine}\"); return l && +l.dataset.points > {points + 2} && +l.dataset.last > 0; }}",
                null, new() { Timeout = 60_000 });
            await page.WaitForFunctionAsync(
                $"() => {{ const l = document.querySelector(\"#fill-chart polyline[data-series='numbers → {slow}']\"); return l && +l.dataset.last >= 80; }}",
                null, new() { Timeout = 60_000 });
            // Every process box is as wide as its text.
            string[] overflowing = await page.EvaluateAsync<string[]>(@"() => [...document.querySelectorAll('g.process')].filter(g => {
                const width = +g.querySelector('rect').getAttribute('width');
                return [...g.querySelectorAll('text.name, text.rate')].some(t => t.getComputedTextLength() > width - 10);
              }).map(g => g.dataset.name)");
            Assert.Empty(overflowing);
            await page.ScreenshotAsync(new() { Path = Browser.ArtifactPath("dashboard-charts.png"), FullPage = true });

            // The program stops: the page keeps the charts and says how the run ended.
            stop.Cancel();
            RunResult result = await run;
            Assert.Equal(RunOutcome.Stopped, result.Outcome);
            await page.WaitForFunctionAsync("() => document.getElementById('status').textContent.includes('this is its final state')", null, new() { Timeout = 30_000 });
            Assert.StartsWith("ended: Stopped", await page.InnerTextAsync("#status"));
            Assert.True(await page.Locator(sinkLine).CountAsync() == 1);
            Assert.NotEqual("0", await page.GetAttributeAsync(sinkLine, "data-points"));
            await page.ScreenshotAsync(new() { Path = Browser.ArtifactPath("dashboard-final.png"), FullPage = true });
        }
        finally
        {
            await browser.DisposeAsync();
            playwright.Dispose();
            stop.Cancel();
            await run;
        }
    }

    [Fact]
    public async Task The_api_describes_the_graph_and_samples_that_rise_and_a_taken_port_is_a_clear_error()
    {
        int port = FreePort();
        using var stop = new CancellationTokenSource();
        var logger = new SeenLogger();
        Task<RunResult> run = SlowMiddle().RunWithin(new RunOptions { Dashboard = true, DashboardPort = port, Logger = logger }, stop.Token, seconds: 90);
        // The dashboard says when it serves.
        await logger.Messages.WaitFor(m => m.Any(x => x.StartsWith("dashboard: serving", StringComparison.Ordinal)), "the dashboard to serve", seconds: 60);
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        JsonElement graph = JsonDocument.Parse(await client.GetStringAsync($"http://127.0.0.1:{port}/api/graph")).RootElement;
        Assert.Equal(["source", "slow", "sink"], graph.GetProperty("processes").EnumerateArray().Select(p => p.GetProperty("name").GetString()!));
        Assert.Equal("threads", graph.GetProperty("placement").GetString());
        long SinkIn(JsonElement sample) => sample.GetProperty("processes").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "sink").GetProperty("itemsIn").GetInt64();
        async Task<JsonElement> Sample() => JsonDocument.Parse(await client.GetStringAsync($"http://127.0.0.1:{port}/api/sample")).RootElement;
        JsonElement first = await Sample(), second = first;
        // A later sample shows more items through the sink.
        await Waits.Until(async () => SinkIn(second = await Sample()) > SinkIn(first), $"a sample with more than {SinkIn(first)} items into the sink", seconds: 60);
        Assert.Contains(second.GetProperty("queues").EnumerateArray(), q => q.GetProperty("stream").GetString() == "numbers" && q.GetProperty("reader").GetString() == "slow");
        Assert.Equal(JsonValueKind.Null, second.GetProperty("checkpoints").ValueKind); // none asked for

        // A second run asking for the same port fails before it starts, saying what to do.
        var e = await Assert.ThrowsAnyAsync<InvalidOperationException>(() => SlowMiddle().RunAsync(new RunOptions { Dashboard = true, DashboardPort = port }));
        Assert.Contains($"The dashboard cannot listen on 127.0.0.1:{port}", e.Message);
        Assert.Contains("--dashboard-port", e.Message);
        stop.Cancel();
        Assert.Equal(RunOutcome.Stopped, (await run).Outcome);
    }

    [Fact]
    public async Task With_checkpoints_the_samples_say_how_they_go()
    {
        int port = FreePort();
        using var stop = new CancellationTokenSource();
        var logger = new SeenLogger();
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        graph.Source("source", numbers, Helpers.Forever());
        graph.Process("sum", p =>
        {
            ProcessState<long> total = p.State("total", 0L);
            p.On(numbers, x => total.Value += x);
        });
        string state = Path.Combine(Path.GetTempPath(), "millrace-state-" + Guid.NewGuid().ToString("N"));
        try
        {
            Task<RunResult> run = graph.RunWithin(new RunOptions
            {
                Dashboard = true, DashboardPort = port, Logger = logger, CheckpointInterval = TimeSpan.FromSeconds(0.05), StatePath = state,
            }, stop.Token, seconds: 90);
            await logger.Messages.WaitFor(m => m.Any(x => x.StartsWith("dashboard: serving", StringComparison.Ordinal)), "the dashboard to serve", seconds: 60);
            using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            JsonElement sample = default;
            await Waits.Until(async () =>
            {
                sample = JsonDocument.Parse(await client.GetStringAsync($"http://127.0.0.1:{port}/api/sample")).RootElement;
                return sample.GetProperty("checkpoints").GetProperty("completed").GetInt64() >= 2;
            }, "two checkpoints in a sample", seconds: 60);
            JsonElement c = sample.GetProperty("checkpoints");
            Assert.True(c.GetProperty("last").GetInt64() >= 2);
            Assert.True(c.GetProperty("sizeBytes").GetInt64() > 0);
            Assert.True(c.GetProperty("durationMs").GetDouble() > 0);
            stop.Cancel();
            Assert.Equal(RunOutcome.Stopped, (await run).Outcome);
        }
        finally
        {
            if (Directory.Exists(state)) Directory.Delete(state, recursive: true);
        }
    }
}
