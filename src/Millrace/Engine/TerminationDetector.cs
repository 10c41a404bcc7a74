namespace Millrace.Engine;

/// <summary>One process as a termination-detection wave sees it.</summary>
/// <param name="State">Running, passive, blocked or ended.</param>
/// <param name="Sent">Envelopes (batches, end marks, termination notices) it has sent.</param>
/// <param name="Received">Envelopes it has received.</param>
public readonly record struct ProcessStatus(RunnerState State, long Sent, long Received);

/// <summary>What a wave reads, wherever the processes run.</summary>
/// <remarks>
/// Room given back to a writer in another OS process is not a counted message: it only wakes a
/// blocked writer, and a blocked writer already keeps a wave from finding the run quiet.
/// </remarks>
/// <param name="Processes">Every process's status, by index in the graph.</param>
public readonly record struct WaveReading(ProcessStatus[] Processes);

/// <summary>Where the processes are, for the termination detector: this OS process, children reached over sockets, hosts reached through a broker.</summary>
public interface IStatusSource
{
    /// <summary>Every process's status, in graph order.</summary>
    ValueTask<WaveReading> ReadAsync(CancellationToken cancellationToken);

    /// <summary>Delivers a termination notice into the process's inbox (a counted message).</summary>
    void ForceEnd(int process);

    /// <summary>Which processes wait on which full streams, for the deadlock error.</summary>
    ValueTask<string> DescribeBlockedAsync(CancellationToken cancellationToken);
}

/// <summary>
/// Ends cycles: decides, by message counting with a double check, that every process is passive
/// and no batch or end mark is in flight, then ends the quiet cycles whose upstream has ended.
/// Also reports a deadlock (every live process waiting for room in a full queue) instead of hanging.
/// </summary>
/// <remarks>
/// Every process counts the envelopes it sent and received and says whether it is running, passive
/// (waiting on an empty inbox with everything sent), blocked (waiting for room) or ended. A wave
/// reads all of them. Two consecutive waves that both find nobody running and the same totals,
/// with sent equal to received, prove that nothing happened between them and nothing is in flight:
/// a passive process only becomes active by receiving, which would have changed the totals.
/// Waves run only when some process has just become passive, blocked or ended: no polling.
/// </remarks>
internal sealed class TerminationDetector
{
    private readonly RunContext _run;
    private readonly IStatusSource _source;
    private readonly GraphModel _model;
    private readonly AsyncSignal _signal = new();
    private readonly bool[] _closed;
    private volatile bool _stopped;
    private long _sent;
    private readonly TaskCompletionSource _allClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes once termination detection has ended every cycle of the graph.</summary>
    public Task AllCyclesClosed => _allClosed.Task;

    public TerminationDetector(RunContext run, IStatusSource source, GraphModel model)
    {
        _run = run;
        _source = source;
        _model = model;
        _closed = new bool[model.Cycles.Count];
    }

    /// <summary>Some process became passive, blocked or ended: time for a wave.</summary>
    public void Poke() => _signal.Set();

    /// <summary>The run is over: leave.</summary>
    public void Stop()
    {
        _stopped = true;
        _signal.Set();
    }

    private readonly record struct Wave(int Running, int Blocked, int Ended, long Sent, long Received);

    private async ValueTask<Wave> TakeWaveAsync(bool[]? ended, CancellationToken token)
    {
        WaveReading reading = await _source.ReadAsync(token);
        System.Diagnostics.Debug.Assert(reading.Processes.Length == _model.Processes.Count,
            $"IStatusSource.ReadAsync: every process's status, in graph order ({reading.Processes.Length} for {_model.Processes.Count} processes).");
        int running = 0, blocked = 0, endedCount = 0;
        long sent = _sent, received = 0;
        for (int i = 0; i < reading.Processes.Length; i++)
        {
            ProcessStatus status = reading.Processes[i];
            sent += status.Sent;
            received += status.Received;
            switch (status.State)
            {
                case RunnerState.Running: running++; break;
                case RunnerState.Blocked: blocked++; break;
                case RunnerState.Ended: endedCount++; break;
            }
            if (ended is not null) ended[i] = status.State == RunnerState.Ended;
        }
        return new Wave(running, blocked, endedCount, sent, received);
    }

    /// <summary>The detector's loop, once <see cref="Start"/>ed; completes after <see cref="Stop"/>, a stop of the run, or a verdict.</summary>
    public Task Completion { get; private set; } = Task.CompletedTask;

