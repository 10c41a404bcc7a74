using Millrace.Engine;

namespace Millrace.Tests.Engine;

/// <summary>
/// The auto-reset signal and its one-waiter wait: a Set is never lost, one Set ends one wait, and a
/// wait ends exactly once whether a Set or a cancellation gets there first.
/// </summary>
public class AsyncSignalTests
{
    [Fact]
    public async Task A_set_before_the_wait_is_remembered_once()
    {
        var signal = new AsyncSignal();
        signal.Set();
        signal.Set(); // auto-reset: two Sets before a wait are one

        ValueTask first = signal.WaitAsync(CancellationToken.None);
        Assert.True(first.IsCompletedSuccessfully);
        await first;

        ValueTask second = signal.WaitAsync(CancellationToken.None);
        Assert.False(second.IsCompleted);
        signal.Set();
        await second.AsTask().WaitAsync(Fakes.Limit);
    }

    [Fact]
    public void A_set_before_a_blocking_wait_is_remembered()
    {
        var signal = new AsyncSignal();
        signal.Set();
        using var limit = new CancellationTokenSource(Fakes.Limit); // a lost Set fails the test instead of hanging it
        signal.Wait(limit.Token);
    }

    [Fact]
    public async Task One_set_ends_one_wait_and_each_wait_needs_its_own()
    {
        var signal = new AsyncSignal();
        for (int i = 0; i < 3; i++)
        {
            ValueTask wait = signal.WaitAsync(CancellationToken.None);
            Assert.False(wait.IsCompleted);
            signal.Set();
            await wait.AsTask().WaitAsync(Fakes.Limit);
        }
        Assert.False(signal.WaitAsync(CancellationToken.None).IsCompleted);
    }

    [Fact]
    public async Task A_blocking_wait_is_woken_by_a_set_from_another_thread()
    {
        var signal = new AsyncSignal();
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task waiter = Task.Factory.StartNew(() =>
        {
            waiting.SetResult();
            signal.Wait(CancellationToken.None);
        }, TaskCreationOptions.LongRunning);
        await waiting.Task.WaitAsync(Fakes.Limit);
        signal.Set();
        await waiter.WaitAsync(Fakes.Limit);
    }

    [Fact]
    public async Task Cancelling_ends_the_wait_and_a_later_set_is_not_lost()
    {
        var signal = new AsyncSignal();
        using var cts = new CancellationTokenSource();
        ValueTask wait = signal.WaitAsync(cts.Token);
        Assert.False(wait.IsCompleted);

        cts.Cancel();
        var e = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait.AsTask().WaitAsync(Fakes.Limit));
        Assert.Equal(cts.Token, e.CancellationToken);

