using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Millrace.Tests;

/// <summary>
/// What only the broker placement does: each process in an OS process of its own, as on separate
/// hosts (<c>--processes NAME</c>); a process killed and started again; connections cut by the
/// broker; a broker that is not there.
/// </summary>
public class BrokerPlacementOnlyTests
{
    private const int SIGKILL = 9, SIGTERM = 15;

    private static string[] Lines(string output) =>
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>Starts one OS process per name, all in one run; returns their outputs by name once all have ended.</summary>
    private static async Task<Dictionary<string, (int ExitCode, string Out, string Err)>> RunSeparately(
        string program, string[] processes, params string[] args)
    {
        string runId = Broker.NewRunId();
        var started = processes.ToDictionary(p => p,
            p => ExampleProgram.Start(program, args.Concat(new[] { "--placement", "broker", "--run-id", runId, "--processes", p }).ToArray()));
        try
        {
            var results = new Dictionary<string, (int, string, string)>();
            foreach (var (name, running) in started) results[name] = await running.WaitAsync(seconds: 90);
            return results;
        }
        finally
        {
            foreach (ExampleProgram p in started.Values) p.Dispose();
        }
    }

    [Fact]
    public async Task Tutorial_with_each_process_in_its_own_OS_process_prints_the_summary_in_db()
    {
        var results = await RunSeparately("Tutorial", new[] { "db", "process2", "process1", "web" }, "--count", "100000");
        foreach (var (name, (exit, _, err)) in results) Assert.True(exit == 0, $"{name}: {err}");
        Assert.Equal(new[] { "db: 100000 items, sum of roots 4999950000" }, Lines(results["db"].Out));
        Assert.All(new[] { "web", "process1", "process2" }, p => Assert.Empty(Lines(results[p].Out)));
    }

    [Fact]
    public async Task PingPong_with_each_process_in_its_own_OS_process_halts_both()
    {
        var results = await RunSeparately("PingPong", new[] { "process_x", "process_y" });
        foreach (var (name, (exit, _, err)) in results) Assert.True(exit == 0, $"{name}: {err}");
        string[] x = Lines(results["process_x"].Out), y = Lines(results["process_y"].Out);
        Assert.Equal(new[] { "1", "3", "5", "7" }, x.Where(l => l.StartsWith("message received by process x: ")).Select(l => l[^1..]));
        Assert.Equal(new[] { "2", "4", "6" }, y.Where(l => l.StartsWith("message received by process y: ")).Select(l => l[^1..]));
        Assert.Equal("HALTING: halted by process_y (replied three times)", x[^1]);
        Assert.Equal("HALTING: halted by process_y (replied three times)", y[^1]);
    }

    [Fact]
    public async Task Countdown_with_each_process_in_its_own_OS_process_ends_by_termination_detection()
    {
        var results = await RunSeparately("Countdown", new[] { "tally", "right", "left", "launcher" }, "--tokens", "3,0,12");
        foreach (var (name, (exit, _, err)) in results) Assert.True(exit == 0, $"{name}: {err}");
        Assert.Equal("tally: 3 tokens reached zero", Lines(results["tally"].Out)[0]);
        // Each OS process counts the hops its own processes wrote; together they are the threads placement's 18.
        long hops = results.Values.Sum(r => long.Parse(Regex.Match(r.Out, @"countdown: (\d+) hops").Groups[1].Value));
        Assert.Equal(18, hops);
        Assert.All(results.Values, r => Assert.Contains("ended by termination detection", r.Out));
    }

    [Theory]
    [InlineData("process1")]
    [InlineData("process2")]
    public async Task A_process_killed_mid_run_and_started_again_loses_nothing_and_counts_nothing_twice(string victim)
    {
        // A kill that lands when everything the victim handled was already acknowledged brings nothing again (seen once in
        // CI: 20,496 + 79,504): the result must be exact every time, and a fresh run (three at most) is made until one kill
        // did bring messages again, so that what is proven is the exact result under redelivery.
        for (int attempt = 1; ; attempt++)
        {
            var (handledByFirst, handledBySecond, skipped) = await KilledRunAsync(victim);
            long twice = handledByFirst + handledBySecond - 100000;
            Assert.True(twice >= 0, $"lost: {handledByFirst} + {handledBySecond} items handled");
            // Repeats reach db when the killed process had published outputs of items it had not yet had acknowledged; where the
            // kill falls decides how many (none, now and then: a CI run once). The exact count and sum are the promise.
            Assert.True(skipped <= twice, $"db skipped {skipped} repeats, more than the {twice} items handled twice");
            if (twice > 0) return;
            Assert.True(attempt < 3, $"no redelivery in {attempt} killed runs: {handledByFirst} + {handledBySecond} items handled in the last");
        }
    }

