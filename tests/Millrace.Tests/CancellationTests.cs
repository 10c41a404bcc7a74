namespace Millrace.Tests;

public class CancellationTests
{
    [Fact]
    public async Task Cancelling_stops_sources_and_drains_the_rest_without_losing_items()
    {
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        var squares = graph.Stream<long>("squares");
        long received = 0;
        bool completed = false;
        graph.Source("forever", numbers, Helpers.Forever());
        graph.Process("square", p =>
        {
            var output = p.Output(squares);
            p.On(numbers, x => output.Emit(x * x));
        });
        graph.Process("sink", p =>
        {
            p.On(squares, _ => received++);
            p.OnCompleted(() => completed = true);
        });

        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        RunResult result = await graph.RunWithin(token: cts.Token, seconds: 10);

        Assert.Equal(RunOutcome.Stopped, result.Outcome);
        Assert.True(result.Succeeded);
        Assert.True(completed);
        Assert.True(received > 0);
        Assert.Equal(result.Streams["numbers"].ItemsWritten, received);
        Assert.Equal(received, result.Processes["sink"].ItemsIn);
    }

    [Fact]
    public async Task Cancelling_an_async_source_ends_it_cleanly()
    {
        var graph = new Graph();
        var ticks = graph.Stream<int>("ticks");
        int received = 0;
        graph.Source("ticker", ticks, Ticks(CancellationToken.None));
        graph.Process("sink", p => p.On(ticks, _ => received++));

        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        RunResult result = await graph.RunWithin(token: cts.Token, seconds: 10);

        Assert.Equal(RunOutcome.Stopped, result.Outcome);
        Assert.Empty(result.Errors);
        Assert.Equal(result.Streams["ticks"].ItemsWritten, received);

        static async IAsyncEnumerable<int> Ticks([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
        {
            for (int i = 0; ; i++)
            {
                await Task.Delay(5, ct);
                yield return i;
            }
        }
    }

    [Fact]
    public async Task A_cycle_that_never_drains_is_stopped_after_the_drain_timeout()
    {
        var graph = new Graph();
        var x = graph.Stream<int>("x");
        var y = graph.Stream<int>("y");
        graph.Process("px", p =>
        {
            var output = p.Output(y);
            p.OnStart(() => output.Emit(0));
            p.On(x, v => output.Emit(v + 1));
        });
        graph.Process("py", p =>
        {
            var output = p.Output(x);
            p.On(y, v => output.Emit(v + 1));
        });

        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        RunResult result = await graph.RunWithin(new RunOptions { DrainTimeout = TimeSpan.FromMilliseconds(200) }, cts.Token, seconds: 10);

        Assert.Equal(RunOutcome.Stopped, result.Outcome);
        Assert.Empty(result.Errors);
        Assert.True(result.Streams["x"].ItemsWritten > 10);
    }
}
