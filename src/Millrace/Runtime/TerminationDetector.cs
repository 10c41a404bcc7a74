namespace Millrace.Runtime;

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
    private readonly ProcessRunner[] _runners;
    private readonly GraphModel _model;
    private readonly AsyncSignal _signal = new();
    private readonly bool[] _closed;
    private long _sent;

    public TerminationDetector(RunContext run, ProcessRunner[] runners, GraphModel model)
    {
        _run = run;
        _runners = runners;
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

    private volatile bool _stopped;

    private readonly record struct Wave(int Running, int Blocked, int Ended, long Sent, long Received);

    private Wave TakeWave(bool[]? ended)
    {
        int running = 0, blocked = 0, endedCount = 0;
        long sent = _sent, received = 0;
        for (int i = 0; i < _runners.Length; i++)
        {
            var (state, s, r) = _runners[i].Status;
            sent += s;
            received += r;
            switch (state)
            {
                case RunnerState.Running: running++; break;
                case RunnerState.Blocked: blocked++; break;
                case RunnerState.Ended: endedCount++; break;
            }
            if (ended is not null) ended[i] = state == RunnerState.Ended;
        }
        return new Wave(running, blocked, endedCount, sent, received);
    }

    public async Task RunAsync()
    {
        CancellationToken token = _run.HardToken;
        var ended = new bool[_runners.Length];
        try
        {
            while (true)
            {
                await _signal.WaitAsync(token);
                if (_stopped) return;
                Wave first = TakeWave(ended);
                if (first.Ended == _runners.Length) return;
                if (first.Running > 0) continue;
                Wave second = TakeWave(null);
                if (second != first) continue;
                if (first.Blocked > 0)
                {
                    // Looks stuck: confirm after a pause (a woken writer shows as running, so this is a formality).
                    await Task.Delay(100, token);
                    if (TakeWave(null) != first) continue;
                    _run.Fail(new ProcessFailure(BlockedNames(), null, null, null, DeadlockMessage(), null));
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
                _runners[member].Inbox.EnqueueControl(new Envelope(EnvelopeKind.ForceEnd, null, null, 0, -1));
            }
        }
        return any;
    }

    private IEnumerable<string> Open(bool[] ended) =>
        _runners.Where((_, i) => !ended[i]).Select(r => r.Name);

    private string BlockedNames() =>
        string.Join(", ", _runners.Where(r => r.Status.State == RunnerState.Blocked).Select(r => r.Name));

    private string DeadlockMessage()
    {
        var waits = new List<string>();
        foreach (ProcessRunner runner in _runners)
        {
            if (runner.Status.State != RunnerState.Blocked) continue;
            foreach (IOutputPort output in runner.Outputs)
            {
                if (!output.Sender.HasPending) continue;
                foreach (Destination d in output.Sender.Destinations)
                {
                    if (d.Lane.Queued > 0)
                        waits.Add($"'{runner.Name}' waits to write stream '{output.Stream.Name}' (read by '{d.Reader.Name}', {d.Lane.Queued} of {d.Lane.Capacity} items queued)");
                }
            }
        }
        return "Deadlock: every running process waits for room in a full queue: " + string.Join("; ", waits) +
               ". A cycle whose processes emit more than they take fills its queues; raise StreamCapacity (--capacity) or emit less inside the cycle.";
    }
}
