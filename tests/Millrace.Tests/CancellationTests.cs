namespace Millrace.Tests;

public class CancellationTests
{
    [Fact]
    public async Task Cancelling_stops_sources_and_drains_the_rest_without_losing_items()
    {
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        var squares = graph.Stream<long>("squares");
        var received = new List<long>();
        bool completed = false;
        long pulled = 0;
        using var cts = new CancellationTokenSource();
        graph.Source("forever", numbers, Counted());
        graph.Process("square", p =>
        {
            var output = p.Output(squares);
            p.On(numbers, x => output.Emit(x * x));
        });
        graph.Process("sink", p =>
        {
            p.On(squares, x =>
            {
                received.Add(x);
                // Cancelled while items are in flight everywhere: after the sink has seen some.
                if (received.Count == 5000) _ = Task.Run(cts.Cancel);
            });
            p.OnCompleted(() => completed = true);
        });

        RunResult result = await graph.RunWithin(token: cts.Token, seconds: 30);

        Assert.Equal(RunOutcome.Stopped, result.Outcome);
        Assert.True(result.Succeeded);
        Assert.True(completed);
        // Exactly the squares of every number the source took from its enumerable, in order: none lost, none twice.
        long n = Interlocked.Read(ref pulled);
        Assert.True(n >= 5000, $"the source took {n} numbers");
        Assert.Equal(LongRange(n).Select(x => x * x), received);

        IEnumerable<long> Counted()
        {
            for (long i = 0; ; i++)
            {
                Interlocked.Increment(ref pulled);
                yield return i;
            }
        }
    }

    [Fact]
    public async Task Cancelling_an_async_source_ends_it_cleanly()
    {
        var graph = new Graph();
        var ticks = graph.Stream<int>("ticks");
        var received = new List<int>();
        int yielded = 0;
        using var cts = new CancellationTokenSource();
        graph.Source("ticker", ticks, Ticks(CancellationToken.None));
        graph.Process("sink", p => p.On(ticks, x =>
        {
            received.Add(x);
            if (received.Count == 20) _ = Task.Run(cts.Cancel);
        }));

        RunResult result = await graph.RunWithin(token: cts.Token, seconds: 30);

        Assert.Equal(RunOutcome.Stopped, result.Outcome);
        Assert.Empty(result.Errors);
        int n = Volatile.Read(ref yielded);
        Assert.True(n >= 20, $"the source yielded {n} ticks");
        Assert.Equal(Enumerable.Range(0, n), received);

        async IAsyncEnumerable<int> Ticks([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
        {
            for (int i = 0; ; i++)
            {
                await Task.Yield();
                Interlocked.Increment(ref yielded);
                yield return i;
            }
        }
    }

    private static IEnumerable<long> LongRange(long count)
    {
        for (long i = 0; i < count; i++) yield return i;
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
        using var cts = new CancellationTokenSource();
        int seen = 0;
        graph.Process("py", p =>
        {
            var output = p.Output(x);
            p.On(y, v =>
            {
                if (++seen == 1000) _ = Task.Run(cts.Cancel);
                output.Emit(v + 1);
            });
        });

        RunResult result = await graph.RunWithin(new RunOptions { DrainTimeout = TimeSpan.FromMilliseconds(200) }, cts.Token, seconds: 10);

        Assert.Equal(RunOutcome.Stopped, result.Outcome);
        Assert.Empty(result.Errors);
        Assert.True(seen >= 1000);
        Assert.True(result.Streams["x"].ItemsWritten >= 1000);
    }
}
