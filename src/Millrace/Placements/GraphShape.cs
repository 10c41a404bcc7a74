namespace Millrace.Placements;

/// <summary>A checked graph as a placement (or a tool that draws it) sees it: processes, streams and cycles, by name.</summary>
public sealed class GraphShape
{
    private GraphShape(IReadOnlyList<ProcessShape> processes, IReadOnlyList<StreamShape> streams, IReadOnlyList<IReadOnlyList<string>> cycles)
    {
        Processes = processes;
        Streams = streams;
        Cycles = cycles;
    }

    /// <summary>Every process, in the order the graph declared them.</summary>
    public IReadOnlyList<ProcessShape> Processes { get; }

    /// <summary>Every stream, in the order the graph declared them.</summary>
    public IReadOnlyList<StreamShape> Streams { get; }

    /// <summary>The processes of each cycle (streams that lead back to where they came from); these end by termination detection.</summary>
    public IReadOnlyList<IReadOnlyList<string>> Cycles { get; }

    internal static GraphShape Of(GraphModel model)
    {
        string Name(int p) => model.Processes[p].Name;
        return new GraphShape(
            model.Processes.Select(p => new ProcessShape(p.Name, p.Inputs.Select(i => i.Stream.Name).Distinct().ToArray(),
                p.Outputs.Select(o => o.Stream.Name).ToArray(), p.Source is not null)).ToArray(),
            model.Streams.Values.Select(s => new StreamShape(s.Name, s.ItemType, s.Writers.Select(Name).ToArray(), s.Readers.Select(Name).ToArray())).ToArray(),
            model.Cycles.Select(c => (IReadOnlyList<string>)c.Members.Select(Name).ToArray()).ToArray());
    }
}

/// <summary>One process: the streams it reads and writes.</summary>
/// <param name="Name">Its name, unique in the graph.</param>
/// <param name="Inputs">The streams it reads.</param>
/// <param name="Outputs">The streams it writes.</param>
/// <param name="IsSource">It produces items of its own (a source declared with <c>graph.Source</c>).</param>
public sealed record ProcessShape(string Name, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs, bool IsSource);

/// <summary>One stream: its item type, who writes it and who reads it.</summary>
/// <param name="Name">Its name, unique in the graph.</param>
/// <param name="ItemType">The type of its items.</param>
/// <param name="Writers">The processes that write it.</param>
/// <param name="Readers">The processes that read it (each sees every item).</param>
public sealed record StreamShape(string Name, Type ItemType, IReadOnlyList<string> Writers, IReadOnlyList<string> Readers);
