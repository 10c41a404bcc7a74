using Millrace.Placements.Threads;

namespace Millrace.Placements;

/// <summary>What a placement is given to run: the checked graph, the options and the caller's cancellation token.</summary>
public sealed class PlacementContext
{
    private readonly Func<GraphModel>? _rebuild;

    internal PlacementContext(GraphModel model, RunOptions options, CancellationToken cancellationToken, Func<GraphModel>? rebuild = null)
    {
        _rebuild = rebuild;
        Model = model;
        Options = options;
        CancellationToken = cancellationToken;
        Graph = model.Shape;
    }

    /// <summary>The graph's processes, streams and cycles.</summary>
    public GraphShape Graph { get; }

    /// <summary>The run's options (checked).</summary>
    public RunOptions Options { get; }

    /// <summary>Stops the run gracefully when cancelled (sources stop, the rest drains).</summary>
    public CancellationToken CancellationToken { get; }

    internal GraphModel Model { get; }

    /// <summary>
    /// Runs every process of the graph here, each on a thread of its own, streams as bounded
    /// in-memory queues: the threads placement. A placement that only decides whether and when to
    /// run (a wrapper that logs, checks or retries) can call it.
    /// </summary>
    public Task<RunResult> RunHereAsync() => ThreadsPlacement.RunAsync(Model, Options, CancellationToken);

    /// <summary>
    /// Checks, before anything starts, that the items of <paramref name="streams"/> (those that cross
    /// an OS process or a machine in this placement) come back from their codec as they were written:
    /// a registered codec, the binary codec where it carries the type, or JSON for a type it carries
    /// exactly. Types that would arrive different (object, interfaces or abstract types without a
    /// polymorphic mapping, classes with nothing public, properties nothing can set again, dictionaries
    /// with keys JSON cannot carry) are refused, every such stream named.
    /// </summary>
    /// <exception cref="GraphValidationException">A stream's items cannot cross exactly.</exception>
    public void RequireItemsCross(IEnumerable<StreamShape> streams)
    {
        var problems = new List<string>();
        foreach (StreamShape stream in streams)
        {
            Type type = stream.ItemType;
            if (Model.Codecs.ContainsKey(type)) continue;
            if (Options.Codec == "binary" && BinaryCodec.Supports(type)) continue;
            if (Options.Codec == "auto" && (type.IsPrimitive || type == typeof(string) || type == typeof(byte[]))) continue;
            if (Codecs.JsonTypeCheck.WhyNot(type) is not { } why) continue;
            problems.Add($"Stream '{stream.Name}' carries {Codecs.JsonTypeCheck.Name(type)}, which cannot cross an OS process in the {Options.Placement} " +
                         $"placement: {why}. Use a record of concrete types, [JsonDerivedType] on a base type, or graph.UseCodec<{Codecs.JsonTypeCheck.Name(type)}>(...) " +
                         "(the threads placement carries any type).");
        }
        if (problems.Count > 0) throw new GraphValidationException(problems);
    }

    /// <summary>Refuses the graph before anything runs, naming each problem (what this placement cannot hold, and what to do).</summary>
    /// <exception cref="GraphValidationException">Always.</exception>
    public void Refuse(params string[] problems) => throw new GraphValidationException(problems);

    /// <summary>
    /// The same run with the graph built again: every process's declaration runs again, so its operators and
    /// handlers start with nothing left from an earlier attempt in this OS process (the broker placement starts
    /// its processes again this way when the run goes back to a checkpoint).
    /// </summary>
    public PlacementContext Rebuilt() =>
        _rebuild is null ? throw new InvalidOperationException("This context cannot build its graph again.") : new(_rebuild(), Options, CancellationToken, _rebuild);

    /// <summary>Whether the run takes checkpoints (<see cref="RunOptions.CheckpointInterval"/>, or <see cref="RunOptions.StatePath"/> given).</summary>
    public bool TakesCheckpoints => Options.CheckpointEvery > TimeSpan.Zero;

    /// <summary>
    /// With checkpoints on (<see cref="RunOptions.CheckpointInterval"/>): refuses a graph they cannot hold
    /// (every problem named) and opens the run's state store. Null with checkpoints off.
    /// </summary>
    /// <exception cref="GraphValidationException">Checkpoints cannot hold this graph.</exception>
    public CheckpointSupport? OpenCheckpoints() =>
        Checkpoints.Open(Model, Options) is { } store ? new CheckpointSupport(store, Options) : null;

    /// <summary>
    /// Makes a runner for each process in <paramref name="processes"/> (indexes in <see cref="Graph"/>) to run
    /// in this OS process; the others run elsewhere. With <paramref name="itemIds"/>, every item carries an id
    /// derived from its cause, for a placement that may deliver an item twice (readers that asked to skip
    /// repeats then do). Wire it (<see cref="RunHost.Wire"/>) before running it.
    /// </summary>
    public RunHost Host(IEnumerable<int> processes, bool itemIds = false)
    {
        int[] hosted = processes.Distinct().Order().ToArray();
        if (hosted.Any(p => p < 0 || p >= Graph.Processes.Count))
            throw new ArgumentOutOfRangeException(nameof(processes), $"The graph has processes 0 to {Graph.Processes.Count - 1}.");
        return new RunHost(Model, Options, hosted, itemIds);
    }
}
