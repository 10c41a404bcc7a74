namespace Millrace.Engine;

/// <summary>
/// A thread of its own for one process, with a synchronization context that brings every
/// continuation back to it. A handler that blocks (Thread.Sleep, synchronous I/O) therefore holds
/// only its own process, never the thread pool the other processes need.
/// <para>
/// Lent work: a transport's thread that delivers the process's input (the broker placement's consumer, see
/// <see cref="DeliverOn"/>) runs what it posts itself while the process's own thread sleeps with nothing to do, one
/// runner at a time as ever: the process's work then follows its input on the same thread, without waking another
/// (one wake-up and one burst of thread-pool work less per message). That pays where a handler is quick, and only
/// there: a lent run stops once it has taken <see cref="LentRunLimit"/> (the own thread goes on with what is left), and
/// after <see cref="SlowLentRuns"/> such runs within <see cref="SlowLentRunsWithin"/> (a handler that blocks, on a
/// database call say, even now and then, or works long) lending ends for the process: from then on its own thread runs
/// everything, and no transport's thread is held for it again. (A slow run now and then, minutes apart, is the machine.)
/// A wait for room inside a handler (<see cref="EndLendingIfLent"/>) ends it too, and what a lent run throws is thrown on
/// the own thread, as it would have been there.
/// </para>
/// </summary>
internal sealed class ProcessThread : SynchronizationContext
{
    /// <summary>A lent run stops after this long (the process's own thread takes the rest).</summary>
    public static readonly TimeSpan LentRunLimit = TimeSpan.FromMilliseconds(2);

    /// <summary>After this many lent runs that reached <see cref="LentRunLimit"/>, within <see cref="SlowLentRunsWithin"/>, lending ends.</summary>
    public const int SlowLentRuns = 3;

    /// <summary>The span in which <see cref="SlowLentRuns"/> slow lent runs end lending.</summary>
    public static readonly TimeSpan SlowLentRunsWithin = TimeSpan.FromSeconds(60);

    private static readonly long LentRunLimitTicks = (long)(LentRunLimit.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);

    /// <summary>The process thread whose input this thread delivers now, whose work it may run (<see cref="DeliverOn"/>).</summary>
    [ThreadStatic] private static ProcessThread? t_delivering;

    /// <summary>The process thread whose work this thread claimed while it delivered, to run once the delivery is done.</summary>
    [ThreadStatic] private static ProcessThread? t_claimed;

    private readonly object _lock = new();
    private readonly Queue<(SendOrPostCallback Callback, object? State)> _queue = new();
    private bool _done;
    private Action? _idle;
    private bool _idleRan;
    private bool _sleeping;  // the own thread waits for work (under _lock)
    private bool _lent;      // another thread runs the work now (under _lock)
    private volatile bool _noLending;
    private readonly long[] _slowLentRunTimes = new long[SlowLentRuns]; // when the last slow lent runs ended (Environment.TickCount64)
    private int _slowLentRuns;
    private System.Runtime.ExceptionServices.ExceptionDispatchInfo? _lentFailure; // thrown by a lent run, for the own thread

    /// <summary>Whether the process's own thread waits for work now (tests).</summary>
    internal bool Sleeping
    {
        get
        {
            lock (_lock) return _sleeping;
        }
    }

    /// <summary>How many lent runs there were (tests, diagnostics).</summary>
    public long LentRuns { get; private set; }

    /// <summary>Whether lending ended for this process (<see cref="SlowLentRuns"/> lent runs reached <see cref="LentRunLimit"/>).</summary>
    public bool LendingEnded => _noLending;

    /// <summary>
    /// Runs <paramref name="deliver"/> (which hands input to the process of <paramref name="thread"/>) on the calling
    /// thread, which may run the work that posts to <paramref name="thread"/> while its own thread sleeps. For a
    /// transport's thread that is not a process's own and holds no lock: the process's handlers may run inside.
    /// </summary>
    public static void DeliverOn<TState>(ProcessThread? thread, TState state, Action<TState> deliver)
    {
        if (thread is null || Current is ProcessThread || t_delivering is not null)
        {
            // Never one process's work inside another's.
            deliver(state);
            return;
        }
        t_delivering = thread;
        try
        {
            deliver(state);
        }
        finally
        {
            t_delivering = null;
            ProcessThread? claimed = t_claimed;
            t_claimed = null;
            // Run after the delivery, not inside it: the transport may hold locks of its own while it delivers.
            claimed?.RunLent();
        }
    }

    private ProcessThread()
    {
    }

    /// <summary>Runs <paramref name="body"/> on a new thread until the task it returns completes.</summary>
    public static Task Start(string name, Func<Task> body)
    {
        var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            var context = new ProcessThread();
            SetSynchronizationContext(context);
            Task task;
            try
            {
                task = body();
            }
            catch (Exception e)
            {
                finished.TrySetException(e);
                return;
            }
            task.ContinueWith(_ => context.Complete(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            context.RunUntilComplete();
            if (task.IsFaulted) finished.TrySetException(task.Exception!.InnerExceptions);
            else if (task.IsCanceled) finished.TrySetCanceled();
            else finished.TrySetResult();
        })
        {
            IsBackground = true,
            Name = "millrace " + name,
        };
        thread.Start();
        return finished.Task;
    }

