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
        Assert.Contains("--count takes a whole number of 0 or more; got 'many'.", err);
        var (exit2, _, err2) = await ExampleProgram.RunAsync("Tutorial", new[] { "--placement", "moon" });
        Assert.Equal(2, exit2);
        Assert.Contains("Unknown placement 'moon'", err2);
        Assert.DoesNotContain("   at ", err2); // no stack trace
    }

    [Fact]
    public async Task A_misspelt_option_is_an_error_with_a_suggestion_not_a_run_in_the_wrong_placement()
    {
        var (exit, output, err) = await ExampleProgram.RunAsync("Tutorial", new[] { "--placment", "processes", "--count", "3" });
        Assert.Equal(2, exit);
        Assert.DoesNotContain("db: 3 items", output);
        Assert.Contains("'--placment' was not matched. Did you mean one of the following?", output + err);
        Assert.Contains("--placement", output + err);
    }

    [Fact]
    public async Task Help_lists_every_option_with_its_default()
    {
        var (exit, output, _) = await ExampleProgram.RunAsync("Tutorial", new[] { "--help" });
        Assert.Equal(0, exit);
        foreach (string line in new[] { "--count <count>", "[default: 5000]", "--placement <value>", "[default: threads]", "--capacity <value>",
                     "[default: 32768]", "--state <value>", "--on-error <value>", "--broker-poison <value>", "--quiet" })
            Assert.Contains(line, output);
        (exit, output, _) = await ExampleProgram.RunAsync("Countdown", new[] { "--help" });
        Assert.Equal(0, exit);
        Assert.Contains("--tokens <tokens>", output);
        // The hosted example reads its settings from configuration: its --help lists them, Millrace's with their defaults.
        (exit, output, _) = await ExampleProgram.RunAsync("HostedWorker", new[] { "--help" });
        Assert.Equal(0, exit);
        foreach (string line in new[] { "--Worker:NotifyUrl", "--Telemetry:Otlp", "--Millrace:Placement", "[default: threads]", "--Millrace:OnError:PROCESS", "--Millrace:Capacity" })
            Assert.Contains(line, output);
    }
}
