using System.Diagnostics;

namespace Millrace.Engine;

/// <summary>What a process is doing, as termination detection sees it.</summary>
public enum RunnerState
{
    /// <summary>Handling work (or about to).</summary>
    Running,
    /// <summary>Waiting for input with an empty inbox and nothing left to send.</summary>
    Passive,
    /// <summary>Waiting for room in a reader's queue.</summary>
    Blocked,
    /// <summary>Done, normally or not.</summary>
    Ended,
}

internal static class RunnerStates
{
    // By hand: an enum's first ToString or Parse reads its names by reflection, milliseconds at every run's end (and in
    // every child of the processes placement).

    /// <summary>The state's name, as <c>ToString</c> gives it.</summary>
    public static string Name(this RunnerState state) => state switch
    {
        RunnerState.Running => "Running",
        RunnerState.Passive => "Passive",
        RunnerState.Blocked => "Blocked",
        RunnerState.Ended => "Ended",
        _ => state.ToString(),
    };

    /// <summary>The state's name in lower case, for views.</summary>
    public static string LowerName(this RunnerState state) => state switch
    {
        RunnerState.Running => "running",
        RunnerState.Passive => "passive",
        RunnerState.Blocked => "blocked",
        RunnerState.Ended => "ended",
        _ => state.ToString().ToLowerInvariant(),
    };

    /// <summary>The state <see cref="Name"/> gave <paramref name="name"/>, or null.</summary>
    public static RunnerState? Parse(string name) => name switch
    {
        "Running" => RunnerState.Running,
        "Passive" => RunnerState.Passive,
        "Blocked" => RunnerState.Blocked,
        "Ended" => RunnerState.Ended,
        _ => null,
    };
}

/// <summary>
/// Runs one process: its start action or source, then its inbox until every input has ended. A
/// placement gets one per hosted process from <see cref="RunHost"/>, hands it what arrives from
/// elsewhere (<see cref="Deliver"/>, <see cref="DeliverEnd"/>) and wakes it when room is made.
/// </summary>
public sealed class ProcessRunner
{
    private readonly ProcessBuilder _builder;
    private readonly List<Lane> _lanes = new();
    private readonly AsyncSignal _room = new();
    private readonly object _statusLock = new();
    private RunnerState _state = RunnerState.Running;
    private long _sent;
    private long _received;
    private int _openLanes;
    private volatile bool _stopping;
    private readonly long _lingerMs;
    private int _tick = 1;
    private int _tickEvery = 1;
    private long _lastCheck;
    private long _lastFlush;

    /// <param name="builder">The process.</param>
    /// <param name="run">The run it is part of.</param>
    /// <param name="identity">Whether its items carry ids: placements that may deliver an item twice (the broker) give every runner one.</param>
    internal ProcessRunner(ProcessBuilder builder, RunContext run, bool identity = false)
    {
        _builder = builder;
        Run = run;
        Inbox = new Inbox(this);
        builder.Attach(this);
        if (identity) Identity = new ItemIdentity(builder.RepeatWindow);
#if DEBUG
        if (Identity is not null) Identity.Owner = this;
#endif
        _lingerMs = (long)run.Options.Linger.TotalMilliseconds;
        _lastCheck = _lastFlush = Environment.TickCount64;
    }

    /// <summary>The process's name.</summary>
    public string Name => _builder.Name;
    internal RunContext Run { get; }
    internal Inbox Inbox { get; }
    internal IReadOnlyList<Lane> Lanes => _lanes;
    internal List<IOutputPort> Outputs => _builder.Outputs;
    internal bool HasInputs => _builder.Inputs.Count > 0;
    internal long? SourceTotal => _builder.Source?.Total;

    /// <summary>Set once the process may emit.</summary>
    internal bool Started { get; private set; }

#if DEBUG
    /// <summary>Debug builds: the managed id of the runner's thread (its process thread) once <see cref="RunAsync"/> has begun; 0 before (set-up).</summary>
    private int _runnerThread;
#endif

    /// <summary>Debug builds: the calling thread is the runner's own from now on (called as <see cref="RunAsync"/> begins on its process thread).</summary>
    [Conditional("DEBUG")]
    private void ClaimRunnerThread()
    {
#if DEBUG
        Volatile.Write(ref _runnerThread, Environment.CurrentManagedThreadId);
#endif
    }

    /// <summary>
    /// Debug builds: asserts "runner thread only" for <paramref name="member"/>. Before the runner has
    /// started, any thread passes (wiring and set-up). Not for the emitting path: an async handler may
    /// emit from another thread while the runner awaits it.
    /// </summary>
    [Conditional("DEBUG")]
    internal void AssertRunnerThread(string member)
    {
#if DEBUG
        int owner = Volatile.Read(ref _runnerThread);
        int current = Environment.CurrentManagedThreadId;
        // Or lent work: another thread runs the process's work while its own sleeps, with the process's context current.
        Debug.Assert(owner == 0 || owner == current || (_ownThread is { } own && SynchronizationContext.Current == own),
            $"{member}: runner thread only (process '{Name}' runs on thread {owner}; called on thread {current}).");
#endif
    }

