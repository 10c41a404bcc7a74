
namespace Millrace;

/// <summary>
/// A Millrace application: named, typed streams and the processes that read and write them.
/// Declare it once; where its processes run (threads, OS processes, a broker) is chosen when it
/// runs, through <see cref="RunOptions.Placement"/>, never in the graph's code.
/// </summary>
/// <example>
/// <code>
/// var graph = new Graph();
/// var numbers = graph.Stream&lt;int&gt;("numbers");
/// var squares = graph.Stream&lt;long&gt;("squares");
/// graph.Source("web", numbers, Enumerable.Range(0, 5000));
/// graph.Process("square", p =>
/// {
///     var output = p.Output(squares);
///     p.On(numbers, x => output.Emit((long)x * x));
/// });
/// graph.Process("print", p => p.On(squares, s => Console.WriteLine(s)));
/// RunResult result = await graph.RunAsync();
/// </code>
/// </example>
public sealed partial class Graph
{
    private readonly List<IStreamReference> _streams = new();
    private readonly List<ProcessDeclaration> _processes = new();
    private readonly Dictionary<Type, object> _codecs = new();
    private readonly Dictionary<string, ErrorPolicy> _errorPolicies = new(StringComparer.Ordinal);
    private Stream<DeadLetter>? _deadLetters;

    /// <summary>
    /// The graph's stream of dead letters, <c>dead-letters</c>: items that processes with <see cref="ErrorPolicy.DeadLetter"/> could not
    /// handle, with why. Read it like any stream (write it to a table, print it); declared when first asked for.
    /// </summary>
    public Stream<DeadLetter> DeadLetters => _deadLetters ??= Stream<DeadLetter>("dead-letters");

    /// <summary>Declares a stream called <paramref name="name"/> that carries items of type <typeparamref name="T"/>.</summary>
    /// <returns>A reference to pass to processes that read or write it.</returns>
    public Stream<T> Stream<T>(string name)
    {
        var stream = new Stream<T>(name);
        _streams.Add(stream);
        return stream;
    }

    /// <summary>
    /// Declares a stream that starts with <paramref name="initial"/> (IoTPy's <c>initial_value</c>): its
    /// readers get these items first, then what its writer emits. A feedback loop or an echo starts from them.
    /// </summary>
    /// <remarks>
    /// The stream's one writer process emits the initial items when it starts, before its start action
    /// and before it handles any input, so they come first in every placement. A stream with initial
    /// items must have exactly one writer (graph validation says so otherwise). Each start of the writer
    /// emits them: in the broker placement, a writer started on several hosts (replicas) or started again
    /// after a crash emits them again.
    /// </remarks>
    public Stream<T> Stream<T>(string name, IEnumerable<T> initial)
    {
        ArgumentNullException.ThrowIfNull(initial);
        var stream = new Stream<T>(name) { Initial = initial.ToArray() };
        _streams.Add(stream);
        return stream;
    }

    /// <summary>
    /// Declares a process. <paramref name="configure"/> declares its inputs (<see cref="ProcessBuilder.On{T}(Stream{T}, Action{T})"/>),
    /// outputs (<see cref="ProcessBuilder.Output{T}(Stream{T})"/>) and optional start and completion actions.
    /// </summary>
    /// <remarks>
    /// <paramref name="configure"/> is called once per run (and, in other placements, in the OS process
    /// that hosts the process), so local variables it declares are the process's private state.
    /// It should only declare; do I/O in the start action or the handlers.
    /// </remarks>
    public void Process(string name, Action<ProcessBuilder> configure)
    {
        Names.Check(name, "process");
        ArgumentNullException.ThrowIfNull(configure);
        _processes.Add(new ProcessDeclaration(name, configure));
    }