    /// <summary>
    /// The Tutorial as four programs; the victim killed (SIGKILL) once it has handled 20,000 items and started again; the
    /// result checked exact. Returns what each instance of the victim handled and how many repeats db skipped.
    /// </summary>
    private static async Task<(long First, long Second, long Skipped)> KilledRunAsync(string victim)
    {
        string runId = Broker.NewRunId();
        string[] common = { "--count", "100000", "--batch", "20", "--placement", "broker", "--run-id", runId };
        ExampleProgram Start(string process, params string[] more) =>
            ExampleProgram.Start("Tutorial", common.Concat(more).Concat(new[] { "--processes", process }).ToArray());

        string other = victim == "process1" ? "process2" : "process1";
        using ExampleProgram db = Start("db", "--stats"), survivor = Start(other), web = Start("web");
        using ExampleProgram first = Start(victim, "--verbose");
        // Mid-run: the victim has handled (and partly passed on, partly not yet acknowledged) 20,000 items.
        await first.WaitForOutputAsync(o => o.Contains($"tmp {victim} : 20000\n"), seconds: 60);
        ExampleProgram.Kill(first.Pid, SIGKILL);
        var (killedExit, killedOut, _) = await first.WaitAsync(seconds: 30);
        Assert.NotEqual(0, killedExit);
        Assert.DoesNotContain($"tmp {victim} : 99999\n", killedOut);

        using ExampleProgram second = Start(victim, "--stats");
        foreach (ExampleProgram p in new[] { second, web, survivor })
        {
            var (exit, _, err) = await p.WaitAsync(seconds: 90);
            Assert.True(exit == 0, err);
        }
        var (dbExit, dbOut, dbErr) = await db.WaitAsync(seconds: 90);
        Assert.True(dbExit == 0, dbErr);
        Assert.Equal("db: 100000 items, sum of roots 4999950000", Lines(dbOut)[0]);
        Assert.Equal(100000, Stat(dbOut, "db", "in"));
        // The fault did what it should when what the killed process had handled but not yet had acknowledged came again to
        // the new one (together they handled more than 100,000 items): the items it produced again reached db with the ids
        // they had the first time, and db skipped exactly those.
        long handledByFirst = Regex.Matches(killedOut, $@"^tmp {victim} : \d+$", RegexOptions.Multiline).Count;
        return (handledByFirst, Stat(second.Output, victim, "in"), Stat(dbOut, "db", "repeats skipped"));
    }

    /// <summary>A figure of the Tutorial's --stats line of <paramref name="process"/>: "in", "out" or "repeats skipped".</summary>
    private static long Stat(string output, string process, string what) =>
        long.Parse(Regex.Match(output, $@"process {process}: (?<in>\d+) in, (?<out>\d+) out, OS process \d+, (?<skipped>\d+) repeats skipped")
            .Groups[what switch { "in" => "in", "out" => "out", _ => "skipped" }].Value);

