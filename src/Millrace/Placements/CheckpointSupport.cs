using Millrace.Engine;
using Millrace.Monitoring;

namespace Millrace.Placements;

/// <summary>
/// Checkpoints for a placement whose hosts start and stop on their own (the broker placement): the run's
/// state store, the parts of the processes of one host, the leader that takes the checkpoints, and the
/// generations by which the whole run goes back to a checkpoint when one of its processes started again.
/// Get it from <see cref="PlacementContext.OpenCheckpoints"/>; null there when checkpoints are off.
/// </summary>
public sealed class CheckpointSupport
{
    private readonly CheckpointStore _store;
    private readonly RunOptions _options;

    internal CheckpointSupport(CheckpointStore store, RunOptions options)
    {
        _store = store;
        _options = options;
    }

    /// <summary>Where the store is (for messages).</summary>
    public string Where => _store.Path_;

    /// <summary>The newest complete checkpoint, or -1.</summary>
    public long LastComplete() => _store.LastComplete();

    /// <summary>The current generation and the checkpoint it started from (0 and -1 before any).</summary>
    public (long Generation, long Checkpoint) CurrentGeneration() => _store.ReadGeneration();

    /// <summary>Starts generation <paramref name="generation"/> from <paramref name="checkpoint"/> (-1: from the start).</summary>
    public void StartGeneration(long generation, long checkpoint) => _store.WriteGeneration(generation, checkpoint);

    /// <summary>The generation <paramref name="process"/> last started in, or null.</summary>
    public long? StartedIn(string process) => _store.Mark("live", process);

    /// <summary>Records that <paramref name="process"/> starts in <paramref name="generation"/>.</summary>
    public void MarkStarted(string process, long generation) => _store.SetMark("live", process, generation);

    /// <summary>The generation <paramref name="process"/> last ended in, or null.</summary>
    public long? EndedIn(string process) => _store.Mark("ended", process);

    /// <summary>Records that <paramref name="process"/> ended in <paramref name="generation"/>.</summary>
    public void MarkEnded(string process, long generation) => _store.SetMark("ended", process, generation);

    /// <summary>The generation the run completed in, if it did (the store then holds nothing else of use).</summary>
    public long? CompletedIn() => _store.CompletedGeneration;

    /// <summary>Every process ended in <paramref name="generation"/>: the run is over; its checkpoints go.</summary>
    public void MarkCompleted(long generation) => _store.MarkCompleted(generation);

    /// <summary>Holds the store's lock, between the OS processes that share it, until disposed (waits at most 30 s).</summary>
    /// <exception cref="TimeoutException">Another OS process held it for 30 s.</exception>
    public IDisposable Lock() => _store.Lock();

    /// <summary>
    /// Says, until disposed, that this OS process runs <paramref name="processes"/>: another OS process of the run
    /// that would run one of them too is refused (replicas are not held with checkpoints on). Waits up to 10 s for an
    /// OS process that ran one and is dying.
    /// </summary>
    /// <exception cref="InvalidOperationException">Another OS process runs one of them; the message names it.</exception>
    public IDisposable Claim(IEnumerable<string> processes) => _store.Claim(processes, TimeSpan.FromSeconds(10));

    /// <summary>Forgets a completed run: the next one starts afresh.</summary>
    public void Reset() => _store.Clear();

    /// <summary>
    /// The processes of <paramref name="host"/> store their parts of each checkpoint here and, once one is
    /// stored, call <paramref name="stored"/> (checkpoint, process name) from a thread of the pool. With
    /// <paramref name="resume"/> ≥ 0 they start from their parts of that checkpoint. Before the host runs.
    /// </summary>
    /// <exception cref="InvalidDataException">The checkpoint holds nothing for one of the processes (another graph).</exception>
    public void Attach(RunHost host, long resume, Action<long, string> stored) =>
        Checkpoints.Attach(host.Local, _store, resume, new Port(_store, stored));

    /// <summary>The sources of <paramref name="host"/> send the markers of <paramref name="checkpoint"/> after the items they emitted so far. Any thread.</summary>
    public static void RequestMarkers(RunHost host, long checkpoint)
    {
        foreach (ProcessRunner source in host.Local.Where(r => r.IsSource)) source.RequestMarker(checkpoint);
    }

    /// <summary>
    /// The leader of the run's checkpoints (one host runs it): every interval it numbers a new checkpoint, calls
    /// <paramref name="requestMarkers"/> (every source of the run, here and elsewhere, must send its markers) and
    /// waits until <paramref name="participants"/> processes said they stored their parts (<see cref="CheckpointLeader.Stored"/>);
    /// then the checkpoint is complete. None once <paramref name="ended"/> names a process that has ended; a
    /// checkpoint is abandoned when <paramref name="stillCurrent"/> says the run went back meanwhile.
    /// </summary>
    /// <param name="host">The host the leader runs in.</param>
    /// <param name="participants">How many processes store a part of each checkpoint (every process of the run).</param>
    /// <param name="requestMarkers">Asks every source of the run for the markers of a checkpoint.</param>
    /// <param name="ended">Names a process that has ended, if any.</param>
    /// <param name="resume">The checkpoint the run resumed from, or -1.</param>
    /// <param name="stillCurrent">False once the run went back meanwhile: the checkpoint is abandoned.</param>
    /// <param name="numberFrom">
    /// The first number to give a checkpoint: numbers already used in the store are never used again, but a
    /// part that a process of an abandoned attempt writes late must not land in a checkpoint of a newer one either,
    /// so each attempt that may overlap with an older one (a generation) starts from numbers of its own.
    /// </param>
    public CheckpointLeader Lead(RunHost host, int participants, Action<long> requestMarkers, Func<string?> ended, long resume, Func<bool> stillCurrent,
        long numberFrom = 1) =>
        new(new CheckpointCoordinator(host.Run, participants, requestMarkers, ended, _store, _options.CheckpointEvery, resume, _options.Logger)
        {
            StillCurrent = stillCurrent,
            NumberFrom = numberFrom,
        });

    private sealed class Port(CheckpointStore store, Action<long, string> stored) : ICheckpointPort
    {
        public CheckpointStore Store => store;

        public void Stored(long checkpoint, ProcessRunner runner) => stored(checkpoint, runner.Name);

        // The broker placement takes no checkpoint once a process has ended.
        public bool KeepsFinalParts => false;
    }
}

/// <summary>Takes a run's checkpoints (see <see cref="CheckpointSupport.Lead"/>).</summary>
public sealed class CheckpointLeader
{
    private readonly CheckpointCoordinator _coordinator;

    internal CheckpointLeader(CheckpointCoordinator coordinator) => _coordinator = coordinator;

    /// <summary>A process stored its part of <paramref name="checkpoint"/>. Any thread.</summary>
    public void Stored(long checkpoint) => _coordinator.Stored(checkpoint);

    /// <summary>Takes checkpoints until <see cref="Stop"/> or the end of the run.</summary>
    public Task RunAsync() => _coordinator.RunAsync();

    /// <summary>Takes no more checkpoints.</summary>
    public void Stop() => _coordinator.Stop();

    /// <summary>How the checkpoints go, for the meter and the views.</summary>
    public CheckpointSample Sample() => _coordinator.Sample();
}
