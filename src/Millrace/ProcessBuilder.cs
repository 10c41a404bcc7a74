
namespace Millrace;

/// <summary>
/// Declares one process inside <see cref="Graph.Process(string, Action{ProcessBuilder})"/>, and is its
/// handle while it runs (<see cref="Halt"/>, <see cref="CancellationToken"/>).
/// </summary>
/// <remarks>
/// Handlers of one process never run concurrently: each input is handled in order, one item at a
/// time, and inputs are interleaved in arrival order. State kept in local variables of the
/// configure action therefore needs no locks.
/// </remarks>
public sealed class ProcessBuilder
{
    private readonly List<InputSpec> _inputs = new();
    private readonly List<IOutputPort> _outputs = new();
    private ProcessRunner? _runner;
    private bool _sealed;

    internal ProcessBuilder(string name) => Name = name;

    /// <summary>The process's name.</summary>
    public string Name { get; }

    internal IReadOnlyList<InputSpec> Inputs => _inputs;
    internal List<IOutputPort> Outputs => _outputs; // a List: its foreach boxes no enumerator (it runs once per batch)
    internal Func<CancellationToken, ValueTask>? Start { get; private set; }
    internal Func<CancellationToken, ValueTask>? Completed { get; private set; }
    internal SourceBody? Source { get; private set; }

    /// <summary>Declares that this process writes <paramref name="stream"/>; returns the writer to emit with.</summary>
    /// <remarks>Asking twice for the same stream returns the same writer.</remarks>
    public Output<T> Output<T>(Stream<T> stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ThrowIfSealed();
        foreach (IOutputPort existing in _outputs)
        {
            if (existing.Stream.Name == stream.Name)
            {
                return existing as Output<T> ?? throw new ArgumentException(
                    $"Process '{Name}' already writes stream '{stream.Name}' as {Names.Of(existing.Stream.ItemType)}, not {Names.Of(typeof(T))}.",
                    nameof(stream));
            }
        }
        var output = new Output<T>(stream, Name);
        _outputs.Add(output);
        return output;
    }

    /// <summary>What this process does when a handler throws on an item (<see cref="ErrorPolicy"/>; <see cref="ErrorPolicy.Stop"/> by default).</summary>
    internal ErrorPolicy Errors { get; set; } = ErrorPolicy.Stop;

    /// <summary>Where its dead letters go, when its policy sends them somewhere.</summary>
    internal Output<DeadLetter>? DeadLetters { get; private set; }

    /// <summary>
    /// Sets what happens when a handler of this process throws on an item: <see cref="ErrorPolicy.Stop"/> (the default: the run
    /// fails), <see cref="ErrorPolicy.Skip"/>, <see cref="ErrorPolicy.DeadLetter"/>, or <see cref="ErrorPolicy.Retry"/> then one of
    /// those. The same in every placement. Failures in start and completion actions always stop the run.
    /// </summary>
    public void OnError(ErrorPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ThrowIfSealed();
        if (policy.MaxFailures < 0 || policy.Window <= TimeSpan.Zero)
            throw new ArgumentException($"Process '{Name}': an error policy needs MaxFailures of 0 or more and a positive Window; got {policy.MaxFailures} and {policy.Window}.", nameof(policy));
        if (policy.Final is { Kind: ErrorPolicy.Kinds.DeadLetter, Target: null } && DeadLetters is null)
            throw new ArgumentException($"Process '{Name}': the policy '{policy}' names no stream for its dead letters; use ErrorPolicy.DeadLetter(graph.DeadLetters).", nameof(policy));
        Errors = policy;
        // Writing dead letters makes this process a writer of their stream (once).
        if (policy.Final.Target is { } target && DeadLetters is null) DeadLetters = Output(target);
    }

