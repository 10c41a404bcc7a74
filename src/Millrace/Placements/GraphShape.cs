namespace Millrace.Placements;

/// <summary>
/// A checked graph as a placement (or a tool that draws it) sees it: processes, streams and cycles.
/// Processes are numbered in declaration order, the same in every OS process that builds the graph;
/// placements address them by that index.
/// </summary>
public sealed class GraphShape
{
    private readonly int[] _cycleOf;
    private readonly Dictionary<string, int> _index;
    private readonly Dictionary<string, StreamShape> _streams;

    private GraphShape(IReadOnlyList<ProcessShape> processes, IReadOnlyList<StreamShape> streams, IReadOnlyList<IReadOnlyList<string>> cycles, int[] cycleOf)
    {
        Processes = processes;
        Streams = streams;
        Cycles = cycles;
        _cycleOf = cycleOf;
        _index = processes.ToDictionary(p => p.Name, p => p.Index, StringComparer.Ordinal);
        _streams = streams.ToDictionary(s => s.Name, StringComparer.Ordinal);
    }

    /// <summary>Every process, in the order the graph declared them (<see cref="ProcessShape.Index"/>).</summary>
    public IReadOnlyList<ProcessShape> Processes { get; }

    /// <summary>Every stream, in the order the graph declared them.</summary>
    public IReadOnlyList<StreamShape> Streams { get; }

    /// <summary>The processes of each cycle (streams that lead back to where they came from); these end by termination detection.</summary>
    public IReadOnlyList<IReadOnlyList<string>> Cycles { get; }

    /// <summary>The index of the cycle process <paramref name="process"/> is in (into <see cref="Cycles"/>), or -1.</summary>
    public int CycleOf(int process) => _cycleOf[process];

    /// <summary>Whether two processes are in the same cycle (their links are ended by termination detection).</summary>
    public bool InSameCycle(int a, int b) => _cycleOf[a] >= 0 && _cycleOf[a] == _cycleOf[b];

    /// <summary>The index of the process called <paramref name="name"/>, or -1.</summary>
    public int IndexOf(string name) => _index.TryGetValue(name, out int i) ? i : -1;

    /// <summary>The stream called <paramref name="name"/>.</summary>
    public StreamShape Stream(string name) => _streams[name];

    internal static GraphShape Of(GraphModel model)
    {
        string Name(int p) => model.Processes[p].Name;
        return new GraphShape(
            model.Processes.Select((p, i) => new ProcessShape(p.Name, p.Inputs.Select(x => x.Stream.Name).Distinct().ToArray(),
                p.Outputs.Select(o => o.Stream.Name).ToArray(), p.Source is not null) { Index = i, ItemCount = p.Source?.Total }).ToArray(),
            model.Streams.Values.Select(s => new StreamShape(s.Name, s.ItemType, s.Writers.Select(Name).ToArray(), s.Readers.Select(Name).ToArray())
                { WriterIndexes = s.Writers, ReaderIndexes = s.Readers }).ToArray(),
            model.Cycles.Select(c => (IReadOnlyList<string>)c.Members.Select(Name).ToArray()).ToArray(),
            model.CycleOf);
    }
}

/// <summary>One process: the streams it reads and writes.</summary>
/// <param name="Name">Its name, unique in the graph.</param>
/// <param name="Inputs">The streams it reads.</param>
/// <param name="Outputs">The streams it writes.</param>
/// <param name="IsSource">It produces items of its own (a source declared with <c>graph.Source</c>).</param>
public sealed record ProcessShape(string Name, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs, bool IsSource)
{
    /// <summary>Its place in <see cref="GraphShape.Processes"/>: how placements address it.</summary>
    public int Index { get; init; }

    /// <summary>For a source that knows it: how many items it will emit.</summary>
    public long? ItemCount { get; init; }
}

/// <summary>One stream: its item type, who writes it and who reads it.</summary>
/// <param name="Name">Its name, unique in the graph.</param>
/// <param name="ItemType">The type of its items.</param>
/// <param name="Writers">The processes that write it.</param>
/// <param name="Readers">The processes that read it (each sees every item).</param>
public sealed record StreamShape(string Name, Type ItemType, IReadOnlyList<string> Writers, IReadOnlyList<string> Readers)
{
    /// <summary>The indexes of <see cref="Writers"/>; a writer's position in this list is its writer index on the stream.</summary>
    public IReadOnlyList<int> WriterIndexes { get; init; } = Array.Empty<int>();

    /// <summary>The indexes of <see cref="Readers"/>.</summary>
    public IReadOnlyList<int> ReaderIndexes { get; init; } = Array.Empty<int>();
}
