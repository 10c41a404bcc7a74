namespace Millrace.Engine;

/// <summary>How a child OS process tells its coordinator what happened to its processes.</summary>
internal interface IRunReporter
{
    void Poke();
    void Halted(string process, string? reason);
    void Failed(ProcessFailure failure);
}

/// <summary>What all processes of one run share: options, stop tokens, and how the run is ending.</summary>
internal sealed class RunContext : IDisposable
{
    private readonly object _lock = new();
    private readonly CancellationTokenSource _hard = new();
    private readonly CancellationTokenSource _sources;
    private readonly List<ProcessFailure> _errors = new();
    private readonly TaskCompletionSource _hardStopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private RunOutcome? _outcome;
    private volatile bool _stopRequested;
    private ProcessRunner[] _runners = Array.Empty<ProcessRunner>();

    public RunContext(RunOptions options)
    {
        Options = options;
        _sources = CancellationTokenSource.CreateLinkedTokenSource(_hard.Token);
    }

    public RunOptions Options { get; }
    public CancellationToken HardToken => _hard.Token;
    public CancellationToken SourceToken => _sources.Token;
    public bool StopRequested => _stopRequested;
    public Task HardStopped => _hardStopped.Task;
    public TerminationDetector? Detector { get; set; }
    public bool TerminationDetected { get; set; }
    public string? HaltedBy { get; private set; }
    public string? HaltReason { get; private set; }

    /// <summary>Raised once, when a graceful stop is asked (the coordinator tells its children).</summary>
    public event Action? GracefulStopRequested;

    /// <summary>Raised once, when every process must stop at once (the coordinator tells its children).</summary>
    public event Action? HardStopRequested;

    /// <summary>Set in a child OS process: halts, failures and pokes also go to the coordinator.</summary>
    public IRunReporter? Reporter { get; set; }

    /// <summary>A process became passive, blocked or ended: termination detection should take a look.</summary>
    public void Poke()
    {
        Detector?.Poke();
        Reporter?.Poke();
    }

    public void SetRunners(ProcessRunner[] runners) => _runners = runners;

    public IReadOnlyList<ProcessFailure> Errors
    {
        get { lock (_lock) return _errors.ToArray(); }
    }

    /// <summary>How the run ended; Completed unless something else happened first.</summary>
    public RunOutcome Outcome
    {
        get { lock (_lock) return _outcome ?? RunOutcome.Completed; }
    }

    public void Halt(string process, string? reason, bool fromElsewhere = false)
    {
        lock (_lock)
        {
            if (_outcome is RunOutcome.Halted or RunOutcome.Failed) return;
            _outcome = RunOutcome.Halted;
            HaltedBy = process;
            HaltReason = reason;
        }
        // Each host of the broker placement logs what happened on it (a central log gets each event once).
        if (!fromElsewhere && Options.Logger is { } logger) Log.Halted(logger, process, reason ?? "no reason given");
        if (!fromElsewhere) Reporter?.Halted(process, reason);
        StopAll();
    }

    public void Fail(ProcessFailure failure, bool fromElsewhere = false)
    {
        lock (_lock)
        {
            _errors.Add(failure);
            // A failure wins over a halt: a run that reports errors never reports success.
            _outcome = RunOutcome.Failed;
        }
        if (!fromElsewhere && Options.Logger is { } logger) Log.ProcessFailed(logger, failure.Process, failure.Stream, failure.ItemIndex, failure.Message, failure.Exception);
        if (!fromElsewhere) Reporter?.Failed(failure);
        StopAll();
    }

    /// <summary>Graceful: sources stop producing; the rest drains. A hard stop follows after the drain timeout.</summary>
    public void RequestStop()
    {
        lock (_lock)
        {
            if (_stopRequested) return;
            _stopRequested = true;
            _outcome ??= RunOutcome.Stopped;
        }
        if (Options.Logger is { } logger) Log.GracefulStop(logger, Options.DrainTimeout.TotalSeconds);
        try
        {
            _sources.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
        GracefulStopRequested?.Invoke();
        _ = Task.Delay(Options.DrainTimeout, HardToken).ContinueWith(
            t => { if (!t.IsCanceled) StopAll(); }, TaskScheduler.Default);
    }

    /// <summary>Hard: every process leaves as soon as it can.</summary>
    public void StopAll()
    {
        lock (_lock) _outcome ??= RunOutcome.Stopped;
        foreach (ProcessRunner runner in _runners) runner.Stop();
        try
        {
            _hard.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
        if (_hardStopped.TrySetResult())
        {
            if (Options.Logger is { } logger) Log.HardStop(logger, Outcome);
            HardStopRequested?.Invoke();
        }
    }

    /// <summary>Releases timers once every process has ended; the outcome stays as it is.</summary>
    public void Dispose()
    {
        _hard.Cancel();
        _sources.Dispose();
        _hard.Dispose();
    }
}
