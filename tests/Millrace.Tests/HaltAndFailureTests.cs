namespace Millrace.Tests;

public class HaltAndFailureTests
{
    [Fact]
    public async Task Halt_stops_every_process_promptly_and_names_who_halted()
    {
        var graph = new Graph();
        var endless = graph.Stream<long>("endless");
        var other = graph.Stream<long>("other");
        long seenByWatcher = 0;
        graph.Source("forever", endless, Helpers.Forever());
        graph.Source("forever2", other, Helpers.Forever());
        graph.Process("watcher", p =>
        {
            p.On(endless, x =>
            {
                seenByWatcher++;
                if (x == 10_000) p.Halt("enough");
            });
            p.On(other, _ => { });
        });

        // Promptly: the endless sources stop (else the run would not end), and no process had to be
        // given up on after the stop timeout (that would be an error).
        RunResult result = await graph.RunWithin();

        Assert.Equal(RunOutcome.Halted, result.Outcome);
        Assert.True(result.Succeeded);
        Assert.Equal("watcher", result.HaltedBy);
        Assert.Equal("enough", result.HaltReason);
        Assert.Equal(10_001, seenByWatcher);
        Assert.Empty(result.Errors);
    }

    [Fact]
    public async Task Halt_interrupts_a_handler_waiting_on_its_cancellation_token()
    {
        var graph = new Graph();
        var ticks = graph.Stream<int>("ticks");
        bool cancelledSeen = false;
        TaskCompletionSource waiting = Waits.Signal();
        graph.Source("tick", ticks, new[] { 1, 2 });
        graph.Process("sleeper", p => p.On(ticks, async (x, ct) =>
        {
            try
            {
                waiting.TrySetResult();
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
                cancelledSeen = true;
                throw;
            }
        }));
        // The halt comes once the sleeper waits on its token.
        graph.Process("halter", p => p.OnStart(async ct =>
        {
            await Waits.For(waiting.Task, "the sleeper to wait on its token");
            p.Halt();
        }));

        RunResult result = await graph.RunWithin();

        Assert.Equal("halter", result.HaltedBy);
        Assert.True(cancelledSeen);
        Assert.Empty(result.Errors);
    }

    [Fact]
    public async Task An_exception_names_process_stream_and_item_and_stops_the_run()
    {
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        var halves = graph.Stream<long>("halves");
        graph.Source("forever", numbers, Helpers.Forever());
        graph.Process("picky", p =>
        {
            var output = p.Output(halves);
            p.On(numbers, x =>
            {
                if (x == 1234) throw new InvalidOperationException("1234 is not welcome");
                output.Emit(x / 2);
            });
        });
        graph.Process("sink", p => p.On(halves, _ => { }));

        RunResult result = await graph.RunWithin(seconds: 10);

        Assert.Equal(RunOutcome.Failed, result.Outcome);
        ProcessFailure failure = Assert.Single(result.Errors);
        Assert.Equal("picky", failure.Process);
        Assert.Equal("numbers", failure.Stream);
        Assert.Equal(1234, failure.ItemIndex);
        Assert.Equal("1234", failure.Item);
        Assert.IsType<InvalidOperationException>(failure.Exception);
        Assert.Contains("Process 'picky' failed on item 1234 of stream 'numbers' (1234): InvalidOperationException: 1234 is not welcome", failure.Message);
        Assert.Equal(1234, result.Processes["picky"].ItemsIn);
        var thrown = Assert.Throws<ProcessFailedException>(() => result.EnsureSuccess());
        Assert.Same(failure, thrown.Errors[0]);
    }

    [Fact]
    public async Task An_exception_in_an_async_handler_is_attributed_too()
    {
        var graph = new Graph();
        var words = graph.Stream<string>("words");
        graph.Source("src", words, new[] { "ok", "boom", "never" });
        graph.Process("reader", p => p.On(words, async (w, ct) =>
        {
            await Task.Yield();
            if (w == "boom") throw new FormatException("cannot parse");
        }));

        RunResult result = await graph.RunWithin();

        ProcessFailure failure = Assert.Single(result.Errors);
        Assert.Equal(("reader", "words", 1L, "boom"), (failure.Process, failure.Stream, failure.ItemIndex.GetValueOrDefault(), failure.Item));
        Assert.IsType<FormatException>(failure.Exception);
    }

    [Theory]
    [InlineData("start")]
    [InlineData("completion")]
    [InlineData("source")]
    public async Task Exceptions_outside_handlers_name_the_process_and_the_phase(string where)
    {
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        if (where == "source")
        {
            graph.Source("src", s, Failing());
        }
        else
        {
            graph.Source("src", s, new[] { 1, 2, 3 });
        }
        graph.Process("sink", p =>
        {
            p.On(s, _ => { });
            if (where == "start") p.OnStart(() => throw new InvalidOperationException("no start"));
            if (where == "completion") p.OnCompleted(() => throw new InvalidOperationException("no end"));
        });

        RunResult result = await graph.RunWithin();

        ProcessFailure failure = Assert.Single(result.Errors);
        string expected = where switch
        {
            "start" => "Process 'sink' failed in its start action: InvalidOperationException: no start",
            "completion" => "Process 'sink' failed in its completion action: InvalidOperationException: no end",
            _ => "Process 'src' failed in its source: IOException: disk gone",
        };
        Assert.Equal(expected, failure.Message);

        static IEnumerable<int> Failing()
        {
            yield return 1;
            throw new IOException("disk gone");
        }
    }

    [Fact]
    public async Task A_handler_that_ignores_cancellation_is_reported_after_the_stop_timeout()
    {
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        using var release = new ManualResetEventSlim();
        TaskCompletionSource stuck = Waits.Signal();
        graph.Source("src", s, new[] { 1, 2 });
        graph.Process("stubborn", p => p.On(s, _ =>
        {
            stuck.TrySetResult();
            release.Wait();
        }));
        // The halt comes once the stubborn handler is stuck; it is released only after the run, so the
        // stop timeout (a duration by design) passes however slow the machine.
        graph.Process("halter", p => p.OnStart(async ct =>
        {
            await Waits.For(stuck.Task, "the stubborn handler to be stuck");
            p.Halt();
        }));

        RunResult result;
        try
        {
            result = await graph.RunWithin(new RunOptions { StopTimeout = TimeSpan.FromMilliseconds(300) });
        }
        finally
        {
            release.Set();
        }

        Assert.Equal("halter", result.HaltedBy);
        Assert.Contains(result.Errors, e => e.Process == "stubborn" && e.Message.Contains("did not stop within 0.3 s"));
        // A run that reports errors never reports success, halted or not.
        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.False(result.Succeeded);
    }
}
