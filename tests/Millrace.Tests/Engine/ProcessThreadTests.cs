using System.Collections.Concurrent;
using Millrace.Engine;

namespace Millrace.Tests.Engine;

/// <summary>
/// A process's own thread and lent work: the thread that delivers a process's input runs the work it wakes, after the
/// delivery and while the own thread sleeps; never two runners at once, nothing lost, nothing out of order; a process
/// whose runs take long goes back to its own thread for good.
/// </summary>
public class ProcessThreadTests
{
    /// <summary>
    /// A process on its own thread that awaits one signal after another (each continuation comes back through its
    /// synchronization context, as the runner's do), recording which thread ran each step.
    /// </summary>
    private sealed class Waiting : IDisposable
    {
        private readonly BlockingCollection<TaskCompletionSource> _signals = new();
        public readonly ConcurrentQueue<(int Step, int Thread, bool OnContext)> Steps = new();
        public ProcessThread Context = null!;
        public int OwnThread;
        public readonly Task Finished;
        private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public Action<int>? Work;

        public Waiting(int steps)
        {
            for (int i = 0; i < steps; i++) _signals.Add(new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            TaskCompletionSource[] all = _signals.ToArray();
            Signals = all;
            Finished = ProcessThread.Start("test", async () =>
            {
                Context = ProcessThread.OfCurrentThread!;
                OwnThread = Environment.CurrentManagedThreadId;
                _ready.SetResult();
                for (int i = 0; i < all.Length; i++)
                {
                    await all[i].Task;
                    Steps.Enqueue((i, Environment.CurrentManagedThreadId, SynchronizationContext.Current == Context));
                    Work?.Invoke(i);
                }
            });
        }

        public TaskCompletionSource[] Signals { get; }

        public async Task SleepingAsync()
        {
            await _ready.Task.WaitAsync(Fakes.Limit);
            await Waits.Until(() => Context.Sleeping, "the process thread to wait for work");
        }

        public void Dispose()
        {
            foreach (var s in Signals) s.TrySetResult();
        }
    }

    [Fact]
    public async Task Work_a_delivery_wakes_runs_on_the_delivering_thread_after_the_delivery_while_the_own_thread_sleeps()
    {
        using var process = new Waiting(3);
        await process.SleepingAsync();
        int deliverer = 0;
        bool ranInsideDelivery = false;
        await Task.Factory.StartNew(() =>
        {
            deliverer = Environment.CurrentManagedThreadId;
            ProcessThread.DeliverOn(process.Context, process, p =>
            {
                p.Signals[0].SetResult();
                ranInsideDelivery = !p.Steps.IsEmpty; // the delivery is done before the work runs
            });
        }, TaskCreationOptions.LongRunning).WaitAsync(Fakes.Limit);

        var step = Assert.Single(process.Steps);
        Assert.False(ranInsideDelivery);
        Assert.Equal((0, deliverer, true), step);
        Assert.NotEqual(process.OwnThread, deliverer);
        Assert.Equal(1, process.Context.LentRuns);

        // A signal from a thread that delivers nothing wakes the own thread, as ever.
        await process.SleepingAsync();
        await Task.Factory.StartNew(() => process.Signals[1].SetResult(), TaskCreationOptions.LongRunning);
        await Waits.Until(() => process.Steps.Count == 2, "the second step");
        Assert.Equal(process.OwnThread, process.Steps.ToArray()[1].Thread);

        // A thread that delivers another process's input does not run this one's work.
        await process.SleepingAsync();
        using var other = new Waiting(1);
        await other.SleepingAsync();
        await Task.Factory.StartNew(() => ProcessThread.DeliverOn(other.Context, process, p => p.Signals[2].SetResult()), TaskCreationOptions.LongRunning);
        await process.Finished.WaitAsync(Fakes.Limit);
        Assert.Equal(process.OwnThread, process.Steps.ToArray()[2].Thread);
        Assert.Equal(1, process.Context.LentRuns);
    }