    /// <summary>Some output holds batches a full reader could not take yet. Runner thread only.</summary>
    internal bool Blocked;

    // ------------------------------------------------------------------ checkpoints

    /// <summary>Takes the run's checkpoints, when they are on.</summary>
    internal ICheckpointPort? Checkpoints { get; set; }

    /// <summary>What this process stored in the checkpoint the run resumes from, if any (set before it runs).</summary>
    internal ProcessPart? Restore { get; set; }

    internal bool IsSource => _builder.Source is not null;

    internal bool HasEnded
    {
        get { lock (_statusLock) return _state == RunnerState.Ended; }
    }

    private long _markerRequested;
    private long _markerDone;
    private long _snapshotting = -1;
    private ProcessPart? _part;
    // Per lane and writer, the batches a link brought after the snapshot: a link's list is there until its marker comes.
    // (Arrays: a set or dictionary keyed by a pair of ints is compiled at run time, at a run's first checkpoint.)
    private List<byte[]>?[][]? _recording;
    private int _pendingLinks;

    private ProcessThread? _ownThread;
    private volatile bool _sourceWaits;

    /// <summary>
    /// Runs <paramref name="deliver"/>, which hands this process input (<see cref="Deliver"/>, <see cref="DeliverEnd"/>...), on
    /// the calling thread — a transport's, holding none of the process's locks — and lets that thread run the work the
    /// input wakes, once <paramref name="deliver"/> has returned, while the process's own thread sleeps with nothing to do:
    /// what the handlers publish then goes out from the same thread, with no other thread woken for it. Still one runner
    /// at a time; a run that takes long (a handler that blocks) ends this for the process (ProcessThread, "Lent work").
    /// </summary>
    public void DeliverInline<TState>(TState state, Action<TState> deliver) => ProcessThread.DeliverOn(_ownThread, state, deliver);

    /// <summary>A source: send the markers of <paramref name="checkpoint"/> after the items emitted so far. Any thread.</summary>
    internal void RequestMarker(long checkpoint)
    {
        Volatile.Write(ref _markerRequested, checkpoint);
        _tick = 0; // looked at with the next item
        // A source waiting for its next item (a followed file at its end) sends them now, between two items.
        if (_sourceWaits) _ownThread?.Post(_ => { if (_sourceWaits) ServeMarker(); }, null);
    }

    /// <summary>
    /// An asynchronous source waits for its next item (true) or has it (false); while it waits, a checkpoint's
    /// markers are sent at once rather than with the next item. Its own thread, with everything emitted delivered.
    /// </summary>
    internal void SourceWaits(bool waiting)
    {
        _sourceWaits = waiting;
        if (waiting) ServeMarker();
    }

    private void ServeMarker()
    {
        long marker = Volatile.Read(ref _markerRequested);
        if (marker != _markerDone && IsSource) SourceMarker(marker);
    }

    private Dictionary<string, byte[]> SaveStates()
    {
        var states = new Dictionary<string, byte[]>(_builder.States.Count);
        foreach (IStateSlot slot in _builder.States) states.Add(slot.Name, slot.Save());
        return states;
    }

    /// <summary>Items sent so far, on all outputs.</summary>
    private long ItemsOut()
    {
        long sent = 0;
        foreach (IOutputPort output in Outputs) sent += output.ItemsOut;
        return sent;
    }

    /// <summary>A source, between two items: everything emitted so far leaves, then the markers; its part is its position.</summary>
    private void SourceMarker(long checkpoint)
    {
        _markerDone = checkpoint;
        FlushOutputs();
        if (Blocked) DrainBlocking();
        var part = new ProcessPart
        {
            States = SaveStates(),
            Position = (_builder.Source?.Skip ?? 0) + ItemsOut(),
        };
        foreach (IOutputPort output in Outputs) output.Sender.SendMarker(checkpoint);
        StorePart(checkpoint, part);
    }

    /// <summary>
    /// A marker of <paramref name="checkpoint"/> from one link. The first one: the state is saved now and the
    /// markers go on downstream at once; items that arrive afterwards on the other links, before their own
    /// markers, were on their way when the state was saved: they are kept with it (and handled as usual).
    /// Once every open link has brought its marker, the part is stored.
    /// </summary>
    private async ValueTask OnMarkerAsync(Lane lane, int writer, long checkpoint)
    {
        if (_snapshotting != checkpoint)
        {
            FlushOutputs();
            if (Blocked) await DrainAsync();
            _snapshotting = checkpoint;
            _part = new ProcessPart { States = SaveStates() };
            _recording = new List<byte[]>?[_lanes.Count][];
            _pendingLinks = 0;
            foreach (Lane l in _lanes)
            {
                var links = _recording[l.Index] = new List<byte[]>?[l.Writers];
                for (int w = 0; w < l.Writers; w++)
                {
                    if (l.WriterEnded(w)) continue;
                    links[w] = new List<byte[]>();
                    _pendingLinks++;
                }
            }
            foreach (IOutputPort output in Outputs) output.Sender.SendMarker(checkpoint);
        }
        LinkDone(lane, writer);
    }