    [Fact]
    public async Task A_dashboard_on_one_host_shows_the_processes_of_every_host()
    {
        string runId = Broker.NewRunId();
        string[] common = { "--count", "1000000000000", "--capacity", "1000", "--placement", "broker", "--run-id", runId };
        using ExampleProgram there = ExampleProgram.Start("Tutorial", common.Concat(new[] { "--processes", "process2,db" }).ToArray());
        using ExampleProgram here = ExampleProgram.Start("Tutorial", common.Concat(new[] { "--processes", "web,process1", "--dashboard-port", "0" }).ToArray());
        try
        {
            await here.WaitForErrorOutputAsync(e => e.Contains("dashboard: http://"), seconds: 60);
            string url = Regex.Match(here.ErrorOutput, @"dashboard: (http://127\.0\.0\.1:\d+/)").Groups[1].Value;
            using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            async Task<Dictionary<string, long>> ItemsInByProcess() =>
                System.Text.Json.JsonDocument.Parse(await client.GetStringAsync(url + "api/sample")).RootElement.GetProperty("processes").EnumerateArray()
                    .ToDictionary(p => p.GetProperty("name").GetString()!, p => p.GetProperty("itemsIn").GetInt64());
            // The other host's processes appear once it has reported (twice a second), and their counts rise.
            Dictionary<string, long> first = new();
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!(first.TryGetValue("db", out long n) && n > 0) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(250);
                first = await ItemsInByProcess();
            }
            Assert.Equal(["web", "process1", "process2", "db"], first.Keys);
            // And they keep rising: the other host's reports go on arriving.
            Dictionary<string, long> second = first;
            deadline = DateTime.UtcNow.AddSeconds(60);
            while (!(second["db"] > first["db"] && second["process1"] > first["process1"]) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(250);
                second = await ItemsInByProcess();
            }
            Assert.True(second["db"] > first["db"], $"db (on the other host): {first["db"]}, then {second["db"]}");
            Assert.True(second["process1"] > first["process1"]);
        }
        finally
        {
            here.Signal(SIGTERM);
            there.Signal(SIGTERM);
            await here.WaitAsync(seconds: 60);
            await there.WaitAsync(seconds: 60);
        }
    }

    [Fact]
    public async Task Replicas_of_process1_and_process2_share_the_work_and_the_result_is_exact()
    {
        string runId = Broker.NewRunId();
        string[] common = { "--count", "100000", "--batch", "20", "--stats", "--placement", "broker", "--run-id", runId };
        ExampleProgram Start(string process) => ExampleProgram.Start("Tutorial", common.Concat(new[] { "--processes", process }).ToArray());
        // Two instances each of process1 and process2, as on four hosts; they compete for their queues.
        var programs = new List<ExampleProgram> { Start("db"), Start("process2"), Start("process2"), Start("process1"), Start("process1") };
        try
        {
            // Six .NET programs starting on two cores: the source starts once every replica takes from its queue,
            // or a late one could find the work done.
            await Broker.WaitForConsumersAsync([$"millrace.{runId}.numbers.process1", $"millrace.{runId}.squares.process2"], consumers: 2);
            programs.Add(Start("web"));
            var results = new List<(int Exit, string Out, string Err)>();
            foreach (ExampleProgram p in programs) results.Add(await p.WaitAsync(seconds: 120));
            Assert.All(results, r => Assert.True(r.Exit == 0, r.Err));
            Assert.Contains("db: 100000 items, sum of roots 4999950000", results[0].Out);
            foreach (var (name, first, second) in new[] { ("process2", results[1], results[2]), ("process1", results[3], results[4]) })
            {
                long a = ItemsIn(first.Out, name), b = ItemsIn(second.Out, name);
                Assert.True(a > 0 && b > 0, $"{name}: both instances should have handled items; they handled {a} and {b}");
                Assert.True(a + b == 100000, $"{name}: {a} + {b} items handled; every item exactly once (nothing was killed, nothing is delivered twice)");
            }
        }
        finally
        {
            foreach (ExampleProgram p in programs) p.Dispose();
        }

        static long ItemsIn(string output, string process) =>
            long.Parse(Regex.Match(output, $@"process {process}: (\d+) in").Groups[1].Value);
    }

    [Fact]
    public async Task A_replica_killed_mid_run_leaves_its_work_to_the_other_and_the_result_is_exact()
    {
        string runId = Broker.NewRunId();
        string[] common = { "--count", "300000", "--batch", "20", "--placement", "broker", "--run-id", runId };
        ExampleProgram Start(string process, params string[] more) =>
            ExampleProgram.Start("Tutorial", common.Concat(more).Concat(new[] { "--processes", process }).ToArray());
        using ExampleProgram db = Start("db"), process2 = Start("process2"), survivor = Start("process1"), web = Start("web");
        using ExampleProgram victim = Start("process1", "--verbose");
        // Mid-run: the victim has handled its first thousand items or so (it prints each one).
        await victim.WaitForOutputAsync(o => o.Length > 30_000, seconds: 60);
        Assert.False(victim.HasExited, "The victim ended before it could be killed; give the run more items.");
        ExampleProgram.Kill(victim.Pid, SIGKILL);
        await victim.WaitAsync(seconds: 30);

        foreach (ExampleProgram p in new[] { survivor, web, process2 })
        {
            var (exit, _, err) = await p.WaitAsync(seconds: 120);
            Assert.True(exit == 0, err);
        }
        var (dbExit, dbOut, dbErr) = await db.WaitAsync(seconds: 120);
        Assert.True(dbExit == 0, dbErr);
        Assert.Equal(new[] { "db: 300000 items, sum of roots 44999850000" }, Lines(dbOut));
    }

    [Fact]
    public async Task The_replica_sending_the_end_marks_killed_in_the_end_round_leaves_them_to_a_new_one()
    {
        string runId = Broker.NewRunId();
        string[] common = { "--count", "50000", "--batch", "20", "--placement", "broker", "--run-id", runId };
        // MILLRACE_DEBUG=1: the replicas say each step of the round in which they agree that their inputs are over.
        var debug = new Dictionary<string, string> { ["MILLRACE_DEBUG"] = "1" };
        ExampleProgram Start(string process) => ExampleProgram.Start("Tutorial", common.Concat(new[] { "--processes", process }).ToArray());
        ExampleProgram Replica() => ExampleProgram.Start("Tutorial", debug, common.Concat(new[] { "--processes", "process1" }).ToArray());
        using ExampleProgram db = Start("db"), process2 = Start("process2"), one = Replica(), two = Replica();
        await Broker.WaitForConsumersAsync([$"millrace.{runId}.numbers.process1"], consumers: 2);
        using ExampleProgram web = Start("web");
        // The round has come to its end: one replica is the closer, about to send process1's end marks once the other is done.
        ExampleProgram? closer = null;
        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (closer is null && DateTime.UtcNow < deadline)
        {
            closer = new[] { one, two }.FirstOrDefault(p => p.ErrorOutput.Contains("finish as closer"));
            if (closer is null) await Task.Delay(5);
        }
        Assert.NotNull(closer);
        ExampleProgram member = ReferenceEquals(closer, one) ? two : one;
        // Killed once the other has been told to finish: it ends holding its end marks and waits for the closer's, which never come.
        // (Killed before that, the other would run the round again alone and take the dead closer's end marks itself.)
        await member.WaitForErrorOutputAsync(e => e.Contains("got Finish"), seconds: 30);
        // On a quick machine the closer may have sent its end marks and ended before the kill (once in CI): the late case below.
        if (!ExampleProgram.TryKill(closer.Pid, SIGKILL))
        {
            var (closerExit, _, closerErr) = await closer.WaitAsync(seconds: 60);
            Assert.True(closerExit == 0, closerErr);
        }
        // Started again: it finds the end marks the dead closer and the other instance held (back in the queue) and ends the process.
        using ExampleProgram again = Replica();
        foreach (ExampleProgram p in new[] { web, process2, member })
        {
            var (exit, _, err) = await p.WaitAsync(seconds: 150);
            Assert.True(exit == 0, err);
        }
        var (dbExit, dbOut, dbErr) = await db.WaitAsync(seconds: 150);
        Assert.True(dbExit == 0, dbErr);
        Assert.Equal(new[] { "db: 50000 items, sum of roots 1249975000" }, Lines(dbOut));
        // The member's output is whole (it has ended). It gave its end marks back when the closer died before saying its
        // end marks were out: killed before sending them, or between sending them and saying so (once in CI: downstream
        // had the end marks and the run ended before the new instance had taken anything).
        bool gaveBack = member.ErrorOutput.Contains("go back to the queues");
        if (gaveBack || again.ErrorOutput.Contains("finish as closer"))
        {
            // The new instance sends the process's end marks: it took the dead closer's, and the other's or their word.
            var (exit, _, err) = await again.WaitAsync(seconds: 60);
            Assert.True(exit == 0, err);
            Assert.Contains("finish as closer", again.ErrorOutput);
        }
        else
        {
            // The closer's end marks were out and the member was told so (by the closer before the kill, or by the new
            // instance as closer, whose own line may not be read yet): the new instance has nothing to take and waits
            // until stopped, unless it is the one that said so.
            Assert.Contains("got EndsSent", member.ErrorOutput);
            if (!again.HasExited) again.Signal(SIGTERM);
            await again.WaitAsync(seconds: 60);
        }
    }

    /// <summary>
    /// RabbitMQ.Client's publishing activities traced and sampled now and then (as OpenTelemetry with a sampler does): each
    /// message carries its own trace context, or none — never the one of a message before it. (While nothing traces, a
    /// destination's data messages share one properties object; the client writes a trace context into it in place.)
    /// </summary>
    [Fact]
    public async Task Traced_publishes_carry_their_own_trace_context_and_unsampled_ones_none()
    {
        string runId = Broker.NewRunId();
        string exchange = $"millrace.{runId}.numbers";
        var factory = new global::RabbitMQ.Client.ConnectionFactory { Uri = new Uri(Broker.Uri) };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        // A queue of the test's own on the stream's exchange (declared as the run declares it): a copy of every message.
        await channel.ExchangeDeclareAsync(exchange, global::RabbitMQ.Client.ExchangeType.Fanout, durable: true, autoDelete: false);
        string watch = (await channel.QueueDeclareAsync($"{runId}-watch", durable: false, exclusive: true, autoDelete: true)).QueueName;
        await channel.QueueBindAsync(watch, exchange, "");
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == global::RabbitMQ.Client.RabbitMQActivitySource.PublisherSourceName,
            // Half the publishes sampled, at random (other tests' publishes meet this listener too).
            Sample = (ref ActivityCreationOptions<ActivityContext> _) =>
                Random.Shared.Next(2) == 0 ? ActivitySamplingResult.AllDataAndRecorded : ActivitySamplingResult.None,
        };
        ActivitySource.AddActivityListener(listener);

        const int count = 60;
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        graph.Source("web", numbers, Enumerable.Range(1, count).Select(i => (long)i));
        long sum = 0;
        graph.Process("db", p => p.On(numbers, x => sum += x));
        var options = new RunOptions { Placement = "broker", RunId = runId, Quiet = true, BatchSize = 1 };
        options.Broker.Uri = Broker.Uri;
        RunResult result = await graph.RunWithin(options, seconds: 120);
        Assert.True(result.Outcome == RunOutcome.Completed, string.Join("; ", result.Errors.Select(e => e.Message)));
        Assert.Equal((long)count * (count + 1) / 2, sum);

        var contexts = new List<string?>();
        while (await channel.BasicGetAsync(watch, autoAck: true) is { } message)
        {
            if (message.BasicProperties.Type is not null) continue; // the end mark
            contexts.Add(message.BasicProperties.Headers?.TryGetValue("traceparent", out object? value) == true && value is byte[] bytes
                ? System.Text.Encoding.UTF8.GetString(bytes) : null);
        }
        Assert.Equal(count, contexts.Count);
        string[] traced = contexts.OfType<string>().ToArray();
        Assert.InRange(traced.Length, 1, count - 1);
        // A context repeated would be one message's carried on by the next.
        Assert.Equal(traced.Length, traced.Distinct().Count());
    }

    /// <summary>
    /// A stream may be called "control" (the run's control exchange is named with a ':' no stream name has; with a '.' the
    /// stream's messages went to every host's control queue and the control messages into the stream's), and names whose
    /// readers' queues would come to one name are refused before anything connects.
    /// </summary>
    [Fact]
    public async Task A_stream_named_control_is_a_stream_like_any_other_and_names_sharing_a_queue_are_refused()
    {
        var graph = new Graph();
        var control = graph.Stream<long>("control");
        graph.Source("numbers", control, Enumerable.Range(1, 20_000).Select(i => (long)i));
        long sum = 0, count = 0;
        graph.Process("sum", p => p.On(control, x =>
        {
            sum += x;
            count++;
        }));
        var options = new RunOptions { Placement = "broker", RunId = Broker.NewRunId(), Quiet = true, BatchSize = 10 };
        options.Broker.Uri = Broker.Uri;
        RunResult result = await graph.RunWithin(options, seconds: 120);
        Assert.True(result.Outcome == RunOutcome.Completed, string.Join("; ", result.Errors.Select(e => e.Message)));
        Assert.Equal(20_000, count);
        Assert.Equal(20_000L * 20_001 / 2, sum);

        var clash = new Graph();
        var ab = clash.Stream<int>("a.b");
        var a = clash.Stream<int>("a");
        clash.Source("one", ab, [1]);
        clash.Source("two", a, [2]);
        clash.Process("c", p => p.On(ab, _ => { }));
        clash.Process("b.c", p => p.On(a, _ => { }));
        var clashOptions = new RunOptions { Placement = "broker", RunId = Broker.NewRunId(), Quiet = true };
        clashOptions.Broker.Uri = Broker.Uri;
        var e = await Assert.ThrowsAnyAsync<GraphValidationException>(() => clash.RunWithin(clashOptions, seconds: 60));
        Assert.Contains("Stream 'a.b' read by 'c' and stream 'a' read by 'b.c' would share one queue on the broker", e.Message);
    }

    /// <summary>
    /// A reader that stops for 10 s with its queue full: its writer's messages are refused all that time, and after 3 s of
    /// refusals without a confirm the writer publishes on a new channel (a quorum queue's "you may publish again" can be
    /// lost; a new channel asks the queue). What was refused on the old channel goes again on the new one: every item once
    /// and in order.
    /// </summary>
    [Fact]
    public async Task A_writer_refused_for_long_publishes_on_a_new_channel_and_loses_nothing()
    {
        string file = Path.Combine(Path.GetTempPath(), $"millrace-stalled-{Guid.NewGuid():N}");
        await File.WriteAllBytesAsync(file, new byte[8]);
        try
        {
            var (exit, output, err) = await ExampleProgram.RunAsync("Millrace.Scenarios",
                ["bounded", "--capacity", "1000", "--batch", "100", "--placement", "broker", "--run-id", Broker.NewRunId()],
                environment: new Dictionary<string, string> { ["MILLRACE_SCENARIO_FILE"] = file, ["MILLRACE_SCENARIO_STALL_MS"] = "10000", ["MILLRACE_DEBUG"] = "1" });
            Assert.True(exit == 0, err);
            Assert.Matches(@"reader: 60000 items, writer at most \d+ ahead, 0 out of order", output);
            Assert.Matches(@"\[millrace debug\] writer: refused for 3 s without a confirm: a new publishing channel", err);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Broker_connections_cut_mid_run_are_made_again_and_the_result_is_exact()
    {
        // A virtual host of its own: cutting its connections disturbs no other test.
        string vhost = "millrace-cut-" + Guid.NewGuid().ToString("N")[..8];
        await RabbitMqCtl("add_vhost", vhost);
        await RabbitMqCtl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*");
        try
        {
            string runId = Broker.NewRunId();
            using ExampleProgram program = ExampleProgram.Start("Tutorial", "--count", "400000", "--batch", "20", "--placement", "broker",
                "--run-id", runId, "--broker", $"amqp://guest:guest@127.0.0.1:5672/{vhost}");
            // Mid-run: every process is connected and taking from its queue (the source starts at once).
            await Broker.WaitForConsumersAsync([$"millrace.{runId}.numbers.process1", $"millrace.{runId}.squares.process2", $"millrace.{runId}.roots.db"],
                consumers: 1, virtualHost: vhost);
            Assert.False(program.HasExited, "The run ended before its connections could be cut; give it more items.");
            await RabbitMqCtl("close_all_connections", "-p", vhost, "cut by a Millrace test");
            var (exit, output, err) = await program.WaitAsync(seconds: 120);
            Assert.True(exit == 0, err);
            Assert.Contains("lost the broker connection", err);
            Assert.Contains("connected to the broker at 127.0.0.1:5672", err);
            Assert.Equal(new[] { "db: 400000 items, sum of roots 79999800000" }, Lines(output));
        }
        finally
        {
            await RabbitMqCtl("delete_vhost", vhost);
        }
    }

    [Fact]
    public async Task A_Python_program_with_a_plain_AMQP_client_writes_and_reads_Millrace_streams()
    {
        // The documented message format, from the other side: examples/python/web.py plays the
        // Tutorial's 'web' (JSON arrays, then an end mark); roots.py watches 'roots' as it flows.
        string runId = Broker.NewRunId();
        string[] broker = { "--placement", "broker", "--run-id", runId };
        var (setupExit, _, setupErr) = await ExampleProgram.RunAsync("Tutorial", broker.Concat(new[] { "--count", "0" }).ToArray());
        Assert.True(setupExit == 0, setupErr); // declares the run's exchanges and queues

        string python = Path.Combine(AppContext.BaseDirectory, "python");
        using ExampleProgram watcher = ExampleProgram.StartFile(Python, Path.Combine(python, "roots.py"), Broker.Uri, runId);
        await watcher.WaitForOutputAsync(o => o.Contains("watching"), seconds: 30);
        using ExampleProgram graph = ExampleProgram.Start("Tutorial", broker.Concat(new[] { "--processes", "process1,process2,db" }).ToArray());
        var (webExit, _, webErr) = await ExampleProgram.RunFileAsync(Python, new[] { Path.Combine(python, "web.py"), Broker.Uri, runId });
        Assert.True(webExit == 0, webErr);

        var (exit, output, err) = await graph.WaitAsync(seconds: 60);
        Assert.True(exit == 0, err);
        Assert.Equal(new[] { "db: 1000 items, sum of roots 499500" }, Lines(output));
        var (watchExit, watched, watchErr) = await watcher.WaitAsync(seconds: 60);
        Assert.True(watchExit == 0, watchErr);
        Assert.Contains("roots: 1000 items, sum 499500", watched);
    }

    /// <summary>Debian's Python, where the test command installs python3-pika.</summary>
    private const string Python = "/usr/bin/python3";

    [Fact]
    public async Task An_unreachable_broker_is_a_clear_error_naming_host_and_port_not_a_hang()
    {
        // Not a hang: RunAsync fails the test if the program has not ended within 60 s.
        var (exit, _, err) = await ExampleProgram.RunAsync("Tutorial",
            new[] { "--placement", "broker", "--broker", "amqp://guest:guest@127.0.0.1:1/", "--run-id", Broker.NewRunId() }, seconds: 60);
        Assert.Equal(1, exit);
        Assert.Contains("Cannot reach the RabbitMQ broker at 127.0.0.1:1", err);
        Assert.Contains("refused", err, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Several_broker_addresses_are_tried_in_turn_and_a_bad_one_is_a_clear_error()
    {
        // The first address is down: the run connects to the next one (the test command's broker) and completes.
        string good = Broker.Uri;
        string vhostPath = new Uri(good).AbsolutePath;
        var (exit, output, err) = await ExampleProgram.RunAsync("Tutorial",
            new[] { "--count", "1000", "--placement", "broker", "--broker", $"amqp://guest:guest@127.0.0.1:1{vhostPath},amqp://127.0.0.1:5672", "--run-id", Broker.NewRunId() }, seconds: 90);
        Assert.True(exit == 0, err);
        Assert.Equal(new[] { "db: 1000 items, sum of roots 499500" }, Lines(output));

        // None answers: the error names them all.
        (exit, _, err) = await ExampleProgram.RunAsync("Tutorial",
            new[] { "--placement", "broker", "--broker", "amqp://guest:guest@127.0.0.1:1/,amqp://127.0.0.1:2", "--run-id", Broker.NewRunId() }, seconds: 60);
        Assert.Equal(1, exit);
        Assert.Contains("Cannot reach the RabbitMQ broker at 127.0.0.1:1, 127.0.0.1:2 (virtual host '/')", err);

        // A later address naming other credentials: refused before connecting, the password not shown.
        (exit, _, err) = await ExampleProgram.RunAsync("Tutorial",
            new[] { "--placement", "broker", "--broker", "amqp://guest:guest@127.0.0.1:5672/,amqp://admin:secret@127.0.0.1:5673/", "--run-id", Broker.NewRunId() }, seconds: 60);
        Assert.Equal(1, exit);
        Assert.Contains("names another user, password or virtual host than the first address", err);
        Assert.DoesNotContain("secret", err);
    }

    [Fact]
    public async Task A_queue_type_other_than_classic_or_quorum_is_a_clear_error()
    {
        var (exit, _, err) = await ExampleProgram.RunAsync("Tutorial",
            new[] { "--placement", "broker", "--broker-queues", "stream", "--run-id", Broker.NewRunId() });
        Assert.Equal(2, exit);
        Assert.Contains("--broker-queues takes classic or quorum; got 'stream'.", err);
    }

    [Fact]
    public async Task Unknown_process_names_are_a_clear_error()
    {
        var (exit, _, err) = await ExampleProgram.RunAsync("Tutorial",
            new[] { "--placement", "broker", "--processes", "process1,procesz2", "--run-id", Broker.NewRunId() });
        Assert.Equal(1, exit);
        Assert.Contains("--processes names 'procesz2', which the graph does not have. Its processes: web, process1, process2, db.", err);
    }

    private static async Task RabbitMqCtl(params string[] args)
    {
        var start = new ProcessStartInfo("rabbitmqctl") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) start.ArgumentList.Add(a);
        using Process process = Process.Start(start)!;
        string err = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(process.ExitCode == 0, $"rabbitmqctl {string.Join(' ', args)}: {err}");
    }
}
