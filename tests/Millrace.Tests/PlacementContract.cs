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
        Match summary = Regex.Match(output, @"db: (\d+) items, sum of roots (\d+)");
        Assert.True(summary.Success, output[^Math.Min(500, output.Length)..]);
        long items = long.Parse(summary.Groups[1].Value);
        // Every number the web source emitted before the stop reached the database: 0 + 1 + ... + (items - 1).
        Assert.True(items > 100);
        Assert.Equal(items * (items - 1) / 2, long.Parse(summary.Groups[2].Value));
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
        var (exit, output, err) = await Scenario("halt");
        Assert.True(exit == 0, err);
        string[] lines = Lines(output);
        Assert.Contains("outcome: Halted", lines);
        Assert.Contains("halted by: watcher (enough)", lines);
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