    private void LinkDone(Lane lane, int writer)
    {
        if (_recording?[lane.Index][writer] is not { } batches) return;
        _recording[lane.Index][writer] = null;
        if (batches.Count > 0)
            _part!.Channels.Add(new ChannelPart { Stream = lane.StreamName, Writer = writer, Batches = batches });
        if (--_pendingLinks > 0) return;
        long checkpoint = _snapshotting;
        ProcessPart part = _part!;
        _recording = null;
        _part = null;
        StorePart(checkpoint, part);
    }

    /// <summary>
    /// Writes the part (taken, it changes no more) to the store off this process's thread: the file is flushed
    /// to disk, which takes milliseconds the items need not wait for. The checkpoint counts it once it is written.
    /// </summary>
    private Task _storing = Task.CompletedTask;
    private bool _endedBefore;

    private void StorePart(long checkpoint, ProcessPart part)
    {
        ICheckpointPort port = Checkpoints!;
        _storing = Task.Run(() =>
        {
            try
            {
                port.Store.SavePart(checkpoint, Name, part);
                port.Stored(checkpoint, this);
            }
            catch (Exception e)
            {
                Run.Fail(new ProcessFailure(Name, null, null, null,
                    $"Process '{Name}' could not store its part of checkpoint {checkpoint} in {port.Store.Path_}: {e.GetType().Name}: {e.Message}", e));
            }
        });
    }

    /// <summary>Restores the states a checkpoint kept; what its links had on their way is handled again first.</summary>
    private async ValueTask RestoreAsync(ProcessPart part)
    {
        foreach (IStateSlot slot in _builder.States)
        {
            if (part.States.TryGetValue(slot.Name, out byte[]? data)) slot.Load(data);
        }
        if (_builder.Source is { } source) source.Skip = part.Position ?? 0;
        _endedBefore = part.Ended;
        foreach (ChannelPart channel in part.Channels)
        {
            Lane lane = _lanes.First(l => l.StreamName == channel.Stream);
            foreach (byte[] batch in channel.Batches)
            {
                Array items = lane.Input.Decode(batch);
                await lane.Input.HandleAsync(this, lane, items, items.Length);
            }
        }
    }

    /// <summary>Halt, failure or hard stop: leave as soon as possible.</summary>
    public bool Stopping => _stopping;

    /// <summary>Sources stop producing on any stop, graceful ones included.</summary>
    internal bool SourceShouldStop => _stopping || Run.StopRequested;

    /// <summary>Items handed to this process's handlers.</summary>
    internal long ItemsIn;

    /// <summary>Stopwatch ticks of finished busy spans (handling a batch, running the source or an action), waits excluded. Runner thread writes.</summary>
    private long _busyTicks;

    /// <summary>When the current busy span began (0: none), and the wait ticks then.</summary>
    private long _busySince, _waitAtSpanStart;

    /// <summary>Stopwatch ticks spent waiting inside busy spans (for room downstream, for a source's next item).</summary>
    private long _waitTicks;

    /// <summary>When the current wait began (0: none).</summary>
    private long _waitSince;

    private long _busyReported;

    private void BeginBusy()
    {
        AssertRunnerThread("ProcessRunner.BeginBusy");
        _waitAtSpanStart = Volatile.Read(ref _waitTicks);
        Volatile.Write(ref _busySince, System.Diagnostics.Stopwatch.GetTimestamp());
    }

    private void EndBusy()
    {
        AssertRunnerThread("ProcessRunner.EndBusy");
        long since = _busySince;
        if (since == 0) return;
        long span = System.Diagnostics.Stopwatch.GetTimestamp() - since - (_waitTicks - _waitAtSpanStart);
        Volatile.Write(ref _busyTicks, _busyTicks + Math.Max(0, span));
        Volatile.Write(ref _busySince, 0);
    }

    /// <summary>Begins a wait that is not work (room downstream, a source's next item).</summary>
    internal void BeginWait() => Volatile.Write(ref _waitSince, System.Diagnostics.Stopwatch.GetTimestamp());

    internal void EndWait()
    {
        long since = _waitSince;
        if (since == 0) return;
        Volatile.Write(ref _waitTicks, _waitTicks + (System.Diagnostics.Stopwatch.GetTimestamp() - since));
        Volatile.Write(ref _waitSince, 0);
    }

