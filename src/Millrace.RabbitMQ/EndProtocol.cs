using Millrace.Control;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;

namespace Millrace.RabbitMQ;

/// <summary>
/// How the instances of one process (replicas: the same process started on several hosts, competing
/// for its queues; or just one) agree that its inputs are over, and which of them sends its end marks.
/// </summary>
/// <remarks>
/// An end mark reaches only the instance that took it; it tells the others (<c>end-seen</c>, repeated
/// every second with a <c>member</c> heartbeat). Once every writer of every input has ended, the
/// instance with the smallest id (the closer; alone, itself) runs a round: every instance stops
/// taking messages and finishes what it holds (<c>prepare</c>, answered by <c>prepared</c>); if all
/// are idle and every input queue has no message waiting and no consumer left (an instance the
/// closer does not know of would still be consuming), it tells them to end (<c>finish</c>, repeated
/// until answered), waits until each has its outputs confirmed (<c>finished</c>), and only then sends
/// the process's end marks, once; when those are confirmed it says so (<c>ends-sent</c>), and only
/// then do the others acknowledge the end marks they hold: if the closer dies before, the end marks
/// go back to the queues, and an instance started again finds them. Anything else ends the round
/// (<c>resume</c>) and another follows. An instance that finished for a closer that died meanwhile
/// takes part in the next closer's round (its outputs confirmed, holding only end marks) and waits
/// for that one's end marks instead; one that gave its end marks back takes part in no round.
/// A newcomer is answered at once (a <c>member</c> message back), so that it knows every instance
/// before it takes anything.
/// </remarks>
internal sealed class EndProtocol
{
    private static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(1);
    private static readonly long GoneAfterMs = 4000;
    private static readonly bool Debug = Environment.GetEnvironmentVariable("MILLRACE_DEBUG") == "1";

    private readonly ProcessPort _port;
    private readonly RunContext _run;
    private readonly Action<ControlMessage> _send;
    private readonly object _lock = new();
    private readonly HashSet<(int Lane, int Writer)> _endSeen = new();
    private readonly int _endsNeeded;
    private readonly Dictionary<string, long> _others = new();
    private readonly Dictionary<string, bool> _votes = new();
    private readonly HashSet<string> _finished = new();
    private readonly AsyncSignal _wake = new();
    private readonly TaskCompletionSource _othersFinished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _endsSent = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _round;
    private int _pausedFor;
    private string[] _roundMembers = Array.Empty<string>();
    private bool _finishing;
    private bool _closer;
    private volatile bool _leaving;
    private volatile bool _finishedSent;
    private bool _gaveBack;
    private TaskCompletionSource<bool>? _allVoted;
    private string? _closerInstance;

    public EndProtocol(ProcessPort port, RunContext run, int endsNeeded, Action<ControlMessage> send)
    {
        _port = port;
        _run = run;
        _endsNeeded = endsNeeded;
        _send = send;
    }

    public string Instance => _port.Instance;

    /// <summary>This instance sends the process's end marks (it is alone, or the closer).</summary>
    public bool SendsEnds
    {
        get { lock (_lock) return _closer; }
    }

    /// <summary>
    /// Every writer of every input has ended: the instances agree to end the process, which then acts
    /// (ends its outputs) without receiving anything counted, so termination detection must not take it
    /// for quiet until it has ended.
    /// </summary>
    public bool Agreeing
    {
        get { lock (_lock) return _endSeen.Count == _endsNeeded; }
    }

    /// <summary>The process is ending here: what arrives now goes back to its queue.</summary>
    public bool Finishing
    {
        get { lock (_lock) return _finishing; }
    }

    private ReplicaMessage Message(ReplicaStep step, int round) => new(step, _port.Index, Instance, round);

    private void Log(string text)
    {
        if (Debug) Console.Error.WriteLine($"[millrace debug] {_port.Name} {Instance[..6]}: {text}");
    }

    public Task RunAsync() => Task.Run(async () =>
    {
        CancellationToken stop = _run.HardToken;
        long lastBeat = 0;
        try
        {
            // Announcing goes on until the host leaves: a closer that goes quiet is gone, and an
            // instance started late learns the end marks it missed.
            while (!stop.IsCancellationRequested && !_leaving)
            {
                if (Environment.TickCount64 - lastBeat >= Heartbeat.TotalMilliseconds)
                {
                    lastBeat = Environment.TickCount64;
                    Announce();
                }
                bool ended, finishing;
                string[] others;
                lock (_lock)
                {
                    ended = _endSeen.Count == _endsNeeded;
                    finishing = _finishing;
                    long now = Environment.TickCount64;
                    foreach (string gone in _others.Where(o => now - o.Value > GoneAfterMs).Select(o => o.Key).ToArray()) _others.Remove(gone);
                    others = _others.Keys.ToArray();
                }
                if (!finishing && ended && others.All(o => string.CompareOrdinal(Instance, o) < 0))
                {
                    if (!await RoundAsync(others, stop)) await Task.Delay(300, stop);
                    continue;
                }
                await _wake.WaitAsync(TimeSpan.FromMilliseconds(200));
            }
        }
        catch (OperationCanceledException)
        {
        }
    });

