using System.Text.RegularExpressions;

namespace Millrace.Tests;

/// <summary>The seeds' examples, run as users run them, each as its own OS process.</summary>
public class ExampleTests
{
    private const int SIGINT = 2, SIGTERM = 15;

    [Fact]
    public async Task Tutorial_prints_count_and_sum_of_roots()
    {
        var (exit, output, err) = await ExampleProgram.RunAsync("Tutorial", new[] { "--placement", "threads" });
        Assert.True(exit == 0, err);
        Assert.Equal("db: 5000 items, sum of roots 12497500", output.Trim());
    }

    [Fact]
    public async Task Tutorial_verbose_prints_every_item_as_the_seed_does()
    {
        var (exit, output, _) = await ExampleProgram.RunAsync("Tutorial", new[] { "--count", "3", "--verbose" });
        Assert.Equal(0, exit);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (string expected in new[] { "entering the Q : 2", "tmp process1 : 2", "tmp process2 : 2", "db: 3 items, sum of roots 3" })
            Assert.Contains(expected, lines);
        Assert.Equal("db: 3 items, sum of roots 3", lines[^1]);
    }

    [Fact]
    public async Task Tutorial_rejects_a_bad_option_with_a_clear_message()
    {
        var (exit, _, err) = await ExampleProgram.RunAsync("Tutorial", new[] { "--count", "many" });
        Assert.Equal(2, exit);
        Assert.Contains("Unknown or incomplete option '--count'", err);
        var (exit2, _, err2) = await ExampleProgram.RunAsync("Tutorial", new[] { "--placement", "moon" });
        Assert.Equal(2, exit2);
        Assert.Contains("Unknown placement 'moon'", err2);
    }

    [Fact]
    public async Task PingPong_prints_the_seeds_messages_and_who_halted()
    {
        var (exit, output, err) = await ExampleProgram.RunAsync("PingPong", new[] { "--placement", "threads" }, seconds: 30);
        Assert.True(exit == 0, err);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
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
        var (exit, output, err) = await ExampleProgram.RunAsync("Countdown", new[] { "--tokens", "3,0,12" }, seconds: 30);
        Assert.True(exit == 0, err);
        Assert.Contains("tally: 3 tokens reached zero", output);
        Assert.Contains("countdown: 18 hops, ended by termination detection", output);
    }

    [Theory]
    [InlineData(SIGINT)]
    [InlineData(SIGTERM)]
    public async Task A_stop_signal_drains_the_Tutorial_and_exits_zero_with_nothing_lost(int signal)
    {
        using var program = ExampleProgram.Start("Tutorial", "--count", "1000000000000", "--verbose");
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
}