    /// <summary>
    /// Sets the error policy of the process called <paramref name="process"/> (declared before or after this call): the way to give one
    /// to built-in operators (<c>Map</c>, <c>Filter</c>, <c>ToTable</c>, ...), which have no <see cref="ProcessBuilder"/> to call
    /// <see cref="ProcessBuilder.OnError"/> on. It applies after the process's own code, so it wins over a policy set there;
    /// <c>--on-error</c> on the command line (<see cref="RunOptions.ErrorPolicies"/>) still replaces it.
    /// </summary>
    /// <example><code>
    /// graph.Map("parse", lines, readings, Reading.Parse);
    /// graph.OnError("parse", ErrorPolicy.DeadLetter(graph.DeadLetters));
    /// </code></example>
    public void OnError(string process, ErrorPolicy policy)
    {
        Names.Check(process, "process");
        ArgumentNullException.ThrowIfNull(policy);
        _errorPolicies[process] = policy;
    }

    /// <summary>The processes as declared, each with the policy <see cref="OnError(string, ErrorPolicy)"/> gave it.</summary>
    private IReadOnlyList<ProcessDeclaration> Declarations()
    {
        if (_errorPolicies.Count == 0) return _processes;
        string[] unknown = _errorPolicies.Keys.Where(name => _processes.All(d => d.Name != name)).ToArray();
        if (unknown.Length > 0)
            throw new GraphValidationException(unknown.Select(name =>
                $"graph.OnError names process '{name}', which the graph does not have. Its processes: {string.Join(", ", _processes.Select(d => d.Name))}.").ToList());
        return _processes.Select(d => _errorPolicies.TryGetValue(d.Name, out ErrorPolicy? policy)
            ? d with
            {
                Configure = p =>
                {
                    d.Configure(p);
                    p.OnError(policy);
                },
            }
            : d).ToList();
    }