    /// <summary>Declares that this process reads <paramref name="input"/> and calls <paramref name="handler"/> for each item, in order.</summary>
    public void On<T>(Stream<T> input, Action<T> handler)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(handler);
        AddInput(new InputSpec<T>(input, handler, null));
    }

    /// <summary>
    /// Declares that this process reads <paramref name="input"/> and calls and awaits <paramref name="handler"/>
    /// for each item, in order. The next item is handled once the previous one's task has completed.
    /// </summary>
    public void On<T>(Stream<T> input, Func<T, CancellationToken, ValueTask> handler)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(handler);
        AddInput(new InputSpec<T>(input, null, handler));
    }

    /// <summary>An action run once when the process starts, before any input is handled; it may emit.</summary>
    public void OnStart(Action start)
    {
        ArgumentNullException.ThrowIfNull(start);
        SetStart(_ => { start(); return ValueTask.CompletedTask; });
    }

    /// <summary>An asynchronous action run once when the process starts, before any input is handled; it may emit.</summary>
    public void OnStart(Func<CancellationToken, ValueTask> start)
    {
        ArgumentNullException.ThrowIfNull(start);
        SetStart(start);
    }

    /// <summary>
    /// An action run once when every input of the process has ended (not the first one), before
    /// its outputs end; it may emit (a summary, say). It runs at the end of a completed run and after a graceful stop's
    /// drain; never after a halt, a failure or a stop at once (<see cref="RunResult.StoppedAtOnce"/>), when the process
    /// has not seen all its input.
    /// </summary>
    public void OnCompleted(Action completed)
    {
        ArgumentNullException.ThrowIfNull(completed);
        SetCompleted(_ => { completed(); return ValueTask.CompletedTask; });
    }

    /// <summary>An asynchronous action run once when every input of the process has ended, before its outputs end.</summary>
    public void OnCompleted(Func<CancellationToken, ValueTask> completed)
    {
        ArgumentNullException.ThrowIfNull(completed);
        SetCompleted(completed);
    }

    /// <summary>
    /// Halts the whole application: every process stops promptly (items still in flight are not
    /// handled), and the run result names this process in <see cref="RunResult.HaltedBy"/>.
    /// </summary>
    /// <remarks>Only valid while the process runs. The handler that calls it should return soon after.</remarks>
    public void Halt(string? reason = null)
    {
        if (_runner is null)
            throw new InvalidOperationException($"Process '{Name}' can only halt while it runs (from its start action, a handler or its completion action).");
        _runner.Run.Halt(Name, reason);
    }

    /// <summary>
    /// Cancelled when this process must stop: on halt, failure or a hard stop; for a process
    /// without inputs (a source) also when a graceful stop (Ctrl+C) asks sources to stop producing.
    /// </summary>
    public CancellationToken CancellationToken => _runner?.UserToken ?? CancellationToken.None;

    /// <summary>
    /// Whether the run was asked to stop (gracefully or not): a process whose inputs ended because of it has not seen
    /// all of its data (its completion action may want to leave things for a resumed run, as <c>ToTable</c> does with checkpoints on).
    /// </summary>
    public bool StopRequested => _runner is { } runner && (runner.Run.StopRequested || runner.Stopping);

    /// <summary>
    /// Runs <paramref name="tick"/> every <paramref name="interval"/> while the process runs, on the
    /// process's own thread, between items (never while a handler runs), so it may read and change
    /// the process's state and emit. For time-based work: flushing what has waited too long,
    /// processing-time windows, heartbeats. Declare it in the start action or a handler, or here
    /// while configuring (it starts when the process starts).
    /// </summary>
    public void Every(TimeSpan interval, Action tick)
    {
        ArgumentNullException.ThrowIfNull(tick);
        if (interval <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(interval), interval, "The interval must be positive.");
        if (_runner is { Started: true } runner) runner.Every(interval, tick);
        else _timers.Add((interval, tick));
    }

    internal IReadOnlyList<(TimeSpan Interval, Action Tick)> Timers => _timers;

    private readonly List<(TimeSpan Interval, Action Tick)> _timers = new();

    /// <summary>
    /// Skips an item this process has already handled when it is delivered again. Only the broker
    /// placement delivers an item twice (at-least-once: after a writer restarts or a connection is
    /// lost, what was not yet acknowledged comes again, with the same item ids); the other placements
    /// deliver each item exactly once, and there this costs nothing. Use it in sinks whose result must
    /// be exact, such as a sum or a count.
    /// </summary>
    /// <param name="window">How many of the latest item ids to remember (memory: about 24 bytes each).
    /// A repeat arrives soon after the original (within what writers had not yet confirmed), so the
    /// default of 1,048,576 is ample unless items are very large batches of their own.</param>
    public void SkipRepeats(int window = 1 << 20)
    {
        ThrowIfSealed();
        if (window < 1) throw new ArgumentOutOfRangeException(nameof(window), window, "The window must hold at least one id.");
        RepeatWindow = window;
    }

    internal int RepeatWindow { get; private set; }

    /// <summary>
    /// Runs <paramref name="release"/> when the process ends, however it ends (completed, halted,
    /// failed, stopped), after its completion action if that ran: a sink closes a file or a
    /// connection here. Several may be declared; each runs once, in order, on the process's thread.
    /// </summary>
    public void Finally(Action release)
    {
        ArgumentNullException.ThrowIfNull(release);
        _ends.Add(release);
    }

    /// <summary>
    /// Runs <paramref name="action"/> after each batch of input items is handled (the items that
    /// arrived together), before what they produced leaves the process and, in the broker placement,
    /// before their message is acknowledged: an exact sink commits a transaction here, so that one
    /// batch is one transaction and nothing is said stored before it is. A batch is never split by a
    /// failure: if a handler throws, <paramref name="action"/> does not run for that batch.
    /// </summary>
    public void OnBatchEnd(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        ThrowIfSealed();
        BatchEnd += action;
    }

    internal Action? BatchEnd { get; private set; }

    internal IReadOnlyList<Action> Ends => _ends;

    private readonly List<Action> _ends = new();

    /// <summary>For operators: runs <paramref name="action"/> on the process's thread soon (between items), from any thread.</summary>
    internal void Post(Action action) =>
        (_runner ?? throw new InvalidOperationException($"Process '{Name}' is not running.")).Post(action);

    /// <summary>For operators: the runner, to give items emitted outside a handler the id of the item they came from.</summary>
    internal ProcessRunner? Runner => _runner;

    /// <summary>For operators: <paramref name="ended"/> runs, on the process's thread, when <paramref name="input"/> has ended.</summary>
    internal void OnEnded(IStreamReference input, Action ended)
    {
        InputSpec spec = _inputs.FirstOrDefault(i => i.Stream.Name == input.Name)
            ?? throw new InvalidOperationException($"Process '{Name}' does not read stream '{input.Name}'.");
        spec.Ended += ended;
    }

    internal void SetSource(SourceBody source)
    {
        ThrowIfSealed();
        if (Source is not null) throw new InvalidOperationException($"Process '{Name}' already has a source.");
        Source = source;
    }

    internal void Seal() => _sealed = true;

    internal void Attach(ProcessRunner runner) => _runner = runner;

    private void AddInput(InputSpec input)
    {
        ThrowIfSealed();
        foreach (InputSpec existing in _inputs)
        {
            if (existing.Stream.Name == input.Stream.Name)
                throw new ArgumentException($"Process '{Name}' already has a handler for stream '{input.Stream.Name}'; a process reads each stream once.");
        }
        _inputs.Add(input);
    }

    private void SetStart(Func<CancellationToken, ValueTask> start)
    {
        ThrowIfSealed();
        if (Start is not null) throw new InvalidOperationException($"Process '{Name}' already has a start action.");
        Start = start;
    }

    private readonly List<IStateSlot> _states = new();

    internal IReadOnlyList<IStateSlot> States => _states;

    /// <summary>Set by built-in operators that keep state of their own outside <see cref="State{T}"/>: what they are (checkpoints refuse them for now).</summary>
    internal string? UncheckpointedState { get; set; }

    // A checkpoint stores a state under its name: a name that is not text would be stored changed (U+FFFD) and not found.
    private void RefuseNonText(string name)
    {
        if (!Names.IsText(name))
            throw new ArgumentException($"Process '{Name}': the state name '{name}' is not valid UTF-16 text (it holds a lone surrogate), so a checkpoint could not store the state under its name.", nameof(name));
    }

    /// <summary>
    /// Declares a value that is part of this process's state: saved in every checkpoint and restored when
    /// the run resumes from one (<see cref="RunOptions.CheckpointInterval"/>, <see cref="RunOptions.StatePath"/>).
    /// Keep what the process must not lose (totals, held items) here rather than in a local variable.
    /// The value is saved as JSON, so its type follows the rules of items that cross an OS process.
    /// </summary>
    public ProcessState<T> State<T>(string name, T initial)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ThrowIfSealed();
        RefuseNonText(name);
        if (_states.Any(s => s.Name == name)) throw new ArgumentException($"Process '{Name}' already has a state called '{name}'.", nameof(name));
        var state = new ProcessState<T>(name, initial);
        _states.Add(new StateSlot<T>(state));
        return state;
    }

    /// <summary>
    /// Keeps what <paramref name="save"/> returns in every checkpoint and gives it to <paramref name="load"/> when
    /// the run resumes from one (after the start action, before any item): for state a process holds in objects of
    /// its own (a file's length, rows not yet committed), as the built-in operators and sinks do. <see cref="State{T}"/>
    /// is simpler for plain values. <paramref name="save"/> runs on the process's thread when a checkpoint's marker has
    /// reached the process (nothing that came after it has been handled yet); a sink may commit there what the
    /// checkpoint before it covered, since checkpoints are taken one at a time (docs/state-and-recovery.md). The kept
    /// parts are saved and loaded in the order they are declared. The value is saved as JSON.
    /// </summary>
    /// <param name="name">Its name in the process's part of a checkpoint, unique in the process.</param>
    /// <param name="save">What to keep, asked when a checkpoint is taken.</param>
    /// <param name="load">Given what was kept, when the run resumes.</param>
    public void Keep<T>(string name, Func<T> save, Action<T> load)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        RefuseNonText(name);
        ArgumentNullException.ThrowIfNull(save);
        ArgumentNullException.ThrowIfNull(load);
        ThrowIfSealed();
        if (_states.Any(s => s.Name == name)) throw new ArgumentException($"Process '{Name}' already has a state called '{name}'.", nameof(name));
        _states.Add(new KeptSlot<T>(name, save, load));
    }

    /// <summary>
    /// Whether the run takes checkpoints (<see cref="RunOptions.CheckpointInterval"/>): known once the process runs (in
    /// its start action and handlers; false before).
    /// </summary>
    public bool TakesCheckpoints => _runner?.Checkpoints is not null;

    /// <summary>Runs <paramref name="first"/> when the process starts, before its own start action (a stream's initial items).</summary>
    internal void PrependStart(Action first)
    {
        Func<CancellationToken, ValueTask>? then = Start;
        Start = then is null
            ? _ => { first(); return ValueTask.CompletedTask; }
            : ct => { first(); return then(ct); };
    }

    private void SetCompleted(Func<CancellationToken, ValueTask> completed)
    {
        ThrowIfSealed();
        if (Completed is not null) throw new InvalidOperationException($"Process '{Name}' already has a completion action.");
        Completed = completed;
    }

    private void ThrowIfSealed()
    {
        if (_sealed)
            throw new InvalidOperationException($"Process '{Name}' is already declared; declare inputs, outputs and actions inside its configure action only.");
    }
}