    /// <summary>The process thread the caller runs on, if any.</summary>
    public static ProcessThread? OfCurrentThread => SynchronizationContext.Current as ProcessThread;

    /// <summary>
    /// Run on this thread once each time it runs out of work (every continuation posted to it has run,
    /// so code that comes back to this thread is suspended); null for nothing. It must not throw.
    /// </summary>
    public Action? Idle
    {
        set
        {
            lock (_lock)
            {
                _idle = value;
                _idleRan = false;
            }
        }
    }

    public override void Post(SendOrPostCallback d, object? state)
    {
        lock (_lock)
        {
            _queue.Enqueue((d, state));
            if (_lent) return; // the thread that has the work takes it
            if (_sleeping && ReferenceEquals(t_delivering, this) && t_claimed is null && !_noLending && _idle is null && !_done)
            {
                // Claimed: the delivering thread runs it once its delivery is done (DeliverOn); this one sleeps on.
                _lent = true;
                t_claimed = this;
            }
            else if (_queue.Count == 1)
            {
                Monitor.Pulse(_lock);
            }
        }
    }

    /// <summary>
    /// Lending ends for good if the calling thread runs this process's work lent (a handler about to wait for room, which may
    /// take long: this wait still holds the transport's thread, none after it will). The lent run ends after the current work.
    /// </summary>
    public void EndLendingIfLent()
    {
        if (Current == this && _lent) _noLending = true;
    }

    /// <summary>Runs the posted work on the calling thread until there is none, then gives the process back to its own thread.</summary>
    private void RunLent()
    {
        SynchronizationContext? previous = Current;
        SetSynchronizationContext(this);
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        LentRuns++;
        try
        {
            while (true)
            {
                (SendOrPostCallback Callback, object? State) work;
                lock (_lock)
                {
                    if (_queue.Count == 0 || _done || _noLending)
                    {
                        _lent = false;
                        if (_queue.Count > 0 || _done) Monitor.Pulse(_lock);
                        return;
                    }
                    work = _queue.Dequeue();
                }
                try
                {
                    work.Callback(work.State);
                }
                catch (Exception e)
                {
                    // Thrown on the own thread, as it would have been there (never into the transport, which would swallow it).
                    lock (_lock)
                    {
                        _lentFailure = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
                        _noLending = true;
                        _lent = false;
                        Monitor.Pulse(_lock);
                    }
                    return;
                }
                if (System.Diagnostics.Stopwatch.GetTimestamp() - start > LentRunLimitTicks || _noLending)
                {
                    long now = Environment.TickCount64;
                    _slowLentRunTimes[_slowLentRuns++ % SlowLentRuns] = now;
                    // The oldest of the last SlowLentRuns slow runs, recent enough: the handler, not the machine.
                    if (_slowLentRuns >= SlowLentRuns && now - _slowLentRunTimes[_slowLentRuns % SlowLentRuns] <= (long)SlowLentRunsWithin.TotalMilliseconds)
                        _noLending = true;
                    lock (_lock)
                    {
                        _lent = false;
                        if (_queue.Count > 0 || _done) Monitor.Pulse(_lock);
                    }
                    return;
                }
            }
        }
        finally
        {
            SetSynchronizationContext(previous);
        }
    }

    public override void Send(SendOrPostCallback d, object? state) =>
        throw new NotSupportedException("A Millrace process thread does not take synchronous Send calls.");

    public override SynchronizationContext CreateCopy() => this;

    private void Complete()
    {
        lock (_lock)
        {
            _done = true;
            Monitor.Pulse(_lock);
        }
    }

    private void RunUntilComplete()
    {
        while (true)
        {
            (SendOrPostCallback Callback, object? State) work;
            Action? idle = null;
            lock (_lock)
            {
                if (_queue.Count == 0 && !_done && _idle is not null && !_idleRan)
                {
                    idle = _idle;
                    _idleRan = true;
                    work = default;
                }
                else
                {
                    // Lent: another thread runs the work, this one waits until it is given back.
                    while (((_queue.Count == 0 && !_done) || _lent) && _lentFailure is null)
                    {
                        _sleeping = true;
                        Monitor.Wait(_lock);
                        _sleeping = false;
                    }
                    if (_lentFailure is { } failure)
                    {
                        _lentFailure = null;
                        failure.Throw();
                    }
                    if (_queue.Count == 0) return;
                    work = _queue.Dequeue();
                    _idleRan = false;
                }
            }
            if (idle is not null) idle();
            else work.Callback!(work.State);
        }
    }
}
