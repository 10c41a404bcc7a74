namespace Millrace.Engine;

/// <summary>
/// How a placement hears what happens to the processes of this OS process, to tell the rest of the
/// run (a child tells its coordinator; a broker host tells the other hosts). Set <see cref="RunContext.Reporter"/>.
/// Called from any thread; must not block.
/// </summary>
public interface IRunReporter
{
    /// <summary>A process here became passive, blocked or ended: termination detection, wherever it runs, should take a look.</summary>
    void Poke();

    /// <summary>A process here halted the run.</summary>
    void Halted(string process, string? reason);

    /// <summary>A process here failed.</summary>
    void Failed(ProcessFailure failure);
}

/// <summary>What all processes of one run share: options, stop tokens, and how the run is ending.</summary>
public sealed class RunContext : IDisposable
{
    private readonly object _lock = new();
    private readonly CancellationTokenSource _hard = new();
    private readonly CancellationTokenSource _sources;
    private readonly List<ProcessFailure> _errors = new();
    private readonly TaskCompletionSource _hardStopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private RunOutcome? _outcome;
    private volatile bool _stopRequested;
    private bool _processesEnded;
    private bool _stoppedAtOnce;
    private ProcessRunner[] _runners = Array.Empty<ProcessRunner>();

    internal RunContext(RunOptions options)
    {
        Options = options;
        _sources = CancellationTokenSource.CreateLinkedTokenSource(_hard.Token);
        RunStart.Mark();
    }

    /// <summary>The run's options.</summary>
    public RunOptions Options { get; }

    /// <summary>Cancelled when every process must stop at once (halt, failure, hard stop).</summary>
    public CancellationToken HardToken => _hard.Token;

    internal CancellationToken SourceToken => _sources.Token;
    internal bool StopRequested => _stopRequested;

    /// <summary>Completes when every process must stop at once (halt, failure, hard stop).</summary>
    public Task HardStopped => _hardStopped.Task;

    internal TerminationDetector? Detector { get; set; }

    /// <summary>Cycles were ended by termination detection (here, or, in the broker placement, on the detecting host).</summary>
    public bool TerminationDetected { get; set; }

    /// <summary>The process that halted the run, or null.</summary>
    public string? HaltedBy { get; private set; }

    /// <summary>The reason it gave, if any.</summary>
    public string? HaltReason { get; private set; }

    /// <summary>Termination detection in this OS process, if it runs here, takes a look (a process elsewhere changed state).</summary>
    public void PokeDetector() => Detector?.Poke();

    /// <summary>Completes once termination detection here has ended every cycle of the graph (never, if it does not run here).</summary>
    public Task AllCyclesClosed => Detector?.AllCyclesClosed ?? new TaskCompletionSource().Task;

    /// <summary>Raised once, when a graceful stop is asked (the coordinator tells its children).</summary>
    public event Action? GracefulStopRequested;

    /// <summary>Raised once, when every process must stop at once (the coordinator tells its children).</summary>
    public event Action? HardStopRequested;

    /// <summary>Set in a child OS process: halts, failures and pokes also go to the coordinator.</summary>
    public IRunReporter? Reporter { get; set; }

    /// <summary>A process here became passive, blocked or ended (or a transport holds it up): termination detection, here and through <see cref="Reporter"/>, should take a look.</summary>
    public void Poke()
    {
        Detector?.Poke();
        Reporter?.Poke();
    }

    internal void SetRunners(ProcessRunner[] runners) => _runners = runners;

    /// <summary>The run's errors so far, first first.</summary>
    public IReadOnlyList<ProcessFailure> Errors
    {
        get { lock (_lock) return _errors.ToArray(); }
    }

    /// <summary>How the run ended; Completed unless something else happened first.</summary>
    public RunOutcome Outcome
    {
        get { lock (_lock) return _outcome ?? RunOutcome.Completed; }
    }

    /// <summary>Halts the run: every process stops promptly. <paramref name="fromElsewhere"/>: another part of the run said so (not told again, not logged again).</summary>
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

    /// <summary>Fails the run with <paramref name="failure"/>: every process stops promptly. <paramref name="fromElsewhere"/>: another part of the run said so.</summary>
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
        lock (_lock)
        {
            _outcome ??= RunOutcome.Stopped;
            if (!_processesEnded) _stoppedAtOnce = true;
        }
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

    /// <summary>
    /// Every process of the run has ended (drained, if a graceful stop was asked): a hard stop from now on (the drain timer,
    /// a second Ctrl+C while a placement waits for confirms or children) no longer makes it a stop at once.
    /// </summary>
    public void ProcessesEnded()
    {
        lock (_lock) _processesEnded = true;
    }

    /// <summary>The run was stopped hard before its processes had ended: <see cref="RunResult.StoppedAtOnce"/>.</summary>
    internal bool StoppedAtOnce
    {
        get { lock (_lock) return _stoppedAtOnce && _outcome == RunOutcome.Stopped; }
    }

    /// <summary>Releases timers once every process has ended; the outcome stays as it is.</summary>
    void IDisposable.Dispose()
    {
        _hard.Cancel();
        _sources.Dispose();
        _hard.Dispose();
    }
}
