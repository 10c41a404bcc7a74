namespace Millrace.Engine;

/// <summary>
/// A thread of its own for one process, with a synchronization context that brings every
/// continuation back to it. A handler that blocks (Thread.Sleep, synchronous I/O) therefore holds
/// only its own process, never the thread pool the other processes need.
/// </summary>
internal sealed class ProcessThread : SynchronizationContext
{
    private readonly object _lock = new();
    private readonly Queue<(SendOrPostCallback Callback, object? State)> _queue = new();
    private bool _done;
    private Action? _idle;
    private bool _idleRan;

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
            if (_queue.Count == 1) Monitor.Pulse(_lock);
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
                    while (_queue.Count == 0 && !_done) Monitor.Wait(_lock);
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