        signal.Set();
        ValueTask next = signal.WaitAsync(CancellationToken.None);
        Assert.True(next.IsCompletedSuccessfully);
        await next;
    }

    [Fact]
    public async Task A_wait_with_a_token_already_cancelled_ends_at_once()
    {
        var signal = new AsyncSignal();
        ValueTask wait = signal.WaitAsync(new CancellationToken(canceled: true));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait.AsTask().WaitAsync(Fakes.Limit));

        signal.Set();
        Assert.True(signal.WaitAsync(CancellationToken.None).IsCompletedSuccessfully);
    }

    [Fact]
    public void A_blocking_wait_is_cancelled()
    {
        var signal = new AsyncSignal();
        using var cts = new CancellationTokenSource();
        cts.CancelAfter(TimeSpan.FromMilliseconds(1)); // the wait blocks; only the token can end it
        Assert.ThrowsAny<OperationCanceledException>(() => signal.Wait(cts.Token));
    }

    /// <summary>
    /// A Set and a cancellation race for the same wait, many times. Each wait ends exactly once (a second
    /// completion would throw from Set or from Cancel), and the Set is never lost: when the cancellation
    /// won, the Set is remembered for the next wait; when the Set won, nothing is left over.
    /// </summary>
    [Fact]
    public async Task A_set_racing_a_cancellation_ends_the_wait_once_and_is_never_lost()
    {
        const int rounds = 2000;
        var signal = new AsyncSignal();
        // Not disposed: a helper thread may still be at a barrier if the test fails.
        var start = new Barrier(3);
        var end = new Barrier(3);
        var cts = new CancellationTokenSource();
        Exception? setError = null, cancelError = null;
        bool stop = false;

        Thread Racer(Action race) => new(() =>
        {
            try
            {
                while (start.SignalAndWait(Fakes.Limit) && !Volatile.Read(ref stop))
                {
                    race();
                    if (!end.SignalAndWait(Fakes.Limit)) return;
                }
            }
            catch (Exception)
            {
                // The test has failed already (a barrier broke); leave quietly.
            }
        }) { IsBackground = true };

        Racer(() =>
        {
            try { signal.Set(); } catch (Exception e) { setError ??= e; }
        }).Start();
        Racer(() =>
        {
            try { Volatile.Read(ref cts).Cancel(); } catch (Exception e) { cancelError ??= e; }
        }).Start();

        int setWon = 0, cancelWon = 0;
        try
        {
            for (int round = 0; round < rounds; round++)
            {
                Volatile.Write(ref cts, new CancellationTokenSource());
                ValueTask wait = signal.WaitAsync(cts.Token);
                Assert.False(wait.IsCompleted);
                Assert.True(start.SignalAndWait(Fakes.Limit));
                Assert.True(end.SignalAndWait(Fakes.Limit));
                Assert.Null(setError);
                Assert.Null(cancelError);

                bool cancelled;
                try
                {
                    await wait.AsTask().WaitAsync(Fakes.Limit);
                    cancelled = false;
                    setWon++;
                }
                catch (OperationCanceledException)
                {
                    cancelled = true;
                    cancelWon++;
                }

                // The Set went somewhere: into the wait, or remembered for the next one; never both, never neither.
                ValueTask next = signal.WaitAsync(CancellationToken.None);
                Assert.Equal(cancelled, next.IsCompletedSuccessfully);
                if (!cancelled) signal.Set();
                await next.AsTask().WaitAsync(Fakes.Limit);
                cts.Dispose();
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            start.SignalAndWait(TimeSpan.FromSeconds(1));
        }
        Assert.Equal(rounds, setWon + cancelWon);
    }

    [Fact]
    public async Task A_timed_wait_ends_false_once_its_time_has_passed_and_a_later_set_is_remembered()
    {
        var signal = new AsyncSignal();
        Assert.False(await signal.WaitAsync(TimeSpan.FromMilliseconds(20)).AsTask().WaitAsync(Fakes.Limit));
        signal.Set();
        ValueTask<bool> next = signal.WaitAsync(TimeSpan.FromMilliseconds(20));
        Assert.True(next.IsCompletedSuccessfully);
        Assert.True(await next);
        // The signal's timer goes on for later waits (it stopped at a tick that found none under way, or ticks still).
        Assert.False(await signal.WaitAsync(TimeSpan.FromMilliseconds(20)).AsTask().WaitAsync(Fakes.Limit));
    }

    [Fact]
    public async Task A_timed_wait_of_no_time_says_at_once_an_infinite_one_waits_for_a_set_and_a_negative_one_is_refused()
    {
        var signal = new AsyncSignal();
        ValueTask<bool> none = signal.WaitAsync(TimeSpan.Zero);
        Assert.True(none.IsCompletedSuccessfully);
        Assert.False(await none);
        signal.Set();
        Assert.True(await signal.WaitAsync(TimeSpan.Zero));

        ValueTask<bool> forever = signal.WaitAsync(Timeout.InfiniteTimeSpan);
        // Longer than the timer's ticks would be: still waiting (the Delay only gives a wrong timeout its chance to show).
        await Task.Delay(50);
        Assert.False(forever.IsCompleted);
        signal.Set();
        Assert.True(await forever.AsTask().WaitAsync(Fakes.Limit));

        Assert.Throws<ArgumentOutOfRangeException>(() => signal.WaitAsync(TimeSpan.FromMilliseconds(-5)));
    }

    [Fact]
    public async Task A_timed_wait_is_ended_by_a_set_long_before_its_time()
    {
        var signal = new AsyncSignal();
        for (int i = 0; i < 3; i++)
        {
            ValueTask<bool> wait = signal.WaitAsync(TimeSpan.FromMinutes(10));
            Assert.False(wait.IsCompleted);
            signal.Set();
            Assert.True(await wait.AsTask().WaitAsync(Fakes.Limit));
        }
    }

    /// <summary>
    /// A Set races the end of a timed wait, many times: each wait ends exactly once (a second completion would throw), and
    /// the Set is never lost — in the wait (true), or remembered for the next one when the time ran out first (false).
    /// </summary>
    [Fact]
    public async Task A_set_racing_a_timed_waits_end_ends_it_once_and_is_never_lost()
    {
        var signal = new AsyncSignal();
        var random = new Random(7);
        int set = 0, timedOut = 0;
        for (int round = 0; round < 400; round++)
        {
            ValueTask<bool> wait = signal.WaitAsync(TimeSpan.FromMilliseconds(1));
            int spins = random.Next(0, 40_000);
            Task racer = Task.Run(() =>
            {
                Thread.SpinWait(spins);
                signal.Set();
            });
            bool result = await wait.AsTask().WaitAsync(Fakes.Limit);
            await racer.WaitAsync(Fakes.Limit);
            ValueTask next = signal.WaitAsync(CancellationToken.None);
            // Set went into the wait (nothing left over) or came after the time ran out (remembered for the next wait).
            Assert.Equal(!result, next.IsCompletedSuccessfully);
            if (result)
            {
                set++;
                signal.Set();
            }
            else
            {
                timedOut++;
            }
            await next.AsTask().WaitAsync(Fakes.Limit);
        }
        Assert.Equal(400, set + timedOut);
    }
}