    /// <summary>The host is leaving: stop announcing.</summary>
    public void Leave()
    {
        _leaving = true;
        _wake.Set();
    }

    /// <summary>Another instance of the process said it is here (called each time).</summary>
    public Action? OthersSeen { get; set; }

    /// <summary>Says this instance is here, and repeats the end marks it knows of.</summary>
    public void Announce()
    {
        _send(Message(ReplicaStep.Member, 0));
        (int Lane, int Writer)[] seen;
        lock (_lock) seen = _endSeen.ToArray();
        foreach (var (lane, writer) in seen) _send(EndSeen(lane, writer));
    }

    private ReplicaMessage EndSeen(int lane, int writer) => Message(ReplicaStep.EndSeen, 0) with { Lane = lane, Writer = writer };

    /// <summary>An end mark taken from one of this process's queues.</summary>
    public void EndTaken(int lane, int writer)
    {
        bool added;
        lock (_lock) added = _endSeen.Add((lane, writer));
        if (added) _send(EndSeen(lane, writer));
        _wake.Set();
    }

    public void OnControl(ReplicaMessage message)
    {
        bool mine = message.Instance == Instance;
        if (message.Step is not (ReplicaStep.Member or ReplicaStep.EndSeen)) Log($"got {message.Step} round {message.Round} from {message.Instance[..Math.Min(6, message.Instance.Length)]} ok={message.Ok}");
        switch (message.Step)
        {
            case ReplicaStep.Member when !mine:
                bool newcomer;
                lock (_lock)
                {
                    newcomer = !_others.ContainsKey(message.Instance);
                    _others[message.Instance] = Environment.TickCount64;
                }
                // A newcomer hears of this instance now (not at the next heartbeat): it waits only briefly before taking anything.
                if (newcomer && !_leaving) Announce();
                OthersSeen?.Invoke();
                break;
            case ReplicaStep.EndSeen when !mine:
                lock (_lock) _endSeen.Add((message.Lane, message.Writer));
                _wake.Set();
                break;
            case ReplicaStep.Prepare when !mine && Adopt(message.Instance):
                // Finishing already, its outputs confirmed, for a closer that is gone: it holds only end marks, and the one
                // running this round will send the process's end marks in its place.
                _send(Message(ReplicaStep.Prepared, message.Round) with { Ok = true });
                break;
            case ReplicaStep.Prepare:
                _ = Task.Run(() => PrepareAsync(message.Round));
                break;
            case ReplicaStep.Prepared:
                lock (_lock)
                {
                    if (message.Round != _round || _allVoted is null) return;
                    _votes[message.Instance] = message.Ok;
                    if (_roundMembers.All(_votes.ContainsKey)) _allVoted.TrySetResult(_votes.Values.All(v => v));
                }
                break;
            case ReplicaStep.Finish when !mine:
                Finish(closer: false, message.Instance);
                // Said again: the closer may have missed this instance's answer.
                if (_finishedSent) _send(Message(ReplicaStep.Finished, 0));
                break;
            case ReplicaStep.Resume when !mine:
                _ = ResumeAsync(message.Round);
                break;
            case ReplicaStep.Finished when !mine:
                lock (_lock)
                {
                    _finished.Add(message.Instance);
                    if (_closer && _roundMembers.Where(m => m != Instance).All(_finished.Contains)) _othersFinished.TrySetResult();
                }
                break;
            case ReplicaStep.EndsSent when !mine:
                _endsSent.TrySetResult();
                break;
        }
    }

    /// <summary>The closer's round (alone too): everyone stops taking and finishes what it holds; if all are idle and the queues quiet, finish.</summary>
    private async Task<bool> RoundAsync(string[] others, CancellationToken stop)
    {
        TaskCompletionSource<bool> allVoted = new(TaskCreationOptions.RunContinuationsAsynchronously);
        int round;
        lock (_lock)
        {
            round = ++_round;
            _votes.Clear();
            _roundMembers = others.Append(Instance).ToArray();
            _allVoted = allVoted;
        }
        _send(Message(ReplicaStep.Prepare, round));
        bool ready;
        try
        {
            ready = await allVoted.Task.WaitAsync(TimeSpan.FromSeconds(8), stop);
        }
        catch (TimeoutException)
        {
            ready = false;
        }
        if (ready && await _port.QueuesQuietAsync())
        {
            Finish(closer: true, others);
            _send(Message(ReplicaStep.Finish, round));
            return true;
        }
        Log($"round {round} not ready (votes {(ready ? "all idle" : "missing or busy")})");
        _send(Message(ReplicaStep.Resume, round));
        await ResumeAsync(round);
        return false;
    }

