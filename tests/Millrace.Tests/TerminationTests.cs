namespace Millrace.Tests;

/// <summary>Cycles end by themselves once every source is done and nothing is in flight.</summary>
public class TerminationTests
{
    private const int Repeats = 40;

    /// <summary>A process that passes a token on, one less, until zero; zeros go to <paramref name="done"/>.</summary>
    private static void Passer(Graph graph, string name, Stream<long> input, Stream<long> next, Stream<long> done) =>
        graph.Process(name, p =>
        {
            var onward = p.Output(next);
            var retired = p.Output(done);
            p.On(input, t =>
            {
                if (t == 0) retired.Emit(t);
                else onward.Emit(t - 1);
            });
        });

    private static void Tally(Graph graph, Stream<long> done, List<long> totals) => graph.Process("tally", p =>
    {
        long n = 0;
        p.On(done, _ => n++);
        p.OnCompleted(() => totals.Add(n));
    });

    [Fact]
    public async Task Two_process_ring_ends_by_termination_detection()
    {
        for (int run = 0; run < Repeats; run++)
        {
            var graph = new Graph();
            var toA = graph.Stream<long>("to_a");
            var toB = graph.Stream<long>("to_b");
            var done = graph.Stream<long>("done");
            var totals = new List<long>();
            graph.Source("launcher", toA, new long[] { 5, 10, 20, 0 });
            Passer(graph, "a", toA, toB, done);
            Passer(graph, "b", toB, toA, done);
            Tally(graph, done, totals);

            RunResult result = await graph.RunWithin(seconds: 10);

            Assert.Equal(RunOutcome.Completed, result.Outcome);
            Assert.True(result.TerminationDetected);
            Assert.Equal(new long[] { 4 }, totals);
            Assert.Equal(4 + 35, result.Streams["to_a"].ItemsWritten + result.Streams["to_b"].ItemsWritten);
        }
    }

    [Fact]
    public async Task Self_loop_ends()
    {
        for (int run = 0; run < Repeats; run++)
        {
            var graph = new Graph();
            var loop = graph.Stream<long>("loop");
            var done = graph.Stream<long>("done");
            var totals = new List<long>();
            graph.Process("looper", p =>
            {
                var again = p.Output(loop);
                var retired = p.Output(done);
                p.OnStart(() => again.Emit(1000));
                p.On(loop, t =>
                {
                    if (t == 0) retired.Emit(t);
                    else again.Emit(t - 1);
                });
            });
            Tally(graph, done, totals);

            RunResult result = await graph.RunWithin(seconds: 10);

            Assert.True(result.TerminationDetected);
            Assert.Equal(new long[] { 1 }, totals);
            Assert.Equal(1001, result.Streams["loop"].ItemsWritten);
        }
    }

    [Fact]
    public async Task Three_process_ring_with_many_tokens_ends()
    {
        for (int run = 0; run < Repeats; run++)
        {
            var graph = new Graph();
            var s1 = graph.Stream<long>("s1");
            var s2 = graph.Stream<long>("s2");
            var s3 = graph.Stream<long>("s3");
            var done = graph.Stream<long>("done");
            var totals = new List<long>();
            graph.Source("launcher", s1, Enumerable.Range(0, 500).Select(i => (long)(i % 37)));
            Passer(graph, "p1", s1, s2, done);
            Passer(graph, "p2", s2, s3, done);
            Passer(graph, "p3", s3, s1, done);
            Tally(graph, done, totals);

            RunResult result = await graph.RunWithin(seconds: 10);

            Assert.True(result.TerminationDetected, result.ToString());
            Assert.Equal(new long[] { 500 }, totals);
        }
    }

    [Fact]
    public async Task A_growing_then_dying_cycle_ends()
    {
        // Each token n > 0 becomes two tokens n-1: 2^(n+1)-1 items per launched token, then silence.
        for (int run = 0; run < Repeats; run++)
        {
            var graph = new Graph();
            var work = graph.Stream<int>("work");
            var done = graph.Stream<long>("done");
            var totals = new List<long>();
            graph.Source("launcher", work, new[] { 8, 6 });
            graph.Process("splitter", p =>
            {
                var again = p.Output(work);
                var retired = p.Output(done);
                p.On(work, n =>
                {
                    if (n == 0)
                    {
                        retired.Emit(0);
                        return;
                    }
                    again.Emit(n - 1);
                    again.Emit(n - 1);
                });
            });
            Tally(graph, done, totals);

            RunResult result = await graph.RunWithin(new RunOptions { StreamCapacity = 4096 }, seconds: 10);

            Assert.True(result.TerminationDetected, result.ToString());
            Assert.Equal(new long[] { 256 + 64 }, totals);
        }
    }

