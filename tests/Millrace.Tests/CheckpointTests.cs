namespace Millrace.Tests;

/// <summary>
/// Checkpoints in the threads placement: a program killed with SIGKILL at random moments, several times,
/// and started again with the same state folder, ends with the output of an undisturbed run.
/// MILLRACE_CHAOS_KILLS sets how many kills (default 5).
/// </summary>
public class CheckpointTests
{
    private const int SIGKILL = 9;

    /// <summary>The lines a scenario prints at the end that must not change with kills (its totals).</summary>
    private static string[] Totals(string output) =>
        output.Split('\n').Where(l => l.StartsWith("db:", StringComparison.Ordinal) || l.StartsWith("totals:", StringComparison.Ordinal) ||
                                      l.StartsWith("pairs:", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();

    [Theory]
    [InlineData("checkpointed")]
    [InlineData("checkpointed-operators")]
    public async Task A_program_killed_again_and_again_resumes_from_its_checkpoints_with_exact_results(string scenario)
    {
        var (exit, output, err) = await ExampleProgram.RunAsync("Millrace.Scenarios", [scenario], seconds: 120);
        Assert.True(exit == 0, err);
        string[] expected = Totals(output);
        Assert.NotEmpty(expected);

        string state = Path.Combine(Path.GetTempPath(), "millrace-state-" + Guid.NewGuid().ToString("N"));
        string file = state + ".jsonl";
        string[] args = [scenario, "--state", state, "--checkpoint-interval", "0.05"];
        var environment = new Dictionary<string, string> { ["MILLRACE_CHECKPOINT_OUT"] = file };
        try
        {
            int kills = Helpers.Iterations("MILLRACE_CHAOS_KILLS", 5);
            var random = new Random();
            long last = -1;
            int killed = 0;
            for (int k = 0; k < kills; k++)
            {
                using var program = ExampleProgram.Start("Millrace.Scenarios", environment, args);
                // A checkpoint newer than the one it resumed from: it has made progress worth keeping.
                long before = last;
                await Waits.Until(() => (last = LastComplete(state)) > before || program.HasExited, "a new complete checkpoint", seconds: 60);
                if (program.HasExited) break; // it finished before this kill
                await Task.Delay(random.Next(0, 60)); // a random moment, not a wait for an outcome
                if (program.HasExited) break;
                ExampleProgram.Kill(program.Pid, SIGKILL);
                await program.WaitAsync(seconds: 30);
                killed++;
            }
            Assert.True(killed >= 2, $"only {killed} kills landed before the program finished");
            var (finalExit, finalOutput, finalErr) = await ExampleProgram.RunAsync("Millrace.Scenarios", args, seconds: 120, environment);
            Assert.True(finalExit == 0, finalErr);
            Assert.Contains("resuming from checkpoint", finalErr);
            Assert.Equal(expected, Totals(finalOutput));
            if (scenario == "checkpointed-operators")
            {
                // The file sink was cut back to its checkpointed length at every resumption: each item once, in order
                // (window k of ten numbers sums to 100k + 45; doubled, 200k + 90).
                string[] lines = File.ReadAllLines(file);
                Assert.Equal(100_000, lines.Length);
                for (int k = 0; k < lines.Length; k++)
                    Assert.True(lines[k] == (200L * k + 90).ToString(System.Globalization.CultureInfo.InvariantCulture), $"line {k + 1} of {file} is '{lines[k]}', not {200L * k + 90}");
            }
        }
        finally
        {
            if (Directory.Exists(state)) Directory.Delete(state, recursive: true);
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Graphs_that_checkpoints_cannot_hold_yet_are_refused_before_the_run()
    {
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        var windows = graph.Stream<long>("windows");
        graph.Timer("tick", numbers, TimeSpan.FromMilliseconds(1), count: 3);
        graph.Window("w", numbers, windows, 2, 2, w => w.Sum());
        graph.ToCollection("memory", windows, new List<long>());
        graph.Process("odd-state", p =>
        {
            ProcessState<object> anything = p.State<object>("anything", 1);
            p.On(numbers, x => anything.Value = x);
        });
        var options = new RunOptions { CheckpointInterval = TimeSpan.FromSeconds(1), StatePath = Path.Combine(Path.GetTempPath(), "millrace-unused-" + Guid.NewGuid().ToString("N")) };
        var e = await Assert.ThrowsAsync<GraphValidationException>(() => graph.RunWithin(options));
        Assert.Contains("source 'tick' cannot start again where a checkpoint left it", e.Message);
        Assert.Contains("process 'memory' (a collection in memory) keeps state that checkpoints do not hold yet", e.Message);
        Assert.Contains("process 'odd-state': its state 'anything' cannot be saved in a checkpoint", e.Message);
        Assert.DoesNotContain("'w'", e.Message); // a window's items are part of its checkpointed state
        Assert.Throws<ArgumentException>(() => RunOptions.Parse(["--placement", "processes", "--checkpoint-interval", "1"]).Check());
    }

    private static long LastComplete(string state)
    {
        if (!Directory.Exists(state)) return -1;
        return Directory.GetDirectories(state, "checkpoint-*")
            .Where(d => File.Exists(Path.Combine(d, "COMPLETE")))
            .Select(d => long.Parse(Path.GetFileName(d)["checkpoint-".Length..], System.Globalization.CultureInfo.InvariantCulture))
            .DefaultIfEmpty(-1).Max();
    }
}