    /// <summary>Declares a source process that emits every item of <paramref name="items"/> into <paramref name="output"/>, then ends.</summary>
    /// <remarks>
    /// The enumeration runs on a thread of its own. Items are sent in batches; a batch also leaves
    /// once it is <see cref="RunOptions.Linger"/> old, checked when the next item comes. A source that
    /// waits between items (for a file, a socket, a clock) is better written as an
    /// <see cref="IAsyncEnumerable{T}"/>: whatever it has emitted leaves whenever it awaits.
    /// </remarks>
    /// <param name="name">The source process's name.</param>
    /// <param name="output">The stream it writes.</param>
    /// <param name="items">What it emits.</param>
    /// <param name="count">How many items there are, when known and <paramref name="items"/> cannot tell (an iterator): the live views show progress against it.</param>
    public void Source<T>(string name, Stream<T> output, IEnumerable<T> items, long? count = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(items);
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, $"Source '{name}': count cannot be negative.");
        long? total = count ?? (Enumerable.TryGetNonEnumeratedCount(items, out int n) ? n : null);
        Process(name, p => p.SetSource(new EnumerableSource<T>(p.Output(output), items) { Total = total }));
    }

    /// <summary>Declares a source process that emits every item of <paramref name="items"/> into <paramref name="output"/>, then ends.</summary>
    public void Source<T>(string name, Stream<T> output, IAsyncEnumerable<T> items)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(items);
        Process(name, p => p.SetSource(new AsyncEnumerableSource<T>(p.Output(output), items)));
    }

    /// <summary>
    /// Declares a source process that calls <paramref name="next"/> until it returns false. Each call
    /// may emit any number of items (zero included) through the <see cref="Output{T}"/> it is given.
    /// </summary>
    public void Source<T>(string name, Stream<T> output, Func<Output<T>, bool> next)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(next);
        Process(name, p => p.SetSource(new FunctionSource<T>(p.Output(output), next)));
    }

    /// <summary>
    /// Declares a source process that calls and awaits <paramref name="next"/> until it returns false.
    /// Each call may emit any number of items (zero included) through the <see cref="Output{T}"/> it is given;
    /// what it emitted leaves whenever it waits (an await that does not complete at once), not only when it returns.
    /// </summary>
    /// <remarks>
    /// Its awaits come back to the source's own thread (do not use <c>ConfigureAwait(false)</c> in it): Millrace
    /// sends what was emitted while the function is suspended, which is safe only when it cannot be emitting elsewhere.
    /// </remarks>
    public void Source<T>(string name, Stream<T> output, Func<Output<T>, CancellationToken, ValueTask<bool>> next)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(next);
        Process(name, p => p.SetSource(new AsyncFunctionSource<T>(p.Output(output), next)));
    }

    /// <summary>
    /// Declares a source process that emits 0, 1, 2, … every <paramref name="interval"/> (the first
    /// after one interval), <paramref name="count"/> times, or until stopped when count is null.
    /// Resumed from a checkpoint, it goes on with the number after the last it had emitted, one interval later.
    /// </summary>
    public void Timer(string name, Stream<long> output, TimeSpan interval, long? count = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (interval <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(interval), interval, $"Timer '{name}': the interval must be positive.");
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), count, $"Timer '{name}': the count must not be negative.");
        Process(name, p =>
        {
            AsyncEnumerableSource<long>? body = null;
            // The ticks start after those a checkpoint's run had emitted (read when the source starts, after it was restored),
            // without waiting an interval for each.
            body = new AsyncEnumerableSource<long>(p.Output(output), Ticks(interval, count, () => body!.Skip), rewindable: true) { SkipsItself = true };
            p.SetSource(body);
        });
    }

    private static async IAsyncEnumerable<long> Ticks(TimeSpan interval, long? count, Func<long> from,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var timer = new PeriodicTimer(interval);
        for (long i = from(); count is null || i < count; i++)
        {
            if (!await timer.WaitForNextTickAsync(cancellationToken)) yield break;
            yield return i;
        }
    }

    /// <summary>
    /// Uses <paramref name="codec"/> for every stream that carries <typeparamref name="T"/>, wherever
    /// items cross an OS process or machine boundary (it overrides <see cref="RunOptions.Codec"/>).
    /// </summary>
    public void UseCodec<T>(ICodec<T> codec)
    {
        ArgumentNullException.ThrowIfNull(codec);
        _codecs[typeof(T)] = codec;
    }

    /// <summary>
    /// Checks the graph without running it: names, types, streams nobody writes or reads.
    /// </summary>
    /// <returns>The checked graph's processes, streams and cycles.</returns>
    /// <exception cref="GraphValidationException">Lists every problem found.</exception>
    public GraphShape Validate() => GraphModel.Build(_streams, Declarations(), _codecs).Shape;

    /// <summary>
    /// Runs the graph until it ends: every process has ended (streams end when all their writers
    /// have; cycles end by termination detection), a process halts it, a process fails, or it is
    /// stopped through <paramref name="cancellationToken"/> or Ctrl+C / SIGTERM.
    /// </summary>
    /// <returns>What happened: the outcome, who halted, errors, and counts per process and stream.</returns>
    /// <exception cref="GraphValidationException">The graph is not valid; nothing ran.</exception>
    public Task<RunResult> RunAsync(RunOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new RunOptions();
        options.Check();
        IPlacement placement = PlacementRegistry.Get(options.Placement);
        if (options.CheckpointEvery > TimeSpan.Zero && !placement.CarriesCheckpoints)
            throw new ArgumentException($"Checkpoints (--checkpoint-interval) are not taken by the {placement.Name} placement; it would run without them (docs/state-and-recovery.md).");
        GraphModel Build()
        {
            GraphModel built = GraphModel.Build(_streams, Declarations(), _codecs);
            built.ApplyErrorPolicies(options.ErrorPolicies);
            return built;
        }
        return placement.RunAsync(new PlacementContext(Build(), options, cancellationToken, Build));
    }
}

internal sealed record ProcessDeclaration(string Name, Action<ProcessBuilder> Configure);
