namespace Millrace.Tests;

public class FlowTests
{
    [Fact]
    public async Task Items_flow_through_a_pipeline_in_order_with_counts_in_the_result()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        var doubled = graph.Stream<int>("doubled");
        var seen = new List<int>();
        graph.Source("src", numbers, Enumerable.Range(0, 100_000));
        graph.Process("double", p =>
        {
            var output = p.Output(doubled);
            p.On(numbers, x => output.Emit(2 * x));
        });
        graph.Process("sink", p => p.On(doubled, seen.Add));

        RunResult result = await graph.RunWithin();

        Assert.Equal(RunOutcome.Completed, result.Outcome);
        Assert.Equal(Enumerable.Range(0, 100_000).Select(x => 2 * x), seen);
        Assert.Equal(new ProcessStats(0, 100_000, Environment.ProcessId), result.Processes["src"]);
        Assert.Equal(new ProcessStats(100_000, 100_000, Environment.ProcessId), result.Processes["double"]);
        Assert.Equal(new ProcessStats(100_000, 0, Environment.ProcessId), result.Processes["sink"]);
        Assert.Equal(100_000, result.Streams["doubled"].ItemsWritten);
        Assert.False(result.TerminationDetected);
    }

    [Fact]
    public async Task Every_reader_of_a_stream_sees_every_item_in_order_even_at_different_speeds()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        var fast = new List<int>();
        var slow = new List<int>();
        int fastSeen = 0;
        graph.Source("src", numbers, Enumerable.Range(0, 20_000));
        graph.Process("fast", p => p.On(numbers, x =>
        {
            fast.Add(x);
            Volatile.Write(ref fastSeen, x + 1);
        }));
        graph.Process("slow", p => p.On(numbers, x =>
        {
            // Every 1000 items the slow reader waits until the fast one is 64 items further (or done):
            // the fast one is not held back by it, within the stream's capacity.
            if (x % 1000 == 0)
                Waits.UntilBlocking(() => Volatile.Read(ref fastSeen) >= Math.Min(x + 64, 20_000), $"the fast reader to pass item {x + 64}");
            slow.Add(x);
        }));

        RunResult result = await graph.RunWithin(new RunOptions { StreamCapacity = 256, BatchSize = 32 });

        Assert.True(result.Succeeded, result.ToString());
        Assert.Equal(Enumerable.Range(0, 20_000), fast);
        Assert.Equal(Enumerable.Range(0, 20_000), slow);
    }

    [Fact]
    public async Task Several_writers_of_one_stream_each_keep_their_order_and_the_stream_ends_after_the_last()
    {
        var graph = new Graph();
        var merged = graph.Stream<(string Writer, int Value)>("merged");
        var seen = new List<(string, int)>();
        int completions = 0;
        TaskCompletionSource aDone = Waits.Signal();
        graph.Source("a", merged, A());
        graph.Source("b", merged, B());
        graph.Process("sink", p =>
        {
            p.On(merged, seen.Add);
            p.OnCompleted(() => completions++);
        });

        RunResult result = await graph.RunWithin();

        Assert.True(result.Succeeded, result.ToString());
        Assert.Equal(1, completions);
        Assert.Equal(Enumerable.Range(0, 5000), seen.Where(s => s.Item1 == "a").Select(s => s.Item2));
        Assert.Equal(Enumerable.Range(0, 20), seen.Where(s => s.Item1 == "b").Select(s => s.Item2));
        Assert.Equal(5020, result.Streams["merged"].ItemsWritten);

        IEnumerable<(string, int)> A()
        {
            for (int i = 0; i < 5000; i++) yield return ("a", i);
            aDone.TrySetResult();
        }

        // Half of b's items while a writes, the other half once a has written its last.
        async IAsyncEnumerable<(string, int)> B()
        {
            for (int i = 0; i < 20; i++)
            {
                if (i == 10) await Waits.For(aDone.Task, "writer a to end");
                yield return ("b", i);
            }
        }
    }

    [Fact]
    public async Task A_process_with_two_inputs_ends_only_when_both_have_ended()
    {
        var graph = new Graph();
        var shortStream = graph.Stream<int>("short");
        var longStream = graph.Stream<int>("long");
        var log = new List<string>();
        TaskCompletionSource shortHandled = Waits.Signal();
        graph.Source("quick", shortStream, Enumerable.Range(0, 10));
        graph.Source("slow", longStream, SlowNumbers());
        graph.Process("both", p =>
        {
            int a = 0, b = 0;
            p.On(shortStream, _ =>
            {
                if (++a == 10) shortHandled.TrySetResult();
            });
            p.On(longStream, _ =>
            {
                b++;
                if (b == 30) log.Add($"last long item after {a} short items");
            });
            p.OnCompleted(() => log.Add($"completed with {a} + {b}"));
        });

        RunResult result = await graph.RunWithin();

        Assert.True(result.Succeeded, result.ToString());
        Assert.Equal(new[] { "last long item after 10 short items", "completed with 10 + 30" }, log);
        Assert.Equal(40, result.Processes["both"].ItemsIn);

        // The last long item only once "both" has handled every short one.
        async IAsyncEnumerable<int> SlowNumbers()
        {
            for (int i = 0; i < 30; i++)
            {
                if (i == 29) await Waits.For(shortHandled.Task, "the short items to be handled");
                yield return i;
            }
        }
    }

    [Fact]
    public async Task A_slow_reader_bounds_what_is_queued_and_the_writer_is_slowed_not_lossy()
    {
        const int capacity = 64, batch = 16, count = 3000;
        long produced = 0, consumed = 0, maxAhead = 0;
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        graph.Source("fast", numbers, Produce());
        graph.Process("slow", p => p.On(numbers, x =>
        {
            Assert.Equal(consumed, x);
            long ahead = Volatile.Read(ref produced) - consumed;
            if (ahead > maxAhead) maxAhead = ahead;
            consumed++;
            // Now and then the reader waits until the writer has run ahead by half the capacity (or
            // written everything): the writer is as far ahead as the bound lets it, whatever the timing.
            if (x % 50 == 0)
                Waits.UntilBlocking(() => Volatile.Read(ref produced) - consumed >= Math.Min(capacity / 2, count - consumed), "the writer to run ahead");
        }));

        RunResult result = await graph.RunWithin(new RunOptions { StreamCapacity = capacity, BatchSize = batch });

        Assert.True(result.Succeeded, result.ToString());
        Assert.Equal(count, consumed);
        // Queued (capacity) + the batch in the reader's hand + one pending + one being filled by the writer.
        Assert.InRange(maxAhead, capacity / 2, capacity + 3 * batch + 1);

        IEnumerable<long> Produce()
        {
            for (long i = 0; i < count; i++)
            {
                Interlocked.Increment(ref produced);
                yield return i;
            }
        }
    }

    [Fact]
    public async Task A_handler_that_emits_many_items_per_input_stays_bounded()
    {
        long produced = 0, consumed = 0, maxAhead = 0;
        var graph = new Graph();
        var seeds = graph.Stream<int>("seeds");
        var burst = graph.Stream<int>("burst");
        graph.Source("src", seeds, new[] { 1, 2 });
        graph.Process("fanout", p =>
        {
            var output = p.Output(burst);
            p.On(seeds, _ =>
            {
                for (int i = 0; i < 20_000; i++)
                {
                    Interlocked.Increment(ref produced);
                    output.Emit(i);
                }
            });
        });
        graph.Process("slow", p => p.On(burst, x =>
        {
            long ahead = Volatile.Read(ref produced) - consumed;
            if (ahead > maxAhead) maxAhead = ahead;
            consumed++;
            // Now and then the reader waits until the emitting handler has run ahead by half the
            // capacity (or emitted everything), so that an unbounded one would show.
            if (x % 2000 == 0)
                Waits.UntilBlocking(() => Volatile.Read(ref produced) - consumed >= Math.Min(64, 40_000 - consumed), "the emitting handler to run ahead");
        }));

        RunResult result = await graph.RunWithin(new RunOptions { StreamCapacity = 128, BatchSize = 16 });

        Assert.True(result.Succeeded, result.ToString());
        Assert.Equal(40_000, consumed);
        Assert.True(maxAhead < 2_000, $"{maxAhead} items were ahead of the reader");
    }

    [Fact]
    public async Task Async_handlers_async_sources_and_function_sources_all_flow()
    {
        var graph = new Graph();
        var a = graph.Stream<int>("a");
        var b = graph.Stream<int>("b");
        var c = graph.Stream<int>("c");
        var results = new List<int>();
        int next = 0, asyncCalls = 0;
        graph.Source("counter", a, output =>
        {
            if (next == 50) return false;
            output.Emit(next++);
            return true;
        });
        graph.Source("async-counter", b, async (output, ct) =>
        {
            await Task.Yield();
            if (++asyncCalls > 30) return false;
            output.Emit(1000);
            return true;
        });
        graph.Process("io", p =>
        {
            var output = p.Output(c);
            p.On(a, async (x, ct) =>
            {
                // Completes later, on another thread, even items later still: awaited one at a time,
                // the handlers keep the order anyway.
                await Task.Yield();
                if (x % 2 == 0) await Task.Yield();
                output.Emit(x);
            });
            p.On(b, x => output.Emit(x));
        });
        graph.Process("sink", p => p.On(c, results.Add));

        RunResult result = await graph.RunWithin();

        Assert.True(result.Succeeded, result.ToString());
        Assert.Equal(Enumerable.Range(0, 50), results.Where(x => x < 1000));
        Assert.Equal(30, results.Count(x => x == 1000));
    }

    [Fact]
    public async Task A_start_action_emits_before_any_input_arrives()
    {
        var graph = new Graph();
        var s = graph.Stream<string>("s");
        var log = new List<string>();
        graph.Process("greeter", p =>
        {
            var output = p.Output(s);
            p.OnStart(async ct =>
            {
                output.Emit("hello");
                await Task.Yield(); // the rest runs later, on another thread
                output.Emit("world");
            });
        });
        graph.Process("sink", p =>
        {
            p.On(s, log.Add);
            p.OnCompleted(() => log.Add("end"));
        });

        RunResult result = await graph.RunWithin();

        Assert.True(result.Succeeded, result.ToString());
        Assert.Equal(new[] { "hello", "world", "end" }, log);
    }

    [Fact]
    public async Task Configure_runs_again_for_each_run_so_state_starts_fresh()
    {
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        var totals = new List<int>();
        graph.Source("src", s, Enumerable.Range(1, 10));
        graph.Process("sum", p =>
        {
            int sum = 0;
            p.On(s, x => sum += x);
            p.OnCompleted(() => totals.Add(sum));
        });

        await graph.RunWithin();
        await graph.RunWithin();

        Assert.Equal(new[] { 55, 55 }, totals);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_busy_slow_process_still_lets_its_first_items_leave_before_it_finishes(bool asyncHandler)
    {
        var graph = new Graph();
        var jobs = graph.Stream<int>("jobs");
        var results = graph.Stream<int>("results");
        int handled = 0, handledWhenFirstArrived = -1;
        TaskCompletionSource firstArrived = Waits.Signal();
        graph.Source("src", jobs, Enumerable.Range(0, 40));
        // Each job takes 10 ms, twice the default linger (5 ms): the linger is a duration by design.
        // Only a lower bound matters (a sleep lasts at least that long), so a slower machine changes
        // nothing. The last job waits until item 0 has arrived: the process finishes only after.
        graph.Process("worker", p =>
        {
            var output = p.Output(results);
            if (asyncHandler)
            {
                p.On(jobs, async (x, ct) =>
                {
                    if (x == 39) await Waits.For(firstArrived.Task, "item 0 to arrive while the worker is busy");
                    await Task.Delay(10, ct);
                    output.Emit(x);
                    Interlocked.Increment(ref handled);
                });
            }
            else
            {
                p.On(jobs, x =>
                {
                    if (x == 39) Waits.ForBlocking(firstArrived.Task, "item 0 to arrive while the worker is busy");
                    Thread.Sleep(10);
                    output.Emit(x);
                    Interlocked.Increment(ref handled);
                });
            }
        });
        graph.Process("sink", p => p.On(results, x =>
        {
            if (x != 0) return;
            handledWhenFirstArrived = Volatile.Read(ref handled);
            firstArrived.TrySetResult();
        }));

        RunResult result = await graph.RunWithin();

        Assert.True(result.Succeeded, result.ToString());
        // The 40 jobs arrive in one batch, so the worker never idles: only the linger check sends item 0 early.
        Assert.InRange(handledWhenFirstArrived, 1, 39);
    }
}
