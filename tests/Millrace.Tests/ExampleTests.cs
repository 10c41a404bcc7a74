namespace Millrace.Tests;

/// <summary>The examples' options, run as users run them. What they compute is in <see cref="PlacementContract"/>.</summary>
public class ExampleTests
{
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
}
