using Microsoft.Extensions.Logging;

namespace Millrace.Tests;

/// <summary>
/// Waiting for what happens, never for a duration (docs/testing.md): every wait ends when its
/// condition holds; its deadline only fails the test, naming what did not happen.
/// </summary>
internal static class Waits
{
    /// <summary>The deadline of a wait inside a run: shorter than <see cref="Helpers.RunWithin"/>'s, so that the failure names what was awaited.</summary>
    public const int Seconds = 20;

    /// <summary>Completes when <paramref name="task"/> does; fails, naming <paramref name="what"/>, after <paramref name="seconds"/>.</summary>
    public static async Task For(Task task, string what, int seconds = Seconds)
    {
        try
        {
            await task.WaitAsync(TimeSpan.FromSeconds(seconds));
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"Waited {seconds} s for {what}.");
        }
    }

    /// <summary>The same, blocking (in a synchronous handler).</summary>
    public static void ForBlocking(Task task, string what, int seconds = Seconds)
    {
        if (!task.Wait(TimeSpan.FromSeconds(seconds))) throw new TimeoutException($"Waited {seconds} s for {what}.");
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; fails, naming <paramref name="what"/>, after <paramref name="seconds"/>.</summary>
    public static Task Until(Func<bool> condition, string what, int seconds = Seconds) =>
        Until(() => Task.FromResult(condition()), what, seconds);

    /// <summary>The same for a condition that must await (an HTTP request, a file).</summary>
    public static async Task Until(Func<Task<bool>> condition, string what, int seconds = Seconds)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Waited {seconds} s for {what}.");
            await Task.Delay(20);
        }
    }

    /// <summary>The same, blocking (in a synchronous handler, to wait for another process).</summary>
    public static void UntilBlocking(Func<bool> condition, string what, int seconds = Seconds)
    {
        if (!SpinWait.SpinUntil(condition, TimeSpan.FromSeconds(seconds))) throw new TimeoutException($"Waited {seconds} s for {what}.");
    }

    /// <summary>A task that completes when set, its continuations never run on the thread that sets it (a process's).</summary>
    public static TaskCompletionSource Signal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>What a sink or handler saw, in order, for a test to wait on and check afterwards. Thread-safe.</summary>
internal sealed class Seen<T>
{
    private readonly List<T> _items = new();
    private readonly List<(Func<IReadOnlyList<T>, bool> Condition, TaskCompletionSource Done)> _waiters = new();

    public void Add(T item)
    {
        List<TaskCompletionSource>? met = null;
        lock (_items)
        {
            _items.Add(item);
            for (int i = _waiters.Count - 1; i >= 0; i--)
            {
                if (!_waiters[i].Condition(_items)) continue;
                (met ??= new()).Add(_waiters[i].Done);
                _waiters.RemoveAt(i);
            }
        }
        if (met is not null) foreach (TaskCompletionSource done in met) done.TrySetResult();
    }

    /// <summary>A copy of what was seen so far.</summary>
    public List<T> Items
    {
        get { lock (_items) return _items.ToList(); }
    }

    public int Count
    {
        get { lock (_items) return _items.Count; }
    }

    /// <summary>Completes once what was seen meets <paramref name="condition"/>; fails after <paramref name="seconds"/>, naming <paramref name="what"/> and what was seen.</summary>
    public async Task WaitFor(Func<IReadOnlyList<T>, bool> condition, string what, int seconds = Waits.Seconds)
    {
        TaskCompletionSource done = Waits.Signal();
        lock (_items)
        {
            if (condition(_items)) return;
            _waiters.Add((condition, done));
        }
        try
        {
            await done.Task.WaitAsync(TimeSpan.FromSeconds(seconds));
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"Waited {seconds} s for {what}; seen: {Describe()}.");
        }
    }

    /// <summary>What was seen, for a failure message: how many, and the last 20.</summary>
    public string Describe()
    {
        List<T> items = Items;
        return $"{items.Count} item(s){(items.Count > 20 ? ", the last 20" : "")}: [{string.Join(" | ", items.TakeLast(20))}]";
    }
}

/// <summary>A logger whose messages a test can wait on (a server that says it listens, say).</summary>
internal sealed class SeenLogger : ILogger
{
    public Seen<string> Messages { get; } = new();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Messages.Add(formatter(state, exception));
}
