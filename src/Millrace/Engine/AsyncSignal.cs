using System.Threading.Tasks.Sources;

namespace Millrace.Engine;

/// <summary>
/// One reusable wait for one waiter, completed by another thread. The continuation goes straight
/// to the waiter's synchronization context (its process thread), never through the thread pool.
/// The owner decides, under its own lock, who completes a wait: <see cref="Complete"/> or
/// cancellation, once per wait.
/// </summary>
internal sealed class Waiter : IValueTaskSource, IValueTaskSource<bool>
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

    /// <summary>Under way: begun and not yet ended. Under the owner's lock.</summary>
    public bool Waiting => _waiting;

    /// <summary>Starts a wait that is ended by <see cref="Complete"/> (true) or <see cref="TimeOut"/> (false), never cancelled.</summary>
    public ValueTask<bool> StartTimed() => new(this, _core.Version);

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

    /// <summary>Completes the wait ended by <see cref="TryEnd"/> as timed out (a timed wait's result is false); outside the owner's lock.</summary>
    public void TimeOut() => _core.SetResult(false);

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

    bool IValueTaskSource<bool>.GetResult(short token)
    {
        _registration.Dispose();
        _registration = default;
        return _core.GetResult(token);
    }

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

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

    /// <summary>
    /// Waits until set, or until about <paramref name="timeout"/> has passed (between it and twice it; zero: not at all;
    /// <see cref="Timeout.InfiniteTimeSpan"/>: until set); returns whether it was set. One waiter at a time. Nothing is made per wait: the signal's one timer ticks every <paramref name="timeout"/>
    /// while timed waits go on, and stops at a tick that finds none under way (a loop that waits once per message with a
    /// safety timeout made a timer, a cancellation source and a task each time, and every timer took the timer queue's lock).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative <paramref name="timeout"/> other than <see cref="Timeout.InfiniteTimeSpan"/>.</exception>
    public ValueTask<bool> WaitAsync(TimeSpan timeout)
    {
        bool infinite = timeout == Timeout.InfiniteTimeSpan;
        if (timeout < TimeSpan.Zero && !infinite)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "A wait's timeout is zero or more, or Timeout.InfiniteTimeSpan.");
        // Beyond the timer's range (about 24.8 days): that long.
        long ms = Math.Min((long)Math.Ceiling(timeout.TotalMilliseconds), int.MaxValue - 1);
        lock (_lock)
        {
            if (_set)
            {
                _set = false;
                return new ValueTask<bool>(true);
            }
            if (timeout == TimeSpan.Zero) return new ValueTask<bool>(false);
            _waiter.Begin();
            // Without a timeout: only a Set ends it (a tick finds no timed wait under way).
            _timed = !infinite;
            if (infinite) return _waiter.StartTimed();
            _deadline = Environment.TickCount64 + ms;
            if (_tickMs == 0 || ms < _tickMs)
            {
                _tickMs = ms;
                _timer ??= new Timer(static state => ((AsyncSignal)state!).Tick(), this, Timeout.Infinite, Timeout.Infinite);
                _timer.Change(ms, ms);
            }
        }
        return _waiter.StartTimed();
    }

    private Timer? _timer;

    /// <summary>The timer's period while it ticks; 0 while it is stopped. Under the lock.</summary>
    private long _tickMs;

    /// <summary>When the timed wait under way gives up (<see cref="Environment.TickCount64"/>). Under the lock.</summary>
    private long _deadline;

    /// <summary>The wait under way is a timed one. Under the lock.</summary>
    private bool _timed;

    private void Tick()
    {
        bool timedOut = false;
        lock (_lock)
        {
            if (_waiter.Waiting && _timed)
            {
                if (Environment.TickCount64 >= _deadline) timedOut = _waiter.TryEnd();
            }
            else if (_tickMs != 0)
            {
                // No timed wait under way: the timer stops (and roots nothing) until the next one.
                _tickMs = 0;
                _timer!.Change(Timeout.Infinite, Timeout.Infinite);
            }
        }
        if (timedOut) _waiter.TimeOut();
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
            _timed = false;
        }
        return _waiter.Start(cancellationToken);
    }
}
