namespace Millrace.Tests;

/// <summary>
/// Checkpoints in the threads placement: a program killed with SIGKILL at random moments, several times,
/// and started again with the same state folder, ends with the output of an undisturbed run.
/// MILLRACE_CHAOS_KILLS sets how many kills (default 5).
/// </summary>
public class CheckpointTests
{
    private const int SIGKILL = 9;

    [Fact]
    public async Task A_program_killed_again_and_again_resumes_from_its_checkpoints_with_exact_results()
    {
        var (exit, output, err) = await ExampleProgram.RunAsync("Millrace.Scenarios", ["checkpointed"], seconds: 120);
        Assert.True(exit == 0, err);
        string expected = Assert.Single(output.Split('\n'), l => l.StartsWith("db:", StringComparison.Ordinal));

        string state = Path.Combine(Path.GetTempPath(), "millrace-state-" + Guid.NewGuid().ToString("N"));
        string[] args = ["checkpointed", "--state", state, "--checkpoint-interval", "0.05"];
        try
        {
            int kills = Helpers.Iterations("MILLRACE_CHAOS_KILLS", 5);
            var random = new Random();
            long last = -1;
            int killed = 0;
            for (int k = 0; k < kills; k++)
            {
                using var program = ExampleProgram.Start("Millrace.Scenarios", args);
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
            var (finalExit, finalOutput, finalErr) = await ExampleProgram.RunAsync("Millrace.Scenarios", args, seconds: 120);
            Assert.True(finalExit == 0, finalErr);
            Assert.Contains("resuming from checkpoint", finalErr);
            Assert.Contains(expected, finalOutput.Split('\n'));
        }
        finally
        {
            if (Directory.Exists(state)) Directory.Delete(state, recursive: true);
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
        graph.Sink("sink", windows, _ => { });
        var options = new RunOptions { CheckpointInterval = TimeSpan.FromSeconds(1), StatePath = Path.Combine(Path.GetTempPath(), "millrace-unused-" + Guid.NewGuid().ToString("N")) };
        var e = await Assert.ThrowsAsync<GraphValidationException>(() => graph.RunWithin(options));
        Assert.Contains("source 'tick' cannot start again where a checkpoint left it", e.Message);
        Assert.Contains("process 'w' (Window) keeps state that checkpoints do not hold yet", e.Message);
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
