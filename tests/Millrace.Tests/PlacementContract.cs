using System.Text;
using System.Text.RegularExpressions;

namespace Millrace.Tests;

/// <summary>
/// The placement-equivalence suite: the same programs, the same assertions, in every placement.
/// Each placement gets a subclass that only names it; nothing else may differ.
/// </summary>
public abstract class PlacementContract
{
    private const int SIGINT = 2, SIGTERM = 15;

    protected abstract string Placement { get; }

    /// <summary>How a program is told its placement; read afresh for every program started.</summary>
    protected virtual string[] PlacementArguments => new[] { "--placement", Placement };

    private Task<(int ExitCode, string Out, string Err)> Run(string program, params string[] args) =>
        ExampleProgram.RunAsync(program, args.Concat(PlacementArguments).ToArray());

    private Task<(int ExitCode, string Out, string Err)> Scenario(string name) => Run("Millrace.Scenarios", name);

    private static string[] Lines(string output) =>
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Fact]
    public async Task Tutorial_prints_count_and_sum_of_roots()
    {
        var (exit, output, err) = await Run("Tutorial");
        Assert.True(exit == 0, err);
        Assert.Equal(new[] { "db: 5000 items, sum of roots 12497500" }, Lines(output));
    }

    /// <summary>
    /// One item in 1,000 throws (and another once, as a transient fault would): each error policy gives the same outputs,
    /// dead letters (content checked) and counts in every placement; past its limit of failures the run stops.
    /// </summary>
    [Theory]
    [InlineData("skip")]
    [InlineData("dead-letter")]
    [InlineData("retry")]
    [InlineData("limit")]
    public async Task Error_policies_skip_dead_letter_or_retry_failing_items_and_stop_past_their_limit(string policy)
    {
        var (exit, output, err) = await Scenario("errors-" + policy);
        string[] lines = Lines(output).Where(l => !l.StartsWith("stream ", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
        if (policy == "limit")
        {
            Assert.NotEqual(0, exit);
            Assert.Contains("outcome: Failed", lines);
            Assert.Contains(lines, l => l.StartsWith("error: process=parse stream=numbers", StringComparison.Ordinal) &&
                l.Contains("failed on more than 5 items within 60 s (skip): that many is a bug, not bad data", StringComparison.Ordinal));
            return;
        }
        Assert.True(exit == 0, err);
        IEnumerable<long> Failing(long mod) => Enumerable.Range(0, 10).Select(k => k * 1000L + mod);
        string Dead(long x, string type, string message) => $"dead: parse numbers #{x} item={x} {type}: {message}";
        var permanent = Failing(7).Select(x => Dead(x, "System.FormatException", $"'{x}' is not a number I like"));
        var transient = Failing(3).Select(x => Dead(x, "System.TimeoutException", $"the parser of {x} timed out"));
        long Sum(IEnumerable<long> gone) => Enumerable.Range(0, 10_000).Select(x => (long)x).Except(gone).Sum(x => x * 2);
        string[] expected = policy switch
        {
            "skip" => [$"db: 9980 items summing to {Sum(Failing(7).Concat(Failing(3)))}", "process parse: 20 skipped, 0 dead-lettered"],
            "dead-letter" => [$"db: 9980 items summing to {Sum(Failing(7).Concat(Failing(3)))}", "process parse: 0 skipped, 20 dead-lettered", .. permanent, .. transient],
            _ => [$"db: 9990 items summing to {Sum(Failing(7))}", "process parse: 0 skipped, 10 dead-lettered", .. permanent],
        };
        Assert.Equal(expected.Append("outcome: Completed").Order(StringComparer.Ordinal), lines, StringComparer.Ordinal);
    }

    [Fact]
    public async Task An_error_policy_given_on_the_command_line_replaces_the_codes()
    {
        // The code dead-letters; the command line retries once, then skips: the transient faults pass, the others are skipped.
        var (exit, output, err) = await Run("Millrace.Scenarios", "errors-dead-letter", "--on-error", "parse=retry:1:skip");
        Assert.True(exit == 0, err);
        string[] lines = Lines(output).Where(l => !l.StartsWith("stream ", StringComparison.Ordinal)).ToArray();
        long sum = Enumerable.Range(0, 10_000).Where(x => x % 1000 != 7).Sum(x => 2L * x);
        Assert.Equal(["db: 9990 items summing to " + sum, "outcome: Completed", "process parse: 10 skipped, 0 dead-lettered"], lines.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Tutorial_with_a_million_items_is_exact()
    {
        var (exit, output, err) = await Run("Tutorial", "--count", "1000000");
        Assert.True(exit == 0, err);
        Assert.Equal(new[] { "db: 1000000 items, sum of roots 499999500000" }, Lines(output));
    }

    [Fact]
    public async Task PingPong_prints_the_seeds_messages_and_who_halted()
    {
        var (exit, output, err) = await Run("PingPong");
        Assert.True(exit == 0, err);
        string[] lines = Lines(output);
        Assert.Equal(new[] { "1", "3", "5", "7" }, Received(lines, "x"));
        Assert.Equal(new[] { "2", "4", "6" }, Received(lines, "y"));
        Assert.Equal("HALTING: halted by process_y (replied three times)", lines[^1]);

        static IEnumerable<string> Received(string[] lines, string process) => lines
            .Where(l => l.StartsWith($"message received by process {process}: ", StringComparison.Ordinal))
            .Select(l => l[(l.LastIndexOf(' ') + 1)..]);
    }

    [Fact]
    public async Task Countdown_ends_by_termination_detection_alone()
    {
        var (exit, output, err) = await Run("Countdown", "--tokens", "3,0,12");
        Assert.True(exit == 0, err);
        Assert.Equal(new[] { "tally: 3 tokens reached zero", "countdown: 18 hops, ended by termination detection" }, Lines(output));
    }

    [Theory]
    [InlineData(SIGINT)]
    [InlineData(SIGTERM)]
    public async Task A_stop_signal_drains_the_Tutorial_and_exits_zero_with_nothing_lost(int signal)
    {
        // A modest capacity keeps what is in flight (and printed while draining) well within the drain timeout.
        using var program = ExampleProgram.Start("Tutorial",
            new[] { "--count", "1000000000000", "--verbose", "--capacity", "1024" }.Concat(PlacementArguments).ToArray());
        await program.WaitForOutputAsync(o => o.Contains("tmp process2 : 100\n"), seconds: 30);
        program.Signal(signal);
        var (exit, output, err) = await program.WaitAsync(seconds: 30);

        Assert.True(exit == 0, err);
        // Said aloud at once, with what a second signal does.
        Assert.Contains($"[millrace] stopping: draining, at most 10 s ({(signal == SIGINT ? "Ctrl+C" : "SIGTERM")} again to stop now)", err);
        Match summary = Regex.Match(output, @"db: (\d+) items, sum of roots (\d+)");
        Assert.True(summary.Success, output[^Math.Min(500, output.Length)..]);
        long items = long.Parse(summary.Groups[1].Value);
        // Every number the web source emitted before the stop reached the database: 0 + 1 + ... + (items - 1).
        Assert.True(items > 100);
        Assert.Equal(items * (items - 1) / 2, long.Parse(summary.Groups[2].Value));
    }

    [Fact]
    public async Task IsStarter_is_true_only_in_the_program_that_was_started()
    {
        var (exit, output, err) = await Scenario("starter");
        Assert.True(exit == 0, err);
        string[] lines = Lines(output);
        // The processes placement runs Main again in each child: there it is false, where the process runs and before.
        bool child = Placement == "processes";
        Assert.Contains($"sink: starter {!child}", lines);
        Assert.Contains("main: starter True", lines);
        Assert.Equal(child ? 2 : 0, lines.Count(l => l == "main: starter False"));
    }

    [Fact]
    public async Task Every_reader_sees_every_item_in_order()
    {
        var (exit, output, err) = await Scenario("order");
        Assert.True(exit == 0, err);
        string[] lines = Lines(output);
        Assert.Contains("fast: 100000 items, in order: True, sum 9999900000", lines);
        Assert.Contains("slow: 100000 items, in order: True, sum 9999900000", lines);
        Assert.Contains("stream doubled: 100000 written", lines);
        Assert.Contains("outcome: Completed", lines);
    }

    [Fact]
    public async Task A_process_with_two_inputs_ends_after_both()
    {
        var (exit, output, err) = await Scenario("two-inputs");
        Assert.True(exit == 0, err);
        Assert.Contains("both: completed after 10 + 30", Lines(output));
    }

    [Fact]
    public async Task Several_writers_of_one_stream_each_keep_their_order()
    {
        var (exit, output, err) = await Scenario("merge");
        Assert.True(exit == 0, err);
        Assert.Contains("sink: a 5000, b 5000, each in order: True", Lines(output));
        Assert.Contains("stream merged: 10000 written", Lines(output));
    }

    [Fact]
    public async Task An_exception_names_process_stream_and_item_and_fails_the_run()
    {
        var (exit, output, _) = await Scenario("fail");
        Assert.Equal(1, exit);
        string[] lines = Lines(output);
        Assert.Contains("outcome: Failed", lines);
        Assert.Contains(lines, l => l.StartsWith("error: process=picky stream=numbers item=1234 value=1234 exception=InvalidOperationException message=", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Halt_stops_everything_and_names_who_halted()
    {
        var (exit, output, err) = await Run("Millrace.Scenarios", "halt", "--capacity", "1000", "--batch", "100");
        Assert.True(exit == 0, err);
        string[] lines = Lines(output);
        Assert.Contains("outcome: Halted", lines);
        Assert.Contains("halted by: watcher (enough)", lines);
        // Promptly: the endless source stopped within what the queues between it and the watcher hold
        // once the watcher halted at item 10,000 (it takes nothing after), whatever the timing.
        long took = long.Parse(Assert.Single(lines, l => l.StartsWith("forever: took ", StringComparison.Ordinal)).Split(' ')[2]);
        Assert.InRange(took, 10_001, 10_001 + Held(capacity: 1000, batch: 100));
    }

    /// <summary>
    /// Items a writer can be ahead of a reader that takes nothing more: the stream's capacity, a batch
    /// being filled and one being handled; in the broker placement also the messages the writer may
    /// have ahead of its oldest unconfirmed one (a window of batches), the reader's queue on the broker (two windows) and
    /// its prefetch (two windows and two batches: room for what comes early, a marker and copies sent again).
    /// </summary>
    private long Held(int capacity, int batch)
    {
        long local = capacity + 3L * batch;
        if (Placement != "broker") return local;
        long window = Math.Clamp(4 * capacity / batch, 16, 2000);
        return local + (5 * window + 2) * batch;
    }

    [Fact]
    public async Task A_fast_writer_stays_within_the_bound_of_a_slow_reader_measured_from_outside()
    {
        string file = Path.Combine(Path.GetTempPath(), $"millrace-bounded-{Guid.NewGuid():N}");
        await File.WriteAllBytesAsync(file, new byte[8]);
        try
        {
            var (exit, output, err) = await ExampleProgram.RunAsync("Millrace.Scenarios",
                new[] { "bounded", "--capacity", "1000", "--batch", "100" }.Concat(PlacementArguments).ToArray(),
                environment: new Dictionary<string, string> { ["MILLRACE_SCENARIO_FILE"] = file });
            Assert.True(exit == 0, err);
            var match = Regex.Match(output, @"reader: (\d+) items, writer at most (\d+) ahead, 0 out of order");
            Assert.True(match.Success, output);
            Assert.Equal(60_000, long.Parse(match.Groups[1].Value));
            long lead = long.Parse(match.Groups[2].Value);
            // Under pressure (the writer did run ahead), and never beyond the bound.
            Assert.InRange(lead, 500, Held(capacity: 1000, batch: 100));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Handlers_timers_and_start_of_one_process_never_run_at_once()
    {
        var (exit, output, err) = await Scenario("exclusive");
        Assert.True(exit == 0, err);
        string[] lines = Lines(output);
        // Two endless inputs, a 1 ms timer (p.Every) and the start action, counted as they enter and leave.
        Assert.Contains("probe: overlaps 0, start 1, a enough, b enough, ticks enough", lines);
        Assert.Contains("halted by: probe (seen enough)", lines);
    }

    [Theory]
    [InlineData("json")]
    [InlineData("binary")]
    public async Task Doubles_decimals_unicode_and_dates_arrive_exactly_as_in_the_threads_placement(string codec)
    {
        var (referenceExit, reference, referenceErr) = await ExampleProgram.RunAsync("Millrace.Scenarios", ["values", "--placement", "threads"]);
        Assert.True(referenceExit == 0, referenceErr);
        Assert.Contains("printer: 238 values", Lines(reference));
        var (exit, output, err) = await Run("Millrace.Scenarios", "values", "--codec", codec);
        Assert.True(exit == 0, err);
        string[] Values(string o) => Lines(o).Where(l => l.StartsWith("value: ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(238, Values(reference).Length);
        Assert.Equal(Values(reference), Values(output));
    }

    [Fact]
    public async Task A_second_Ctrl_C_stops_at_once_what_would_take_minutes_to_drain()
    {
        using var program = ExampleProgram.Start("Millrace.Scenarios", new[] { "slow-drain", "--capacity", "1000", "--batch", "10" }.Concat(PlacementArguments).ToArray());
        await program.WaitForOutputAsync(o => o.Contains("slow: first item"), seconds: 60);
        // First Ctrl+C: the source stops (it says so); the slow sink would need minutes to drain its queue.
        program.Signal(SIGINT);
        await program.WaitForOutputAsync(o => o.Contains("forever: stopped"), seconds: 60);
        Assert.False(program.HasExited);
        // Second Ctrl+C: everything stops at once (the drain timeout is ten minutes; the test waits one).
        program.Signal(SIGINT);
        var (exit, output, err) = await program.WaitAsync(seconds: 60);
        string[] lines = Lines(output);
        Assert.True(exit == 0, err + output);
        Assert.Contains("outcome: Stopped", lines);
        long written = long.Parse(Assert.Single(lines, l => l.StartsWith("stream numbers: ", StringComparison.Ordinal)).Split(' ')[2]);
        long took = long.Parse(Assert.Single(lines, l => l.StartsWith("slow: took ", StringComparison.Ordinal)).Split(' ')[2]);
        Assert.True(took < written, $"the sink took all {written} items: nothing was left to stop");
    }

    [Fact]
    public async Task A_cycle_that_fills_its_queues_is_reported_as_a_deadlock()
    {
        var (exit, output, _) = await Run("Millrace.Scenarios", "deadlock", "--capacity", "16", "--batch", "4");
        Assert.Equal(1, exit);
        string[] lines = Lines(output);
        Assert.Contains("outcome: Failed", lines);
        string error = Assert.Single(lines, l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.Contains("Deadlock: every running process waits for room in a full queue", error);
        Assert.Contains("waits to write stream", error);
    }

    [Fact]
    public async Task A_pipeline_of_operators_gives_the_same_results()
    {
        var (exit, output, err) = await Scenario("operators");
        Assert.True(exit == 0, err);
        string[] lines = Lines(output);
        Assert.Contains("pairs: 25, first 0:8 1:104 2:328, last 24:37640", lines);
        Assert.Contains("squares again: 100 items, sum 328350", lines);
        Assert.Contains("batches: 7,7,7,7,7,7,7,1, sum 161700", lines);
        Assert.Contains("cubes: 100, in order True, sum 24502500", lines);
        Assert.Contains("squares per thousand: 0:32 1000:13 2000:10 3000:9 ... 9000:5 (10 windows)", lines);
        Assert.Contains("outcome: Completed", lines);
    }

    [Fact]
    public async Task Joins_over_different_types_and_iotpy_semantics_give_the_same_results()
    {
        var (exit, output, err) = await Scenario("typed-joins");
        Assert.True(exit == 0, err);
        string[] lines = Lines(output);
        Assert.Contains("mixed: 200 numbers in order True, 100 words in order True", lines);
        // Quotes every 2 ms up to 98, trades every 3 ms up to 117: 50 + 40 - 17 shared times.
        Assert.Contains("rows: 73, 0:100|0 2:100.25|- 3:-|1 4:100.5|- ... 117:-|39", lines);
        Assert.Contains("sizes: 300 items, sum 10240", lines);           // 0..199 halved, and the words' lengths
        Assert.Contains("echo: 3,9,27,81,243,729,2187", lines);          // from the stream's initial item 1
        Assert.Contains("rising: 0,37,50,52,54,56,58,60", lines);
        Assert.Contains("deltas: 126,10,10,10,10,10,-51,10,10,10,10,10", lines);
        Assert.Contains("odd: 30, first #37, nulls 0", lines);
        Assert.Contains("total: 1806", lines);
        Assert.Contains("outcome: Completed", lines);
        Assert.Contains("termination detected", lines);
    }

    [Theory]
    [InlineData("echo", "echo: 3,9,27,81,243,729,2187; other: 45")]
    [InlineData("echo-fed", "echo: 3,6,9,18,27,54,81,162,243,486,729,1458,2187; other: 45")]
    public async Task A_loop_watched_by_a_reader_of_a_stream_that_ended_long_before_ends_by_termination_detection(string scenario, string expected)
    {
        var (exit, output, err) = await Scenario(scenario);
        Assert.True(exit == 0, err);
        string[] lines = Lines(output);
        Assert.Contains(expected, lines);
        Assert.Contains("outcome: Completed", lines);
        Assert.Contains("termination detected", lines);
    }

    [Fact]
    public async Task Items_emitted_two_by_two_twice_keep_ids_of_their_own()
    {
        var (exit, output, err) = await Scenario("fan-out");
        Assert.True(exit == 0, err);
        Assert.Contains("sink: 4000 items, sum 7998000", Lines(output));
    }

    [Fact]
    public async Task A_reader_outside_a_cycle_of_a_stream_inside_it_ends_with_the_cycle()
    {
        var (exit, output, err) = await Scenario("cycle-with-watcher");
        Assert.True(exit == 0, err);
        string[] lines = Lines(output);
        Assert.Contains("tally: 50 tokens reached zero", lines);
        Assert.Contains("termination detected", lines);
        string written = Assert.Single(lines, l => l.StartsWith("stream s2: ", StringComparison.Ordinal));
        Assert.Contains($"watcher: {written["stream s2: ".Length..].Replace(" written", "")} items", lines);
    }

    [Theory]
    [InlineData("ring", "tally: 500 tokens reached zero")]
    [InlineData("growing-cycle", "tally: 320 tokens reached zero")]
    public async Task Cycles_end_by_termination_detection(string scenario, string tally)
    {
        for (int i = 0; i < 5; i++)
        {
            var (exit, output, err) = await Scenario(scenario);
            Assert.True(exit == 0, err);
            string[] lines = Lines(output);
            Assert.Contains(tally, lines);
            Assert.Contains("termination detected", lines);
            Assert.Contains("outcome: Completed", lines);
        }
    }

    [Fact]
    public async Task The_Millrace_meter_shows_counts_rising_and_queues_within_bounds_while_it_runs()
    {
        var (exit, output, err) = await Run("Millrace.Scenarios", "metrics", "--capacity", "1000", "--batch", "100");
        Assert.True(exit == 0, err + output);
        string[] lines = Lines(output);
        Assert.Contains("db: sum of roots 19999900000", lines);
        Assert.Contains("metrics: instruments millrace.process.busy_time,millrace.process.errors,millrace.process.items_dead_lettered,millrace.process.items_in,millrace.process.items_out,millrace.process.items_skipped," +
            "millrace.stream.items_written,millrace.stream.queue_capacity,millrace.stream.queue_depth", lines);
        Assert.Contains("metrics: processes db,process1,process2,web", lines);
        Assert.Contains(lines, l => l.StartsWith("metrics: db items_in rose over ") && l.Contains(": yes"));
        // Each placement reports the bound its queues really have: the capacity (the broker's prefetch window, which is larger).
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^metrics: max queue depth \d+, capacity (1000|[1-9]\d{3,}), within bounds: yes$"));
    }

    [Fact]
    public async Task The_dashboard_shows_every_process_with_counts_that_rise_in_a_headless_browser()
    {
        using var program = ExampleProgram.Start("Tutorial",
            new[] { "--count", "1000000000000", "--capacity", "1000", "--dashboard-port", "0" }.Concat(PlacementArguments).ToArray());
        await program.WaitForErrorOutputAsync(e => e.Contains("dashboard: http://"), seconds: 60);
        string url = Regex.Match(program.ErrorOutput, @"dashboard: (http://127\.0\.0\.1:\d+/)").Groups[1].Value;
        var (playwright, browser) = await Browser.LaunchAsync();
        try
        {
            Microsoft.Playwright.IPage page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1100, Height = 800 } });
            await page.GotoAsync(url, new() { Timeout = 30_000 });
            await page.WaitForSelectorAsync("tr[data-process='db'] .items-in", new() { Timeout = 30_000 });
            foreach (string name in new[] { "web", "process1", "process2", "db" })
            {
                Assert.True(await page.IsVisibleAsync($"g.process[data-name='{name}']"), $"The graph has no box for {name}.");
                Assert.Equal(name, (await page.TextContentAsync($"g.process[data-name='{name}'] .name"))?.Trim());
            }
            Assert.Equal(3, await page.Locator("path.edge").CountAsync());
            long Read(string text) => long.Parse(text.Trim());
            long first = Read(await page.InnerTextAsync("tr[data-process='db'] .items-in"));
            // The page updates itself: wait (bounded) until it shows a larger count.
            await page.WaitForFunctionAsync("first => Number(document.querySelector(\"tr[data-process='db'] .items-in\").innerText.trim()) > first",
                first, new() { Timeout = 60_000 });
            long second = Read(await page.InnerTextAsync("tr[data-process='db'] .items-in"));
            Assert.True(second > first, $"db's items in did not rise between two looks: {first}, then {second}.");
            long queued = Read(await page.InnerTextAsync("tr[data-queue='roots'][data-reader='db'] .queued"));
            // Within the bound the page shows (the capacity; in the broker placement the prefetch window, which is larger) and one batch.
            long capacity = Read(await page.InnerTextAsync("tr[data-queue='roots'][data-reader='db'] td:nth-child(3)"));
            Assert.True(capacity >= 1000, $"capacity shown: {capacity}");
            Assert.InRange(queued, 0, capacity + 8192);
            Assert.StartsWith("running", await page.InnerTextAsync("#status"));
            string shot = Browser.ArtifactPath($"dashboard-{Placement}.png");
            await page.ScreenshotAsync(new() { Path = shot, FullPage = true });
            Assert.True(new FileInfo(shot).Length > 10_000, "The screenshot is (nearly) empty.");
        }
        finally
        {
            await browser.DisposeAsync();
            playwright.Dispose();
            program.Signal(SIGTERM);
            await program.WaitAsync(seconds: 60);
        }
    }

    [Fact]
    public async Task Tutorial_with_db_writes_every_root_to_a_database()
    {
        string dir = Directory.CreateTempSubdirectory("millrace-tutorial-").FullName;
        try
        {
            string database = Path.Combine(dir, "roots.db");
            var (exit, output, err) = await Run("Tutorial", "--db", database);
            Assert.True(exit == 0, err);
            Assert.Equal(new[] { "db: 5000 items, sum of roots 12497500" }, Lines(output));
            using var db = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={database};Mode=ReadOnly");
            db.Open();
            using var query = db.CreateCommand();
            query.CommandText = "SELECT count(*), sum(root), min(root), max(root) FROM roots";
            using var reader = query.ExecuteReader();
            Assert.True(reader.Read());
            Assert.Equal(5000, reader.GetInt64(0));
            Assert.Equal(12497500.0, reader.GetDouble(1));
            Assert.Equal(0.0, reader.GetDouble(2));
            Assert.Equal(4999.0, reader.GetDouble(3));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<string> FileFlowUrl(ExampleProgram program)
    {
        await program.WaitForOutputAsync(o => o.Contains("web: listening on "), seconds: 60);
        return Regex.Match(program.Output, @"web: listening on (http://127\.0\.0\.1:\d+)").Groups[1].Value + "/streams/files";
    }

    private ExampleProgram StartFileFlow(string dir) =>
        ExampleProgram.Start("FileFlow", new[] { "--urls", "http://127.0.0.1:0", "--db", Path.Combine(dir, "files.db"),
            "--spool", Path.Combine(dir, "spool"), "--watch", Path.Combine(dir, "inbox") }.Concat(PlacementArguments).ToArray());

    [Fact]
    public async Task FileFlow_stores_a_thousand_concurrent_uploads_and_a_dropped_file_once_each()
    {
        string dir = Directory.CreateTempSubdirectory("millrace-fileflow-").FullName;
        try
        {
            using var program = StartFileFlow(dir);
            string url = await FileFlowUrl(program);
            using HttpClient client = Uploads.NewClient();
            var sent = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
            await Task.WhenAll(Enumerable.Range(0, 1000).Select(async n =>
            {
                var (_, id) = await Uploads.PostAsync(client, url, Uploads.Content(n), $"f{n}.txt", n % 3 == 0 ? $"c-{n}" : null, multipart: n % 2 == 1);
                Assert.True(sent.TryAdd(id, n));
            }));
            // Files that say they are JSON and are not: dead letters, kept in their own table, not sent again.
            string[] rejected = await Task.WhenAll(Enumerable.Range(0, 3).Select(async n =>
                (await Uploads.PostAsync(client, url, Encoding.UTF8.GetBytes("{\"broken\": " + n), $"broken{n}.json", multipart: n == 1)).Id));
            await File.WriteAllBytesAsync(Path.Combine(dir, "inbox", "dropped.txt"), Uploads.Content(5000));
            // A retry of a file already sent, with its id: still one row.
            var (_, again) = await Uploads.PostAsync(client, url, Uploads.Content(3), "f3.txt", "c-3");
            Assert.Equal("c-3", again);
            var rows = await Uploads.WaitForRowsAsync(Path.Combine(dir, "files.db"), sent.Keys);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while ((rows = Uploads.Rows(Path.Combine(dir, "files.db"))).Count < 1001 && DateTime.UtcNow < deadline) await Task.Delay(100);

            program.Signal(SIGTERM);
            var (exit, output, err) = await program.WaitAsync(seconds: 60);
            Assert.True(exit == 0, err + output);
            Assert.Contains("FileFlow: Stopped", output);
            // Its structured log (Microsoft.Extensions.Logging, to standard error): the run's start and end, said once.
            Assert.Single(Regex.Matches(err, $@"Run \S+ started: {Placement} placement, 6 processes, 5 streams"));
            Assert.Single(Regex.Matches(err, @"Run \S+ ended: Stopped after"));
            Assert.Equal(1001, rows.Count);
            foreach (var (id, n) in sent)
            {
                Assert.Equal(Uploads.Sha(Uploads.Content(n)), rows[id].Sha);
                Assert.Equal($"f{n}.txt", rows[id].Name);
            }
            Assert.Equal(Uploads.Sha(Uploads.Content(5000)), rows.Values.Single(r => r.Name == "dropped.txt").Sha);
            Dictionary<string, (string Sha, string Name)> bad = new();
            await Waits.Until(() => (bad = Uploads.Rows(Path.Combine(dir, "files.db"), "rejected_files", "process", "error")).Count >= rejected.Length,
                "the rejected files' rows", seconds: 60);
            Assert.Equal(rejected.Order(), bad.Keys.Order());
            Assert.All(bad.Values, r => Assert.Equal("process1", r.Sha));
            Assert.All(bad.Values, r => Assert.Matches(@"^System\.IO\.InvalidDataException: 'broken\d\.json' says it is JSON and is not: ", r.Name));
            Assert.Empty(Directory.EnumerateFiles(Path.Combine(dir, "spool", "ready")));
            // No file stored twice under two ids (two thirds of them got their id from the server).
            Assert.Equal(rows.Count, rows.Values.Select(r => r.Sha).Distinct().Count());
            // process1 and process2 did their work: lines and words of every file as written by Uploads.Content.
            using var db = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(dir, "files.db")};Mode=ReadOnly");
            db.Open();
            using var query = db.CreateCommand();
            query.CommandText = "SELECT id, lines, words, kind, summary FROM files";
            using var reader = query.ExecuteReader();
            while (reader.Read())
            {
                if (!sent.TryGetValue(reader.GetString(0), out int n)) continue;
                Assert.Equal(1 + n % 7 + 1, reader.GetInt64(1));
                Assert.Equal(2 + 5 * (n % 7 + 1), reader.GetInt64(2));
                Assert.Equal("text", reader.GetString(3));
                Assert.EndsWith(n % 7 == 0 ? "mostly 'end', 'file', 'line'" : "mostly 'end', 'line', 'the'", reader.GetString(4));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task FileFlow_killed_and_stopped_amid_uploads_keeps_every_acknowledged_file_once()
    {
        string dir = Directory.CreateTempSubdirectory("millrace-fileflow-").FullName;
        string database = Path.Combine(dir, "files.db"), ready = Path.Combine(dir, "spool", "ready");
        try
        {
            var acknowledged = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
            // Sent and not answered: the program went away meanwhile (it may or may not have kept them).
            var unanswered = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
            var unexpected = new System.Collections.Concurrent.ConcurrentQueue<string>();
            int next = 0;
            using HttpClient client = Uploads.NewClient();

            // Eight clients post files with their own ids until the program is signalled.
            async Task Upload(string url, CancellationToken signalled)
            {
                await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
                {
                    while (!signalled.IsCancellationRequested)
                    {
                        int n = Interlocked.Increment(ref next);
                        string id = $"r-{n}";
                        try
                        {
                            var (_, answered) = await Uploads.PostAsync(client, url, Uploads.Content(n, "r"), $"r{n}.txt", id, cancellationToken: signalled);
                            Assert.Equal(id, answered);
                            acknowledged[id] = n;
                        }
                        catch (Exception) when (signalled.IsCancellationRequested)
                        {
                            unanswered[id] = n; // the program is going: this one was not acknowledged
                            return;
                        }
                        catch (Exception e)
                        {
                            unexpected.Enqueue($"{id}: {e.GetType().Name}: {e.Message}"); // an error answer, before any signal
                            return;
                        }
                    }
                }));
            }

            // Runs FileFlow until <acks> uploads were acknowledged, then signals it; returns what it said.
            async Task<(int Exit, string Output)> RunUntil(int acks, int signal)
            {
                using var program = StartFileFlow(dir);
                string url = await FileFlowUrl(program);
                using var signalled = new CancellationTokenSource();
                Task uploads = Upload(url, signalled.Token);
                var deadline = DateTime.UtcNow.AddSeconds(60);
                while (acknowledged.Count < acks && DateTime.UtcNow < deadline && !uploads.IsCompleted) await Task.Delay(10);
                Assert.True(acknowledged.Count >= acks, $"Only {acknowledged.Count} uploads were acknowledged. {string.Join("; ", unexpected)} {program.Output}");
                signalled.Cancel();
                program.Signal(signal);
                var (exit, output, err) = await program.WaitAsync(seconds: 60);
                await uploads;
                if (signal == SIGTERM) Assert.True(exit == 0, err + output);
                return (exit, output);
            }

            // "N files stored in this run": items the db process handled, each stored (upserted) once.
            static long StoredInRun(string output) =>
                long.Parse(Regex.Match(output, @"; (\d+) files stored in this run").Groups[1].Value);
            HashSet<string> Waiting() => Directory.Exists(ready) ? Directory.EnumerateFiles(ready).Select(f => Path.GetFileName(f)).ToHashSet() : new();

            await RunUntil(150, signal: 9);        // a crash (SIGKILL) in the middle of the uploads
            // After the crash, files acknowledged and not yet released wait in the spool; those that were already
            // stored before the crash are the only ones the next run may store a second time (one row still).
            // In the broker placement a file can also still be in a queue between processes, unacknowledged:
            // it comes again from there as well as from the spool (different item ids), and is stored twice.
            var rowsAfterCrash = Uploads.Rows(database);
            HashSet<string> waiting = Waiting();
            int storedAgainAtMost = waiting.Count(rowsAfterCrash.ContainsKey) + (Placement == "broker" ? waiting.Count : 0);
            var (_, stopped) = await RunUntil(acknowledged.Count + 150, SIGTERM); // a graceful stop in the middle of the uploads
            var rowsAfterStop = Uploads.Rows(database);
            long storedInStop = StoredInRun(stopped);
            // Every file stored in that run is a new row, or one of those the crash left stored and not released.
            Assert.InRange(storedInStop, rowsAfterStop.Count - rowsAfterCrash.Count, rowsAfterStop.Count - rowsAfterCrash.Count + storedAgainAtMost);

            // Started again with nobody uploading: what was acknowledged and not yet stored arrives, and
            // after a graceful stop nothing already stored is stored again.
            // (Files the server took as the clients gave up at the signal wait in the spool too.)
            string[] expected = acknowledged.Keys.Union(Waiting()).ToArray();
            using (var program = StartFileFlow(dir))
            {
                await FileFlowUrl(program);
                var rows = await Uploads.WaitForRowsAsync(database, expected);
                program.Signal(SIGTERM);
                var (exit, output, err) = await program.WaitAsync(seconds: 60);
                Assert.True(exit == 0, err + output);
                rows = Uploads.Rows(database);
                Assert.Equal(rows.Count - rowsAfterStop.Count, StoredInRun(output));
                foreach (var (id, n) in acknowledged) Assert.Equal(Uploads.Sha(Uploads.Content(n, "r")), rows[id].Sha);
                // Nothing that was not sent: each row is an acknowledged file, or one sent as the program went away.
                foreach (var (id, row) in rows)
                {
                    Assert.True(acknowledged.ContainsKey(id) || unanswered.ContainsKey(id), $"row {id} was never sent");
                    Assert.Equal(Uploads.Sha(Uploads.Content(acknowledged.TryGetValue(id, out int n) ? n : unanswered[id], "r")), row.Sha);
                }
                Assert.Empty(Waiting());
            }
            // No error answer while the program was up (a 4xx or 5xx is not "the program went away").
            Assert.Empty(unexpected);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

public sealed class ThreadsPlacementTests : PlacementContract
{
    protected override string Placement => "threads";
}

public sealed class ProcessesPlacementTests : PlacementContract
{
    protected override string Placement => "processes";
}

/// <summary>
/// The broker placement with every process in one program, on the broker the test command starts
/// (MILLRACE_BROKER names its fresh virtual host). Every program run gets a run id of its own.
/// </summary>
public sealed class BrokerPlacementTests : PlacementContract
{
    protected override string Placement => "broker";

    protected override string[] PlacementArguments => new[] { "--placement", Placement, "--run-id", Broker.NewRunId() };
}
