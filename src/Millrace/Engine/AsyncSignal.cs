using System.Threading.Tasks.Sources;

namespace Millrace.Engine;

/// <summary>
/// One reusable wait for one waiter, completed by another thread. The continuation goes straight
/// to the waiter's synchronization context (its process thread), never through the thread pool.
/// The owner decides, under its own lock, who completes a wait: <see cref="Complete"/> or
/// cancellation, once per wait.
/// </summary>
internal sealed class Waiter : IValueTaskSource
{
    private readonly object _lock;
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private CancellationTokenRegistration _registration;
    private bool _waiting;

    /// <param name="ownerLock">The lock under which the owner checks its condition and calls <see cref="Begin"/>.</param>
    public Waiter(object ownerLock) => _lock = ownerLock;

    /// <summary>Starts a wait; call under the owner's lock, then <see cref="Start"/> outside it.</summary>
    public void Begin()
    {
        System.Diagnostics.Debug.Assert(Monitor.IsEntered(_lock), "Waiter.Begin: call under the owner's lock.");
        System.Diagnostics.Debug.Assert(!_waiting, "Waiter.Begin: one wait at a time (a second would strand the first).");
        _core.Reset();
        _waiting = true;
    }

    public ValueTask Start(CancellationToken cancellationToken)
    {
        if (cancellationToken.CanBeCanceled)
            _registration = cancellationToken.UnsafeRegister(static (state, token) => ((Waiter)state!).Cancel(token), this);
        return new ValueTask(this, _core.Version);
    }

    /// <summary>Ends the wait, if one is under way; call under the owner's lock. Returns whether it did.</summary>
    public bool TryEnd()
    {
        System.Diagnostics.Debug.Assert(Monitor.IsEntered(_lock), "Waiter.TryEnd: call under the owner's lock.");
        if (!_waiting) return false;
        _waiting = false;
        return true;
    }

    /// <summary>Completes the wait ended by <see cref="TryEnd"/>; call outside the owner's lock.</summary>
    public void Complete() => _core.SetResult(true);

    private void Cancel(CancellationToken token)
    {
        bool ended;
        lock (_lock) ended = TryEnd();
        if (ended) _core.SetException(new OperationCanceledException(token));
    }

    void IValueTaskSource.GetResult(short token)
    {
        _registration.Dispose();
        _registration = default;
        _core.GetResult(token);
    }

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}

/// <summary>
/// An auto-reset event with one waiter: a Set before the wait is remembered, never lost; several
/// Sets before one wait wake it once. For the loops of a placement (a publisher, an acknowledger).
/// </summary>
public sealed class AsyncSignal
{
    private readonly object _lock = new();
    private readonly Waiter _waiter;
    private bool _set;

    /// <summary>A signal not yet set.</summary>
    public AsyncSignal() => _waiter = new Waiter(_lock);

    /// <summary>Wakes the waiter, or the next wait if none is under way.</summary>
    public void Set()
    {
        bool wake;
        lock (_lock)
        {
            wake = _waiter.TryEnd();
            if (!wake)
            {
                _set = true;
                Monitor.Pulse(_lock);
            }
        }
        if (wake) _waiter.Complete();
    }

    /// <summary>Blocks the calling thread until set (for threads that may block: synchronous sources).</summary>
    public void Wait(CancellationToken cancellationToken)
    {
        using CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(
            static state => { lock (state!) Monitor.PulseAll(state); }, _lock);
        lock (_lock)
        {
            while (!_set)
            {
                cancellationToken.ThrowIfCancellationRequested();
                Monitor.Wait(_lock);
            }
            _set = false;
        }
    }

    /// <summary>Waits until set, or until <paramref name="timeout"/> has passed; returns whether it was set.</summary>
    public async Task<bool> WaitAsync(TimeSpan timeout)
    {
        using var expiry = new CancellationTokenSource(timeout);
        try
        {
            await WaitAsync(expiry.Token);
            return true;
        }
        catch (OperationCanceledException) when (expiry.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>Waits until set; one waiter at a time.</summary>
    public ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (_set)
            {
                _set = false;
                return ValueTask.CompletedTask;
            }
            _waiter.Begin();
        }
        return _waiter.Start(cancellationToken);
    }
}
