namespace Millrace.Placements.Threads;

/// <summary>The embedded default: every process has a thread of its own in this OS process; streams are bounded in-memory queues.</summary>
internal sealed class ThreadsPlacement : IPlacement
{
    public string Name => "threads";

    public bool CarriesCheckpoints => true;

    public Task<RunResult> RunAsync(PlacementContext context) => RunAsync(context.Model, context.Options, context.CancellationToken);

    public static async Task<RunResult> RunAsync(GraphModel model, RunOptions options, CancellationToken cancellationToken)
    {
        // With checkpoints on, their store opens on a thread of its own while the run is wired (a run whose wiring fails has
        // opened it all the same).
        Task<Checkpoints.OpenedStore?> opening = Checkpoints.OpenAsync(model, options);
        try
        {
            return await RunAsync(model, options, opening, cancellationToken);
        }
        catch when (!opening.IsCompleted || opening.IsFaulted)
        {
            // What failed first says more than the store; it is waited for, so that nothing touches the store after the run.
            try { await opening; } catch (Exception) { }
            throw;
        }
    }

    private static async Task<RunResult> RunAsync(GraphModel model, RunOptions options, Task<Checkpoints.OpenedStore?> opening, CancellationToken cancellationToken)
    {
        using var host = new RunHost(model, options);
        host.Wire(transport: null);
        host.DetectTermination();
        // Said here, while the store opens: the reflection it takes would otherwise wait on the store's thread.
        if (options.CheckpointEvery > TimeSpan.Zero) Checkpoints.WarnOwnVariables(model, options);
        // The meter's instruments (the process's, not the run's: a store that fails leaves nothing of the run behind) too.
        if (!opening.IsCompleted) Monitoring.Metrics.EnsureCreated();
        // The store is open before the views start: a store that cannot be opened ends the run before anything shows it.
        CheckpointCoordinator? checkpoints = await opening is { } opened ? Checkpoints.Prepare(opened, options, host) : null;
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