    [Fact]
    public async Task Two_cycles_in_series_end_one_after_the_other_and_work_from_the_first_reaches_the_second()
    {
        for (int run = 0; run < Repeats; run++)
        {
            var graph = new Graph();
            var a1 = graph.Stream<long>("a1");
            var a2 = graph.Stream<long>("a2");
            var between = graph.Stream<long>("between");
            var b1 = graph.Stream<long>("b1");
            var b2 = graph.Stream<long>("b2");
            var done = graph.Stream<long>("done");
            var totals = new List<long>();
            graph.Source("launcher", a1, new long[] { 3, 7 });
            Passer(graph, "a-left", a1, a2, between);
            Passer(graph, "a-right", a2, a1, between);
            // The second cycle gets its tokens from the first cycle's retirements, plus a summary at completion.
            graph.Process("bridge", p =>
            {
                var output = p.Output(b1);
                long count = 0;
                p.On(between, _ =>
                {
                    count++;
                    output.Emit(4);
                });
                p.OnCompleted(() => output.Emit(count * 10));
            });
            Passer(graph, "b-left", b1, b2, done);
            Passer(graph, "b-right", b2, b1, done);
            Tally(graph, done, totals);

            RunResult result = await graph.RunWithin(seconds: 10);

            Assert.True(result.Succeeded, result.ToString());
            Assert.True(result.TerminationDetected);
            Assert.Equal(new long[] { 3 }, totals);
            // 2 tokens of 4 hops each, plus the summary token 20.
            Assert.Equal(3 + 4 + 4 + 20, result.Streams["b1"].ItemsWritten + result.Streams["b2"].ItemsWritten);
        }
    }

    [Fact]
    public async Task Figure_eight_of_two_cycles_sharing_a_process_ends()
    {
        for (int run = 0; run < Repeats; run++)
        {
            var graph = new Graph();
            var toHub = graph.Stream<long>("to_hub");
            var toLeft = graph.Stream<long>("to_left");
            var toRight = graph.Stream<long>("to_right");
            var done = graph.Stream<long>("done");
            var totals = new List<long>();
            graph.Source("launcher", toHub, new long[] { 9, 10, 0 });
            graph.Process("hub", p =>
            {
                var left = p.Output(toLeft);
                var right = p.Output(toRight);
                var retired = p.Output(done);
                p.On(toHub, t =>
                {
                    if (t == 0) retired.Emit(0);
                    else if (t % 2 == 0) left.Emit(t - 1);
                    else right.Emit(t - 1);
                });
            });
            foreach (var (name, input) in new[] { ("left", toLeft), ("right", toRight) })
            {
                graph.Process(name, p =>
                {
                    var back = p.Output(toHub);
                    p.On(input, back.Emit);
                });
            }
            Tally(graph, done, totals);

            RunResult result = await graph.RunWithin(seconds: 10);

            Assert.True(result.TerminationDetected, result.ToString());
            Assert.Equal(new long[] { 3 }, totals);
        }
    }

    [Fact]
    public async Task A_cycle_does_not_end_while_its_source_is_still_producing()
    {
        var graph = new Graph();
        var toA = graph.Stream<long>("to_a");
        var toB = graph.Stream<long>("to_b");
        var done = graph.Stream<long>("done");
        var totals = new List<long>();
        graph.Source("slow-launcher", toA, SlowTokens());
        Passer(graph, "a", toA, toB, done);
        Passer(graph, "b", toB, toA, done);
        Tally(graph, done, totals);

        RunResult result = await graph.RunWithin(seconds: 10);

        Assert.True(result.TerminationDetected);
        Assert.Equal(new long[] { 10 }, totals);

        static async IAsyncEnumerable<long> SlowTokens()
        {
            for (int i = 0; i < 10; i++)
            {
                await Task.Delay(20);
                yield return 3;
            }
        }
    }

    [Fact]
    public async Task Emitting_into_the_ended_cycle_on_completion_is_a_clear_error()
    {
        var graph = new Graph();
        var toA = graph.Stream<long>("to_a");
        var toB = graph.Stream<long>("to_b");
        var done = graph.Stream<long>("done");
        graph.Source("launcher", toA, new long[] { 2 });
        Passer(graph, "a", toA, toB, done);
        graph.Process("b", p =>
        {
            var back = p.Output(toA);
            var retired = p.Output(done);
            p.On(toB, t =>
            {
                if (t == 0) retired.Emit(0);
                else back.Emit(t - 1);
            });
            p.OnCompleted(() => back.Emit(99));
        });
        graph.Process("tally", p => p.On(done, _ => { }));

        RunResult result = await graph.RunWithin(seconds: 10);

        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains(result.Errors, e => e.Process == "b" && e.Message.Contains("emitted to stream 'to_a' after termination detection ended the cycle"));
    }

    // A cycle that fills its queues (a deadlock) is in PlacementContract: every placement must report it.
}
