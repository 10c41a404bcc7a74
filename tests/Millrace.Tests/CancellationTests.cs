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
        Assert.False(result.StoppedAtOnce); // drained: every input ended, so the completion action ran
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
    public async Task A_stop_that_cannot_drain_in_time_stops_at_once_and_says_so_and_a_halt_skips_completion_actions()
    {
        // A sink stuck on its first item: the graceful stop cannot drain, so after DrainTimeout every process stops at once.
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        TaskCompletionSource stuck = Waits.Signal();
        bool completed = false;
        using var cts = new CancellationTokenSource();
        graph.Source("forever", numbers, Helpers.Forever());
        graph.Process("sink", p =>
        {
            p.On(numbers, async (x, ct) =>
            {
                stuck.TrySetResult();
                await Task.Delay(Timeout.Infinite, ct).ContinueWith(_ => { });
            });
            p.OnCompleted(() => completed = true);
        });
        Task<RunResult> run = graph.RunWithin(new RunOptions { DrainTimeout = TimeSpan.FromMilliseconds(200) }, cts.Token);
        await Waits.For(stuck.Task, "the sink's first item");
        cts.Cancel();
        RunResult result = await run;
        Assert.Equal(RunOutcome.Stopped, result.Outcome);
        Assert.True(result.StoppedAtOnce);
        Assert.StartsWith("Stopped at once in ", result.ToString());
        Assert.False(completed); // its inputs never ended: a summary would be wrong

        // A halt stops every process at once too: the halting process's completion action does not run, nor does that of a
        // process downstream whose input is cut by the halt.
        var halting = new Graph();
        var b = halting.Stream<int>("b");
        var c = halting.Stream<int>("c");
        bool haltCompleted = false, downstreamCompleted = false;
        halting.Source("many", b, Helpers.Forever().Select(i => (int)(i % 1000)));
        halting.Process("halter", p =>
        {
            var o = p.Output(c);
            p.On(b, x => { if (x == 999) p.Halt("enough"); else o.Emit(x); });
            p.OnCompleted(() => haltCompleted = true);
        });
        halting.Process("downstream", p =>
        {
            p.On(c, _ => { });
            p.OnCompleted(() => downstreamCompleted = true);
        });
        RunResult halted = await halting.RunWithin();
        Assert.Equal(RunOutcome.Halted, halted.Outcome);
        Assert.False(halted.StoppedAtOnce);
        Assert.False(haltCompleted);
        Assert.False(downstreamCompleted);
    }

    [Fact]
    public void A_hard_stop_after_every_process_ended_is_not_a_stop_at_once()
    {
        // The drain timer of a graceful stop stays armed while a placement finishes after its processes ended (the broker
        // waiting for confirms, the coordinator for its children's last words): firing then, it stops nothing that was in flight.
        using (var drained = new Millrace.Engine.RunContext(new RunOptions()))
        {
            drained.RequestStop();
            drained.ProcessesEnded();
            drained.StopAll();
            Assert.Equal(RunOutcome.Stopped, drained.Outcome);
            Assert.False(drained.StoppedAtOnce);
        }
        using (var cut = new Millrace.Engine.RunContext(new RunOptions()))
        {
            cut.RequestStop();
            cut.StopAll();
            cut.ProcessesEnded();
            Assert.True(cut.StoppedAtOnce);
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
