namespace Millrace.Placements.Threads;

/// <summary>The embedded default: every process has a thread of its own in this OS process; streams are bounded in-memory queues.</summary>
internal sealed class ThreadsPlacement : IPlacement
{
    public string Name => "threads";

    public bool CarriesCheckpoints => true;

    public Task<RunResult> RunAsync(PlacementContext context) => RunAsync(context.Model, context.Options, context.CancellationToken);

    public static async Task<RunResult> RunAsync(GraphModel model, RunOptions options, CancellationToken cancellationToken)
    {
        using var host = new RunHost(model, options);
        host.Wire(transport: null);
        host.DetectTermination();
        CheckpointCoordinator? checkpoints = Checkpoints.Prepare(model, options, host);
        await using RunWatch watch = await RunMonitor.StartAsync(model, options,
            elapsed => host.Sample(elapsed) with { Checkpoints = checkpoints?.Sample() });
        using (StopSignals.Listen(host.Run, cancellationToken))
        {
            Task taking = checkpoints?.RunAsync() ?? Task.CompletedTask;
            await host.RunProcessesAsync();
            checkpoints?.Stop();
            await host.StopDetectorAsync();
            await taking;
        }
        // A run that completed leaves nothing to resume: the next one starts afresh.
        if (checkpoints is not null && host.Run.Outcome == RunOutcome.Completed && host.Run.Errors.Count == 0) checkpoints.Store.Clear();
        await watch.EndAsync(host.Run.Outcome);
        return host.Result();
    }
}
