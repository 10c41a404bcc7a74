using Millrace.Monitoring;

namespace Millrace.Hosting;

/// <summary>Where the hosted graph's run is, for health checks and the program's own code (a singleton service).</summary>
public sealed class MillraceRun : IRunObserver
{
    private readonly object _lock = new();
    private readonly Dictionary<(string Stream, string Reader), DateTimeOffset> _fullSince = new();
    private RunMonitor? _monitor;
    private Timer? _timer;

    /// <summary>Where the run is.</summary>
    public MillraceRunStatus Status { get; private set; } = MillraceRunStatus.Starting;

    /// <summary>The run's result, once it has ended.</summary>
    public RunResult? Result { get; private set; }

    /// <summary>Why the run could not start (an invalid graph, bad options), if it could not.</summary>
    public Exception? StartFailure { get; private set; }

    /// <summary>The run as it is now (null before it started).</summary>
    public RunSample? Sample
    {
        get
        {
            RunMonitor? monitor;
            lock (_lock) monitor = _monitor;
            return monitor?.Sample();
        }
    }

    /// <summary>The queues full (their next batch does not fit) without a break for at least <paramref name="duration"/>, with since when.</summary>
    public IReadOnlyList<(string Stream, string Reader, DateTimeOffset Since)> QueuesFullFor(TimeSpan duration)
    {
        DateTimeOffset now = DateTimeOffset.UtcNow;
        lock (_lock)
            return _fullSince.Where(q => now - q.Value >= duration).Select(q => (q.Key.Stream, q.Key.Reader, q.Value)).ToList();
    }

    Task IRunObserver.StartAsync(RunMonitor monitor)
    {
        lock (_lock)
        {
            _monitor = monitor;
            _fullSince.Clear();
            Status = MillraceRunStatus.Running;
            _timer?.Dispose();
            _timer = new Timer(_ => Look(), null, TimeSpan.Zero, TimeSpan.FromSeconds(1));
        }
        return Task.CompletedTask;
    }

    Task IRunObserver.StopAsync()
    {
        lock (_lock)
        {
            _timer?.Dispose();
            _timer = null;
        }
        return Task.CompletedTask;
    }

    /// <summary>Notes which queues are full now, and since when.</summary>
    private void Look()
    {
        RunMonitor? monitor;
        lock (_lock) monitor = _monitor;
        if (monitor is null) return;
        RunSample sample;
        try
        {
            sample = monitor.Sample();
        }
        catch (Exception)
        {
            return; // the run is ending (a timer callback must never throw: it would end the program)
        }
        DateTimeOffset now = DateTimeOffset.UtcNow;
        lock (_lock)
        {
            var full = sample.Queues.Where(q => q.IsFull(monitor.BatchSize)).Select(q => (q.Stream, q.Reader)).ToHashSet();
            foreach (var key in _fullSince.Keys.Where(k => !full.Contains(k)).ToList()) _fullSince.Remove(key);
            foreach (var key in full) _fullSince.TryAdd(key, now);
        }
    }

    internal void Ended(RunResult result)
    {
        lock (_lock)
        {
            Result = result;
            _fullSince.Clear();
            Status = result.Outcome switch
            {
                RunOutcome.Completed => MillraceRunStatus.Completed,
                RunOutcome.Halted => MillraceRunStatus.Halted,
                RunOutcome.Stopped => MillraceRunStatus.Stopped,
                _ => MillraceRunStatus.Failed,
            };
        }
    }

    internal void CouldNotStart(Exception e)
    {
        lock (_lock)
        {
            StartFailure = e;
            Status = MillraceRunStatus.Failed;
        }
    }
}

/// <summary>Where a hosted run is.</summary>
public enum MillraceRunStatus
{
    /// <summary>Not yet running (the host is starting, the graph is being built).</summary>
    Starting,
    /// <summary>Running.</summary>
    Running,
    /// <summary>Every source ended and everything drained.</summary>
    Completed,
    /// <summary>A process halted the run.</summary>
    Halted,
    /// <summary>Stopped (the host shut down).</summary>
    Stopped,
    /// <summary>A process failed, or the run could not start.</summary>
    Failed,
}