    /// <summary>Any instance, on the closer's prepare: stop taking messages, finish what is held, say whether idle.</summary>
    private async Task PrepareAsync(int round)
    {
        lock (_lock)
        {
            if (_finishing) return;
            _pausedFor = round;
        }
        // Returns once what the broker sent before the cancel (still in the client's dispatcher) has reached the process;
        // false if that did not happen within its bound: then this instance is not idle, whatever it holds now.
        bool drained = await _port.PauseConsumingAsync();
        bool idle = false;
        if (drained)
            for (int i = 0; i < 250 && !(idle = _port.Idle); i++) await Task.Delay(20);
        ReplicaMessage reply = Message(ReplicaStep.Prepared, round) with { Ok = idle };
        _send(reply);
        if (!idle)
        {
            await ResumeAsync(round);
            return;
        }
        // A closer that dies mid-round must not leave this instance paused for ever.
        await Task.Delay(TimeSpan.FromSeconds(10));
        await ResumeAsync(round);
    }

    /// <summary>Takes messages again, unless a later round paused it meanwhile or the process is ending.</summary>
    private async Task ResumeAsync(int round)
    {
        lock (_lock)
        {
            if (_finishing || _pausedFor != round) return;
            _pausedFor = 0;
        }
        await _port.ResumeConsumingAsync();
    }

    /// <summary>
    /// A round run by <paramref name="closer"/> while this instance is finishing: it takes part (and that one becomes its closer)
    /// if its outputs are confirmed and it still holds its end marks. Not otherwise: it is still ending, or it gave them back.
    /// </summary>
    private bool Adopt(string closer)
    {
        lock (_lock)
        {
            if (!_finishing || _closer || !_finishedSent || _gaveBack) return false;
            _closerInstance = closer;
            return true;
        }
    }

    private void Finish(bool closer, string[] others) => Finish(closer, others, null);

    private void Finish(bool closer, string by) => Finish(closer, Array.Empty<string>(), by);

    private void Finish(bool closer, string[] others, string? by)
    {
        Log($"finish as {(closer ? "closer" : "member")}, others {string.Join(",", others.Select(o => o[..Math.Min(6, o.Length)]))}");
        lock (_lock)
        {
            if (_finishing)
            {
                // Told again, by a closer that took over from one that is gone: that one is whose end marks this instance waits for.
                if (!_closer && by is not null && !_gaveBack) _closerInstance = by;
                return;
            }
            _finishing = true;
            _closer = closer;
            // A member's closer: the instance that ran the round and said finish.
            _closerInstance = by;
            if (!closer || others.Length == 0) _othersFinished.TrySetResult();
        }
        _port.EndInputs();
        _wake.Set();
    }

    /// <summary>
    /// The closer, before sending the end marks: until the other instances have their outputs
    /// confirmed, saying <c>finish</c> again now and then (it may have been lost). Bounded.
    /// </summary>
    public async Task WaitForOthersAsync()
    {
        int round;
        lock (_lock) round = _round;
        DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!_othersFinished.Task.IsCompleted && DateTime.UtcNow < deadline)
        {
            if (await Task.WhenAny(_othersFinished.Task, Task.Delay(TimeSpan.FromSeconds(2))) != _othersFinished.Task)
                _send(Message(ReplicaStep.Finish, round));
        }
        if (!_othersFinished.Task.IsCompleted)
            Notices.Say(_run.Options.Logger, $"process '{_port.Name}': not every instance said its outputs were confirmed within 60 s; sending its end marks anyway.");
    }

    /// <summary>
    /// This instance ended and its outputs are confirmed. The closer says its end marks are out;
    /// another instance says it is done and waits (bounded) for that. True when the end marks this
    /// instance holds may be acknowledged; false leaves them to go back to the queues.
    /// </summary>
    public async Task<bool> CompletedAsync()
    {
        bool closer;
        lock (_lock) closer = _closer;
        if (closer)
        {
            _send(Message(ReplicaStep.EndsSent, 0));
            return true;
        }
        _finishedSent = true;
        _send(Message(ReplicaStep.Finished, 0));
        // Until the closer says its end marks are out; it may die meanwhile (no heartbeat for a few seconds):
        // then the end marks held here go back to the queues, for an instance started again.
        DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            if (await Task.WhenAny(_endsSent.Task, Task.Delay(TimeSpan.FromMilliseconds(500))) == _endsSent.Task) return true;
            if (GiveBackIfCloserGone())
            {
                Notices.Say(_run.Options.Logger, $"process '{_port.Name}': the instance sending its end marks is gone before it confirmed them; " +
                                        "the end marks this instance took go back to the queues.");
                return false;
            }
        }
        lock (_lock) _gaveBack = true;
        Notices.Say(_run.Options.Logger, $"process '{_port.Name}': the instance sending its end marks did not confirm them within 60 s; " +
                                "the end marks this instance took go back to the queues.");
        return false;
    }

    /// <summary>
    /// The closer has not been heard from lately (heartbeats come every second): the end marks held here go back to the queues,
    /// and from now on no other closer may count on them.
    /// </summary>
    private bool GiveBackIfCloserGone()
    {
        lock (_lock)
        {
            if (_endsSent.Task.IsCompleted) return false;
            bool alive = _closerInstance is null ||
                         (_others.TryGetValue(_closerInstance, out long last) && Environment.TickCount64 - last <= GoneAfterMs);
            if (!alive) _gaveBack = true;
            return !alive;
        }
    }
}