    public void Start()
    {
        System.Diagnostics.Debug.Assert(Completion.IsCompleted, "TerminationDetector.Start: one detector loop at a time.");
        Completion = RunAsync();
    }

    private async Task RunAsync()
    {
        CancellationToken token = _run.HardToken;
        int count = _model.Processes.Count;
        var ended = new bool[count];
        try
        {
            while (true)
            {
                await _signal.WaitAsync(token);
                if (_stopped) return;
                Wave first = await TakeWaveAsync(ended, token);
                if (first.Ended == count) return;
                if (first.Running > 0) continue;
                Wave second = await TakeWaveAsync(null, token);
                if (second != first) continue;
                if (first.Blocked > 0)
                {
                    // Looks stuck. Woken processes show as running at once, so this should be final;
                    // still, confirm over a second, so that a descheduled thread or a slow room frame
                    // between OS processes is never taken for a deadlock.
                    bool moved = false;
                    for (int i = 0; i < 4 && !moved; i++)
                    {
                        await Task.Delay(250, token);
                        moved = await TakeWaveAsync(null, token) != first;
                    }
                    if (moved) continue;
                    string blocked = await _source.DescribeBlockedAsync(token);
                    _run.Fail(new ProcessFailure(string.Join(", ", Open(ended)), null, null, null,
                        "Deadlock: every running process waits for room in a full queue: " + blocked +
                        ". A cycle whose processes emit more than they take fills its queues; raise StreamCapacity (--capacity) or emit less inside the cycle.", null));
                    return;
                }
                if (first.Sent != first.Received) continue;
                if (!CloseQuietCycles(ended))
                {
                    _run.Fail(new ProcessFailure(string.Join(", ", Open(ended)), null, null, null,
                        "The run stalled: no process is working and nothing is in flight, yet these processes have not ended: " +
                        string.Join(", ", Open(ended)) + ". This is a Millrace bug; please report it.", null));
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            // Without the detector the cycles would never end: say so instead of hanging.
            _run.Fail(new ProcessFailure(string.Join(", ", _model.Processes.Select(p => p.Name)), null, null, null,
                $"Termination detection failed: {e.GetType().Name}: {e.Message}. This is a Millrace bug; please report it.", e));
        }
    }

    /// <summary>Ends every cycle whose processes outside it, upstream, have all ended. False if there was none.</summary>
    private bool CloseQuietCycles(bool[] ended)
    {
        bool any = false;
        for (int c = 0; c < _model.Cycles.Count; c++)
        {
            if (_closed[c]) continue;
            Cycle cycle = _model.Cycles[c];
            if (!cycle.Upstream.All(p => ended[p])) continue;
            _closed[c] = true;
            any = true;
            _run.TerminationDetected = true;
            foreach (int member in cycle.Members)
            {
                if (ended[member]) continue;
                _sent++;
                _source.ForceEnd(member);
            }
        }
        if (_closed.All(c => c)) _allClosed.TrySetResult();
        return any;
    }

    private IEnumerable<string> Open(bool[] ended) =>
        _model.Processes.Where((_, i) => !ended[i]).Select(p => p.Name);
}

/// <summary>Processes running in this OS process (the threads placement, or one child's share).</summary>
internal sealed class LocalStatusSource : IStatusSource
{
    private readonly ProcessRunner[] _runners;

    public LocalStatusSource(ProcessRunner[] runners) => _runners = runners;

    public ValueTask<WaveReading> ReadAsync(CancellationToken cancellationToken) =>
        new(new WaveReading(_runners.Select(r => r.Status).ToArray()));

    public void ForceEnd(int process) =>
        _runners[process].Inbox.EnqueueControl(new Envelope(EnvelopeKind.ForceEnd, null, null, 0, -1));

    public ValueTask<string> DescribeBlockedAsync(CancellationToken cancellationToken) => new(DescribeBlocked(_runners));

    public static string DescribeBlocked(IEnumerable<ProcessRunner> runners)
    {
        var waits = new List<string>();
        foreach (ProcessRunner runner in runners)
        {
            if (runner.Status.State != RunnerState.Blocked) continue;
            foreach (IOutputPort output in runner.Outputs)
            {
                if (!output.Sender.HasPending) continue;
                foreach (Destination d in output.Sender.Destinations)
                    waits.Add($"'{runner.Name}' waits to write stream '{output.Stream.Name}' (read by '{d.ReaderName}', {d.Fill})");
            }
        }
        return string.Join("; ", waits);
    }
}
