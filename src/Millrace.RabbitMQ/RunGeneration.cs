using Microsoft.Extensions.Logging;
using Millrace.Engine;
using Millrace.Placements;

namespace Millrace.RabbitMQ;

/// <summary>
/// With checkpoints on, the broker placement's hosts start and stop on their own, so the run goes back to
/// a checkpoint as a whole: when a process starts again after it died, it begins a new generation from the
/// last complete checkpoint, tells the other hosts (<see cref="Control.Rollback"/>), and every host starts its
/// processes again from that checkpoint. Messages carry their generation; readers drop older ones (the
/// checkpoint holds what came before it, and what came after is written again), so nothing is lost or
/// counted twice. The store says which generation is current and where each process started and ended.
/// </summary>
internal sealed class RunGeneration
{
    private static readonly TimeSpan Look = TimeSpan.FromMilliseconds(100);
    private readonly TaskCompletionSource _wentBack = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private RunGeneration(CheckpointSupport store, long number, long resume, bool announce, bool endedHere)
    {
        Store = store;
        Number = number;
        Resume = resume;
        Announce = announce;
        EndedHere = endedHere;
    }

    public CheckpointSupport Store { get; }

    /// <summary>This generation's number: every message this host writes carries it.</summary>
    public long Number { get; }

    /// <summary>The checkpoint this generation started from (-1: the start).</summary>
    public long Resume { get; }

    /// <summary>This host began the generation: it tells the others.</summary>
    public bool Announce { get; }

    /// <summary>Every process of this host already ended in this generation: nothing to run again, only to wait for the run's end.</summary>
    public bool EndedHere { get; }

    /// <summary>A newer generation began elsewhere: this host's processes must start again from its checkpoint.</summary>
    public bool HasGoneBack => _wentBack.Task.IsCompleted;

    public Task GoneBack => _wentBack.Task;

    /// <summary>The generation the processes of this host join (and start) now.</summary>
    public static RunGeneration Join(CheckpointSupport store, IReadOnlyList<string> hosted, ILogger? logger)
    {
        long generation, resume;
        bool endedHere, announce;
        string[] again;
        // One host at a time, and never while a checkpoint is being marked complete: two hosts starting again at once
        // agree on one generation and one checkpoint, and the checkpoint chosen is not removed meanwhile.
        using (store.Lock())
        {
            // A run that completed leaves nothing to resume: this is a new run, in a generation after the last one's (their
            // messages left in the queues are dropped).
            if (store.CompletedIn() is { } completed)
            {
                store.Reset();
                store.StartGeneration(completed + 1, -1);
            }
            (generation, resume) = store.CurrentGeneration();
            endedHere = hosted.All(p => store.EndedIn(p) == generation);
            // A process that already started in the current generation (and has not ended in it) died: the run goes back.
            again = endedHere ? [] : hosted.Where(p => store.StartedIn(p) == generation).ToArray();
            announce = again.Length > 0;
            if (announce)
            {
                generation++;
                resume = store.LastComplete();
                store.StartGeneration(generation, resume);
            }
            if (!endedHere)
            {
                foreach (string p in hosted) store.MarkStarted(p, generation);
            }
        }
        if (announce)
        {
            Notices.Say(logger,
                $"checkpoints: process {string.Join(", ", again.Select(p => $"'{p}'"))} started again: the whole run goes back to " +
                (resume >= 0 ? $"checkpoint {resume}" : "its start (no checkpoint was complete)") + $" in {store.Where} (generation {generation})");
        }
        else if (resume >= 0)
        {
            Notices.Say(logger, $"checkpoints: resuming from checkpoint {resume} in {store.Where} (generation {generation})");
        }
        return new RunGeneration(store, generation, resume, announce, endedHere);
    }

    /// <summary>A newer generation began (a message or a rollback said so): this host's processes stop at once, to start again.</summary>
    public void GoBack(RunContext run)
    {
        if (_wentBack.Task.IsCompleted) return;
        GoingBack?.Invoke();
        if (_wentBack.TrySetResult()) run.StopAll();
    }

    /// <summary>Called first when the run goes back (the host stops telling the others of its errors).</summary>
    public Action? GoingBack { get; set; }

    /// <summary>Whether a newer generation began, as the store says.</summary>
    public bool NewerInStore() => Store.CurrentGeneration().Generation > Number;

    public enum Ending { Completed, WentBack, Stopped, TimedOut }

    /// <summary>
    /// This host's processes ended: it waits until every process of the run has (the run completed, its
    /// checkpoints go) or the run goes back (they start again), at most <paramref name="within"/>.
    /// </summary>
    public async Task<Ending> WaitForRunAsync(IReadOnlyList<string> all, Task stopped, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            if (HasGoneBack || NewerInStore()) return Ending.WentBack;
            if (Store.CompletedIn() is not null || all.All(p => Store.EndedIn(p) == Number))
            {
                Store.MarkCompleted(Number);
                return Ending.Completed;
            }
            if (stopped.IsCompleted) return Ending.Stopped;
            if (DateTime.UtcNow > deadline) return Ending.TimedOut;
            await Task.WhenAny(_wentBack.Task, stopped, Task.Delay(Look));
        }
    }
}