    [Fact]
    public async Task A_process_whose_lent_runs_take_long_goes_back_to_its_own_thread_for_good()
    {
        int steps = ProcessThread.SlowLentRuns + 2;
        using var process = new Waiting(steps);
        process.Work = i =>
        {
            // A handler that blocks (a database call, say) in its first runs.
            if (i < ProcessThread.SlowLentRuns) Thread.Sleep(ProcessThread.LentRunLimit + TimeSpan.FromMilliseconds(20));
        };
        for (int i = 0; i < steps; i++)
        {
            await process.SleepingAsync();
            await Task.Factory.StartNew(() => ProcessThread.DeliverOn(process.Context, (process, i), s => s.process.Signals[s.i].SetResult()),
                TaskCreationOptions.LongRunning).WaitAsync(Fakes.Limit);
            await Waits.Until(() => process.Steps.Count == i + 1, $"step {i}");
        }
        await process.Finished.WaitAsync(Fakes.Limit);
        var ran = process.Steps.ToArray();
        // The slow runs were lent (on the delivering threads), and then never again.
        Assert.All(ran[..ProcessThread.SlowLentRuns], s => Assert.NotEqual(process.OwnThread, s.Thread));
        Assert.All(ran[ProcessThread.SlowLentRuns..], s => Assert.Equal(process.OwnThread, s.Thread));
        Assert.True(process.Context.LendingEnded);
        Assert.Equal(ProcessThread.SlowLentRuns, process.Context.LentRuns);
    }

    /// <summary>
    /// Posts from delivering threads and from others, at random moments: every piece of work runs once, one at a time,
    /// in the order each thread posted it, always with the process's context current.
    /// </summary>
    [Fact]
    public async Task Lent_and_own_runs_never_overlap_and_keep_each_posters_order()
    {
        const int Posters = 4, Each = 10000;
        ProcessThread context = null!;
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task finished = ProcessThread.Start("test", async () =>
        {
            context = ProcessThread.OfCurrentThread!;
            ready.SetResult();
            await done.Task;
        });
        await ready.Task.WaitAsync(Fakes.Limit);
        int running = 0, overlaps = 0, offContext = 0, ran = 0;
        var last = new int[Posters];
        var outOfOrder = 0;
        Array.Fill(last, -1);
        var posters = Enumerable.Range(0, Posters).Select(poster => Task.Factory.StartNew(() =>
        {
            var random = new Random(poster);
            for (int i = 0; i < Each; i++)
            {
                int k = i;
                SendOrPostCallback work = _ =>
                {
                    if (Interlocked.Increment(ref running) != 1) Interlocked.Increment(ref overlaps);
                    if (SynchronizationContext.Current != context) Interlocked.Increment(ref offContext);
                    if (last[poster] != k - 1) Interlocked.Increment(ref outOfOrder);
                    last[poster] = k;
                    if (random.Next(50) == 0) Thread.SpinWait(2000);
                    Interlocked.Increment(ref ran);
                    Interlocked.Decrement(ref running);
                };
                // Even posters deliver (their posts may be lent to them), odd ones are timers and I/O completions.
                if (poster % 2 == 0) ProcessThread.DeliverOn(context, work, w => context.Post(w, null));
                else context.Post(work, null);
                if (random.Next(20) == 0) Thread.Yield();
            }
        }, TaskCreationOptions.LongRunning)).ToArray();
        await Task.WhenAll(posters).WaitAsync(Fakes.Limit);
        await Waits.Until(() => Volatile.Read(ref ran) == Posters * Each, "every piece of work to run");
        done.SetResult();
        await finished.WaitAsync(Fakes.Limit);
        Assert.Equal((0, 0, 0), (overlaps, offContext, outOfOrder));
        Assert.True(context.LentRuns > 0, "no work was lent");
    }
}
