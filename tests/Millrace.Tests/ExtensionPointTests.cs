namespace Millrace.Tests;

/// <summary>The public extension points a sink is built on (Millrace.Data's table sink uses only these).</summary>
public class ExtensionPointTests
{
    [Theory]
    [InlineData("completes")]
    [InlineData("fails")]
    [InlineData("halts")]
    public async Task Finally_runs_once_however_the_process_ends_and_after_its_completion_action(string how)
    {
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        var log = new List<string>();
        graph.Source("src", s, Enumerable.Range(0, 100));
        graph.Process("sink", p =>
        {
            p.On(s, x =>
            {
                if (x == 50 && how == "fails") throw new InvalidOperationException("boom");
                if (x == 50 && how == "halts") p.Halt("enough");
            });
            p.OnCompleted(() => log.Add("completed"));
            p.Finally(() => log.Add("first release"));
            p.Finally(() => log.Add("second release"));
        });

        RunResult result = await graph.RunWithin();

        Assert.Equal(how switch { "completes" => RunOutcome.Completed, "fails" => RunOutcome.Failed, _ => RunOutcome.Halted }, result.Outcome);
        string[] expected = how == "completes"
            ? new[] { "completed", "first release", "second release" }
            : new[] { "first release", "second release" };
        Assert.Equal(expected, log);
    }

    [Fact]
    public async Task OnBatchEnd_runs_after_each_batch_that_arrived_together_and_covers_every_item_once()
    {
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        var batches = new List<List<int>>();
        var current = new List<int>();
        graph.Source("src", s, Enumerable.Range(0, 10_000));
        graph.Process("sink", p =>
        {
            p.On(s, x => current.Add(x));
            p.OnBatchEnd(() =>
            {
                batches.Add(current);
                current = new List<int>();
            });
        });

        RunResult result = await graph.RunWithin(new RunOptions { BatchSize = 64, HandleStopSignals = false });

        Assert.Equal(RunOutcome.Completed, result.Outcome);
        Assert.Empty(current);
        Assert.Equal(Enumerable.Range(0, 10_000), batches.SelectMany(b => b));
        Assert.All(batches, b => Assert.InRange(b.Count, 1, 64));
        Assert.True(batches.Count >= 10_000 / 64);
    }

    [Fact]
    public async Task OnBatchEnd_does_not_run_for_a_batch_whose_handler_failed()
    {
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        var committed = new List<int>();
        var current = new List<int>();
        bool failed = false, committedAfterFailure = false;
        graph.Source("src", s, Enumerable.Range(0, 1000));
        graph.Process("sink", p =>
        {
            p.On(s, x =>
            {
                if (x == 500)
                {
                    failed = true;
                    throw new InvalidOperationException("bad item");
                }
                current.Add(x);
            });
            p.OnBatchEnd(() =>
            {
                committedAfterFailure |= failed;
                committed.AddRange(current);
                current.Clear();
            });
        });

        RunResult result = await graph.RunWithin(new RunOptions { BatchSize = 100, HandleStopSignals = false });

        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.True(failed);
        Assert.False(committedAfterFailure);
        Assert.DoesNotContain(500, committed);
        // Nothing of the failed batch is said committed: what was committed ends before it, whole batches only.
        Assert.True(committed.Count <= 500);
        Assert.Equal(Enumerable.Range(0, committed.Count), committed);
    }
}