    /// <summary>Seconds of work so far, the span under way included; read from any thread, never going back.</summary>
    internal double BusySeconds
    {
        get
        {
            long now = System.Diagnostics.Stopwatch.GetTimestamp();
            long since = Volatile.Read(ref _busySince);
            long done = Volatile.Read(ref _busyTicks);
            if (since != 0)
            {
                long waitSince = Volatile.Read(ref _waitSince);
                long waited = Volatile.Read(ref _waitTicks) - _waitAtSpanStart + (waitSince != 0 ? now - waitSince : 0);
                done += Math.Max(0, now - since - waited);
            }
            long reported = Volatile.Read(ref _busyReported);
            while (done > reported)
            {
                long seen = Interlocked.CompareExchange(ref _busyReported, done, reported);
                if (seen == reported) break;
                reported = seen;
            }
            return System.Diagnostics.Stopwatch.GetElapsedTime(0, Math.Max(done, Volatile.Read(ref _busyReported))).TotalSeconds;
        }
    }

    /// <summary>Item ids, when the placement may deliver an item twice; null otherwise (nothing to pay).</summary>
    internal ItemIdentity? Identity { get; }

    /// <summary>The token user code gets: sources see graceful stops too.</summary>
    internal CancellationToken UserToken => HasInputs ? Run.HardToken : Run.SourceToken;

    private readonly List<IDisposable> _timers = new();
    private bool _timersStopped;

    /// <summary>
    /// Runs <paramref name="action"/> on this process's thread every <paramref name="interval"/>
    /// (between items, never during a handler) until the process ends.
    /// </summary>
    internal void Every(TimeSpan interval, Action action)
    {
        // One tick of a timer waits in the inbox at most: a process held up for a while does not
        // find a pile of them (bounded), it runs the action once when it gets to it.
        int pending = 0;
        Envelope tick = Envelope.Posted(() =>
        {
            Volatile.Write(ref pending, 0);
            action();
        });
        lock (_timers)
        {
            if (_timersStopped) return;
            _timers.Add(Ticker.Every(interval, () =>
            {
                if (Interlocked.Exchange(ref pending, 1) == 0) Inbox.EnqueueControl(tick);
            }));
        }
    }

    /// <summary>Runs <paramref name="action"/> on this process's thread between items (not a counted message).</summary>
    internal void Post(Action action) => Inbox.EnqueueControl(Envelope.Posted(action));

    internal Lane AddLane(InputSpec input, int capacity, int writers)
    {
        var lane = new Lane(_lanes.Count, input, capacity, writers);
#if DEBUG
        lane.Reader = this;
#endif
        _lanes.Add(lane);
        _openLanes++;
        return lane;
    }

    internal void Stop() => _stopping = true;

    /// <summary>
    /// Hands the process a batch of <paramref name="count"/> items of <paramref name="lane"/>'s stream from
    /// its writer number <paramref name="writer"/>, which reserved the room for it (credits, a prefetch
    /// window). From any thread; the process handles it on its own, in arrival order. <paramref name="items"/>
    /// must be an array of the stream's item type; <paramref name="receipt"/>, when given, hears when it is handled.
    /// </summary>
    public void Deliver(Lane lane, Array items, int count, int writer, Receipt? receipt = null) =>
        Inbox.EnqueueRemote(lane, items, count, writer, receipt);

    /// <summary>
    /// The marker of checkpoint <paramref name="checkpoint"/> from writer number <paramref name="writer"/> of
    /// <paramref name="lane"/>'s stream, after everything that writer delivered before it. From any thread; ignored
    /// when checkpoints are off.
    /// </summary>
    public void DeliverMarker(Lane lane, int writer, long checkpoint)
    {
        if (Checkpoints is null) return;
        Inbox.EnqueueControl(new Envelope(EnvelopeKind.Marker, lane, null, 0, writer, Checkpoint: checkpoint));
    }

    /// <summary>
    /// Tells the process that writer number <paramref name="writer"/> of <paramref name="lane"/>'s stream has
    /// ended. From any thread. <paramref name="counted"/>: the end mark was counted as received when it was
    /// taken (<see cref="CountHeldEnd"/>), so termination detection does not count it again.
    /// </summary>
    public void DeliverEnd(Lane lane, int writer, Receipt? receipt = null, bool counted = false)
    {
        if (counted) MarkWoken();
        Inbox.EnqueueControl(new Envelope(EnvelopeKind.End, lane, null, 0, writer, receipt, Counted: counted));
    }

    /// <summary>
    /// A transport took an end mark that it hands over later (<see cref="DeliverEnd"/> with counted): for
    /// termination detection it is received now, no longer in flight. From any thread.
    /// </summary>
    public void CountHeldEnd()
    {
        lock (_statusLock) _received++;
        // The counts changed while the process may stay passive: a wave must look again.
        Run.Poke();
    }

    /// <summary>Termination detection closed this process's cycle: its writers inside the cycle count as ended. From any thread.</summary>
    public void ForceEnd() => Inbox.EnqueueControl(new Envelope(EnvelopeKind.ForceEnd, null, null, 0, -1));

