namespace Millrace.Placements.Processes;

/// <summary>
/// The processes placement: each process (or group of processes) in an OS process of its own on
/// this machine. In the program the user started it is the <see cref="Coordinator"/>; in the OS
/// processes that one starts, a <see cref="ChildRuntime"/>.
/// </summary>
internal sealed class ProcessesPlacement : IPlacement
{
    public string Name => "processes";

    public bool CarriesCheckpoints => true;

    /// <summary>In the program the user started: the coordinator. In an OS process it started: that child's share of the run.</summary>
    public Task<RunResult> RunAsync(PlacementContext context)
    {
        if (ChildInfo.TakeFromEnvironment() is { } child) return ChildRuntime.RunAsync(context.Model, context.Options, child);
        // Before any child starts: items that go from one OS process to another must come back as written.
        int[] groupOf = Coordinator.Groups(context.Model, context.Options);
        context.RequireItemsCross(context.Graph.Streams.Where(s => s.WriterIndexes.Any(w => s.ReaderIndexes.Any(r => groupOf[w] != groupOf[r]))));
        return Coordinator.RunAsync(context.Model, context.Options, context.CancellationToken);
    }
}
