using Millrace;
using Xunit;
using MillraceApp;

namespace MillraceApp.Tests;

public class PipelineTests
{
    [Fact]
    public async Task Counts_every_line_and_word()
    {
        (long Lines, long Words)? totals = null;
        Graph graph = Pipeline.Build(["a b c", "", "d e"], (lines, words) => totals = (lines, words));

        RunResult result = await graph.RunAsync(new RunOptions { Quiet = true });

        Assert.Equal(RunOutcome.Completed, result.Outcome);
        Assert.Equal((3L, 5L), totals);
    }

    [Fact]
    public async Task A_bad_item_fails_the_run_with_a_named_error()
    {
        Graph graph = Pipeline.Build(new string[] { "fine", null! }, (_, _) => { });

        RunResult result = await graph.RunAsync(new RunOptions { Quiet = true });

        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains("count", result.Errors[0].Message);
    }
}