    internal async Task RunAsync()
    {
        string? phase = null;
        ClaimRunnerThread();
        _ownThread = ProcessThread.OfCurrentThread;
        try
        {
            Started = true;
            foreach (var (interval, tick) in _builder.Timers) Every(interval, tick);
            try
            {
                if (Restore is { } restore)
                {
                    // Resumed from a checkpoint: the start action runs again (it may open what the process
                    // needs), but what it emits is dropped: that was emitted before the checkpoint. Then the
                    // checkpoint's state replaces what the start action set.
                    if (_builder.Start is { } start)
                    {
                        phase = "its start action";
                        foreach (IOutputPort output in Outputs) output.Discard(true);
                        try
                        {
                            await InvokeAsync(start);
                        }
                        finally
                        {
                            foreach (IOutputPort output in Outputs) output.Discard(false);
                        }
                    }
                    phase = "restoring its checkpoint";
                    await RestoreAsync(restore);
                    FlushOutputs();
                    if (Blocked) await DrainAsync();
                }
                else if (_builder.Start is { } start)
                {
                    phase = "its start action";
                    BeginBusy();
                    await InvokeAsync(start);
                    if (Blocked) await DrainAsync();
                    EndBusy();
                }
                // A source resumed from its final part had ended: it ends again at once, whatever its data holds now.
                if (_builder.Source is { } source && !_endedBefore)
                {
                    phase = "its source";
                    BeginBusy();
                    try
                    {
                        await source.RunAsync(this);
                    }
                    finally
                    {
                        EndBusy();
                    }
                }
            }
            catch (OperationCanceledException) when (!HasInputs && !Stopping && Run.StopRequested)
            {
                // A graceful stop ends a source like running out of data: what it emitted still flows and ends.
            }
            phase = null;
            await HandleInboxAsync();
            if (Stopping) return;
            // Resumed from its final part: it had completed before; what its completion action did is not done twice.
            if (_builder.Completed is { } completed && !_endedBefore)
            {
                phase = "its completion action";
                await InvokeAsync(completed);
            }
            if (Checkpoints is { KeepsFinalParts: true } port && !Run.StopRequested)
            {
                // Ended for good: its final state (and, a source, its last position) stands for it in every later checkpoint.
                phase = "storing its final part";
                FlushOutputs();
                if (Blocked) await DrainAsync();
                // A part of a checkpoint it took a snapshot for is stored, and said, first: the final part stands only for
                // checkpoints whose markers never reached it (every writer to it had ended before sending them).
                await _storing;
                port.SaveFinal(this, new ProcessPart
                {
                    Ended = true,
                    States = SaveStates(),
                    Position = IsSource ? (_builder.Source?.Skip ?? 0) + ItemsOut() : null,
                });
                port.Stored(CheckpointStore.Final, this);
            }
            phase = "ending its outputs";
            await EndOutputsAsync();
        }
        catch (Exception e) when (IsStopException(e))
        {
        }
        catch (ProcessFailureException e)
        {
            Run.Fail(e.Failure);
        }
        catch (Exception e) when (phase is not null)
        {
            Run.Fail(new ProcessFailure(Name, null, null, null,
                $"Process '{Name}' failed in {phase}: {e.GetType().Name}: {e.Message}", e));
        }
        catch (Exception e)
        {
            Run.Fail(new ProcessFailure(Name, null, null, null,
                $"Process '{Name}' failed: {e.GetType().Name}: {e.Message}", e));
        }
        finally
        {
            EndBusy(); // a span a failure left open
            lock (_timers)
            {
                _timersStopped = true;
                foreach (IDisposable timer in _timers) timer.Dispose();
                _timers.Clear();
            }
            foreach (Action release in _builder.Ends)
            {
                try
                {
                    release();
                }
                catch (Exception e)
                {
                    Run.Fail(new ProcessFailure(Name, null, null, null, $"Process '{Name}' failed releasing what it held: {e.GetType().Name}: {e.Message}", e));
                }
            }
            SetState(RunnerState.Ended);
        }
    }

    private async Task HandleInboxAsync()
    {
        while (_openLanes > 0 && !Stopping)
        {
            AssertRunnerThread("ProcessRunner.HandleInboxAsync");
            if (!Inbox.TryTake(out Envelope envelope))
            {
                FlushOutputs();
                if (Blocked) await DrainAsync();
                ReturnRoom();
                SetState(RunnerState.Passive);
                if (!Inbox.TryTake(out envelope))
                {
                    await Inbox.WaitAsync(Run.HardToken);
                    continue;
                }
            }
            if (envelope.Kind == EnvelopeKind.Posted)
            {
                // A timer or a posted action, not a message: it wakes the process but is not counted by termination detection.
                SetState(RunnerState.Running);
                BeginBusy();
                envelope.Action!();
                EndBusy();
                continue;
            }
            if (envelope.Counted) MarkRunning();
            else CountReceived();
            switch (envelope.Kind)
            {
                case EnvelopeKind.Data:
                    Lane lane = envelope.Lane!;
                    if (_endedBefore)
                        throw new InvalidOperationException(
                            $"items arrived on '{lane.StreamName}' after the process had ended (it was resumed from its final part): the checkpoint does not hold a consistent run");
                    if (_recording?[lane.Index][envelope.Writer] is { } recorded)
                        recorded.Add(lane.Input.Encode(envelope.Items!, envelope.Count));
                    BeginBusy();
                    if (envelope.Receipt is { } receipt)
                    {
                        await lane.Input.HandleAsync(this, lane, envelope.Items!, envelope.Count, receipt.Ids);
                        if (Stopping) break;
                        _builder.BatchEnd?.Invoke();
                        // What these items produced leaves now, so the transport can settle the batch (a broker acknowledges it) soon.
                        FlushOutputs();
                        if (Blocked) await DrainAsync();
                        receipt.Handled();
                    }
                    else
                    {
                        await lane.Input.HandleAsync(this, lane, envelope.Items!, envelope.Count);
                        // Every item of the batch is handled (or the process stops): its array may be filled again.
                        lane.Recycle?[envelope.Writer]?.Invoke(envelope.Items!);
                        if (!Stopping) _builder.BatchEnd?.Invoke();
                    }
                    EndBusy();
                    break;
                case EnvelopeKind.Marker:
                    await OnMarkerAsync(envelope.Lane!, envelope.Writer, envelope.Checkpoint);
                    break;
                case EnvelopeKind.End:
                    LinkDone(envelope.Lane!, envelope.Writer); // a writer that ends sends no marker: its link is done
                    if (envelope.Lane!.EndWriter(envelope.Writer))
                    {
                        _openLanes--;
                        envelope.Lane.Input.Ended?.Invoke();
                    }
                    envelope.Receipt?.Handled();
                    break;
                case EnvelopeKind.ForceEnd:
                    foreach (Lane l in _lanes)
                    {
                        foreach (int writer in l.CycleWriters)
                        {
                            if (l.EndWriter(writer))
                            {
                                _openLanes--;
                                l.Input.Ended?.Invoke();
                            }
                        }
                    }
                    foreach (IOutputPort output in Outputs) output.Sender.CloseCycleLinks();
                    break;
            }
        }
    }

    private async ValueTask InvokeAsync(Func<CancellationToken, ValueTask> action)
    {
        // Never flush while user code may still run (it may be emitting on another thread).
        await action(UserToken);
    }

    private async ValueTask EndOutputsAsync()
    {
        FlushOutputs();
        if (Blocked) await DrainAsync();
        foreach (IOutputPort output in Outputs) output.Sender.End();
    }

    /// <summary>Sends every partial batch (the process is about to wait, or its items have waited long enough).</summary>
    internal void FlushOutputs()
    {
        foreach (IOutputPort output in Outputs)
        {
            output.Flush();
            output.Sender.FlushDestinations();
        }
        _lastFlush = Environment.TickCount64;
    }

    /// <summary>Gives back room held for writers in other OS processes (the process is about to wait).</summary>
    private void ReturnRoom()
    {
        foreach (Lane lane in _lanes) lane.FlushRoom?.Invoke();
    }

    /// <summary>
    /// Called after each item a handler or source produced or handled: while the process stays busy,
    /// partial batches still leave once they are older than <see cref="RunOptions.Linger"/>. The clock
    /// is read every 64 items while items are quick, at every item once they are slow.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal void Tick()
    {
        if (--_tick <= 0) CheckLinger();
    }

    /// <summary>
    /// <see cref="Tick"/> for the loop over a batch's items: true when the process must pause after this item (an output
    /// is blocked, or it stops). An output that blocks looks at once (<see cref="MarkBlocked"/>).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal bool TickThenPause() => (--_tick <= 0 && TickExpired()) | _stopping;

    private bool TickExpired()
    {
        // Outside the item's fault: what fails here (sending what was emitted) fails the process, not the item.
        // An exception's filters run before finally blocks: the handler loop's filter still sees it set.
        TickFailing = true;
        try
        {
            CheckLinger();
        }
        finally
        {
            TickFailing = false;
        }
        return Blocked;
    }

    /// <summary>Set while the periodic work between items runs (it stays set if that threw): such a failure is not an item's.</summary>
    internal bool TickFailing;

    /// <summary>An output holds batches a full reader could not take: the process pauses after the current item.</summary>
    internal void MarkBlocked()
    {
        Blocked = true;
        _tick = 0; // looked at after the current item
    }

    private void CheckLinger()
    {
        ServeMarker();
        long now = Environment.TickCount64;
        _tickEvery = now - _lastCheck >= 1 ? 1 : Math.Min(_tickEvery * 2, 64);
        _tick = _tickEvery;
        _lastCheck = now;
        if (now - _lastFlush >= _lingerMs) FlushOutputs();
    }

    /// <summary>Waits until every output has delivered what it holds.</summary>
    internal async ValueTask DrainAsync()
    {
        if (TryDrain()) return;
        BeginWait();
        try
        {
            do await _room.WaitAsync(Run.HardToken);
            while (!TryDrain());
        }
        finally
        {
            EndWait();
        }
    }

    /// <summary>The same for threads that may block (synchronous sources, and emit storms inside one handler).</summary>
    internal void DrainBlocking()
    {
        if (TryDrain()) return;
        // A wait for room of unknown length: never again on a thread lent by a transport (it would hold that thread).
        _ownThread?.EndLendingIfLent();
        BeginWait();
        try
        {
            do _room.Wait(Run.HardToken);
            while (!TryDrain());
        }
        finally
        {
            EndWait();
        }
    }

    /// <summary>
    /// A source's wait for room, which also ends when the run asks sources to stop (a graceful stop): the source then stops
    /// taking items at once, and what it emitted is still delivered when its outputs end (EndOutputsAsync drains first).
    /// Without this a source whose reader drains slowly would notice the stop only once that reader made room.
    /// </summary>
    internal void DrainBlockingUntilSourcesStop()
    {
        if (TryDrain()) return;
        BeginWait();
        try
        {
            do
            {
                if (SourceShouldStop) return;
                try
                {
                    _room.Wait(Run.SourceToken);
                }
                catch (OperationCanceledException) when (!Run.HardToken.IsCancellationRequested)
                {
                    return;
                }
            }
            while (!TryDrain());
        }
        finally
        {
            EndWait();
        }
    }

    /// <summary>Delivers what it can; false when some reader is full and the process must wait for room.</summary>
    private bool TryDrain()
    {
        SetState(RunnerState.Blocked);
        bool delivered = true;
        foreach (IOutputPort output in Outputs)
        {
            if (output.Sender.HasPending && !output.Sender.TryDeliver()) delivered = false;
        }
        if (delivered)
        {
            Blocked = false;
            SetState(RunnerState.Running);
            return true;
        }
        // About to wait: what is gathered must leave, and room held back must go to those waiting for it.
        foreach (IOutputPort output in Outputs) output.Sender.FlushDestinations();
        ReturnRoom();
        return false;
    }

    /// <summary>Called by a reader (or a transport's window) that made room this process is waiting for. From any thread.</summary>
    public void WakeForRoom()
    {
        // Counted as running at once, so termination detection never sees a woken writer as stuck.
        lock (_statusLock)
        {
            if (_state == RunnerState.Blocked) _state = RunnerState.Running;
        }
        _room.Set();
    }

    /// <summary>Called by a writer that put work into this process's empty inbox.</summary>
    internal void MarkWoken()
    {
        lock (_statusLock)
        {
            if (_state == RunnerState.Passive) _state = RunnerState.Running;
        }
    }

    internal void CountSent()
    {
        lock (_statusLock) _sent++;
    }

    private void MarkRunning()
    {
        lock (_statusLock) _state = RunnerState.Running;
    }

    private void CountReceived()
    {
        lock (_statusLock)
        {
            _received++;
            _state = RunnerState.Running;
        }
    }

    private void SetState(RunnerState state)
    {
        lock (_statusLock)
        {
            if (_state == state || _state == RunnerState.Ended) return;
            _state = state;
        }
        if (state != RunnerState.Running) Run.Poke();
    }

    /// <summary>What termination detection reads: the state and the envelopes sent and received. From any thread.</summary>
    public ProcessStatus Status
    {
        get { lock (_statusLock) return new ProcessStatus(_state, _sent, _received); }
    }

    internal bool IsStopException(Exception e) =>
        e is OperationCanceledException && (Stopping || Run.HardToken.IsCancellationRequested);

    /// <summary>Items its error policy skipped, and sent to the dead letters.</summary>
    internal long ItemsSkipped, ItemsDeadLettered;

    private readonly Queue<long> _failures = new();

    /// <summary>Whether a failing item goes to <see cref="RecoverAsync"/> rather than failing the run at once.</summary>
    internal bool HasErrorPolicy => _builder.Errors.Kind != ErrorPolicy.Kinds.Stop;

    /// <summary>
    /// The process's error policy deals with an item its handler threw on (at <see cref="Lane.Position"/>): retries it through
    /// <paramref name="again"/>, then skips it or sends it to the dead letters; returns when the item is dealt with.
    /// </summary>
    /// <exception cref="ProcessFailureException">The policy ends in Stop, or more than its limit of failures came within its window.</exception>
    internal async ValueTask RecoverAsync<T>(Lane lane, T item, Exception e, Func<T, ValueTask> again)
    {
        ErrorPolicy policy = _builder.Errors;
        Exception last = e;
        if (policy.Kind == ErrorPolicy.Kinds.Retry)
        {
            TimeSpan delay = policy.FirstDelay;
            for (int attempt = 1; attempt <= policy.Attempts; attempt++)
            {
                if (delay > TimeSpan.Zero) await Task.Delay(delay, Run.HardToken);
                // A halt or a stop meanwhile: no more attempts.
                Run.HardToken.ThrowIfCancellationRequested();
                // Items the attempt emits get the ids the first attempt's got (the broker placement derives them from the item's).
                if (Identity is { InItem: true } current) current.Enter(true, current.CurrentId);
                try
                {
                    await again(item);
                    return;
                }
                catch (Exception x) when (!IsStopException(x))
                {
                    last = x;
                }
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, ErrorPolicy.MaxDelay.Ticks));
            }
        }
        ErrorPolicy final = policy.Final;
        if (final.Kind == ErrorPolicy.Kinds.Stop) throw ItemFailure(lane, item, last);
        // Whatever the policy: many failures in a short time are a bug, not bad data.
        if (!WithinLimit(policy))
        {
            string text = Describe(item);
            throw new ProcessFailureException(new ProcessFailure(Name, lane.StreamName, lane.Position, text,
                $"Process '{Name}' failed on more than {policy.MaxFailures} items within {policy.Window.TotalSeconds:0.#} s ({policy}): that many is a bug, " +
                $"not bad data, so the run stops. The last: item {lane.Position} of stream '{lane.StreamName}' ({text}): {last.GetType().Name}: {last.Message}", last));
        }
        if (final.Kind == ErrorPolicy.Kinds.Skip)
        {
            ItemsSkipped++;
            Millrace.Monitoring.Log.Notice(Run.Options.Logger, "errors",
                $"process '{Name}' skipped item {lane.Position} of stream '{lane.StreamName}' ({Describe(item)}): {last.GetType().Name}: {last.Message}");
            return;
        }
        string json;
        try
        {
            json = System.Text.Json.JsonSerializer.Serialize(item, JsonCodec<T>.Defaults);
        }
        catch (Exception x) when (x is not OutOfMemoryException && !IsStopException(x))
        {
            // Bad data is when getters throw: the item's text goes instead.
            json = Describe(item);
        }
        string? id = Identity is { InItem: true } identity ? identity.CurrentId.ToString(System.Globalization.CultureInfo.InvariantCulture) : null;
        _builder.DeadLetters!.Emit(new DeadLetter(Name, lane.StreamName, lane.Position, json, id, last.GetType().FullName ?? last.GetType().Name, last.Message, DateTimeOffset.UtcNow));
        ItemsDeadLettered++;
    }

    /// <summary>Counts a failure; false when more than the policy's limit came within its window. From any thread.</summary>
    private bool WithinLimit(ErrorPolicy policy)
    {
        lock (_failures)
        {
            long now = Environment.TickCount64;
            _failures.Enqueue(now);
            while (_failures.Count > 0 && now - _failures.Peek() > (long)policy.Window.TotalMilliseconds) _failures.Dequeue();
            return _failures.Count <= policy.MaxFailures;
        }
    }

    /// <summary>
    /// A message of one of its inputs could not be read (a poison message on the broker; never handed to the handlers):
    /// true when it is to be set aside (moved to the run's dead-letter queue), false when the run stops for it. Counts
    /// towards the error policy's limit: beyond it, <paramref name="failure"/> says so and the run stops. From any thread.
    /// </summary>
    public bool SetsAsidePoison(PoisonMessages mode, string stream, string what, out ProcessFailure? failure)
    {
        failure = null;
        ErrorPolicy policy = _builder.Errors;
        bool aside = mode switch
        {
            PoisonMessages.Stop => false,
            PoisonMessages.DeadLetter => true,
            _ => policy.Final.Kind != ErrorPolicy.Kinds.Stop,
        };
        if (!aside) return false;
        if (WithinLimit(policy)) return true;
        failure = new ProcessFailure(Name, stream, null, null,
            $"Process '{Name}' failed on more than {policy.MaxFailures} items or messages within {policy.Window.TotalSeconds:0.#} s ({policy}): that many is a bug, " +
            $"not bad data, so the run stops. The last: a message of stream '{stream}' that {what}.", null);
        return false;
    }

    internal ProcessFailureException ItemFailure<T>(Lane lane, T item, Exception e)
    {
        if (e is ProcessFailureException already) return already;
        string text = Describe(item);
        return new ProcessFailureException(new ProcessFailure(Name, lane.StreamName, lane.Position, text,
            $"Process '{Name}' failed on item {lane.Position} of stream '{lane.StreamName}' ({text}): {e.GetType().Name}: {e.Message}", e));
    }

    private static string Describe<T>(T item)
    {
        string text;
        try
        {
            text = item?.ToString() ?? "null";
        }
        catch (Exception e)
        {
            text = $"<{typeof(T).Name}; ToString threw {e.GetType().Name}>";
        }
        return text.Length <= 200 ? text : text[..200] + "…";
    }
}
