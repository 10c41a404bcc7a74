using Millrace.Runtime;

namespace Millrace.RabbitMQ;

/// <summary>
/// How the instances of one process (replicas: the same process started on several hosts, competing
/// for its queues) agree that its inputs are over, and which of them sends its end marks.
/// </summary>
/// <remarks>
/// An end mark reaches only the instance that took it; it tells the others (<c>end-seen</c>). Once
/// every writer of every input has ended: alone, an instance simply ends. Otherwise the instance
/// with the smallest id (the closer) asks all to stop taking messages and finish what they hold
/// (<c>prepare</c>); when every live instance is idle and the input queues are empty it tells them
/// to end (<c>finish</c>), waits until each has its outputs confirmed (<c>finished</c>), and only
/// then sends the process's end marks, once. Anything else (a queue not empty yet, an instance
/// still busy) ends the round (<c>resume</c>) and another follows. Instances announce themselves
/// every second; one not heard for 4 s is gone (and what it held goes back to the queues).
/// </remarks>
internal sealed class EndProtocol
{
    private static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(1);
    private static readonly long GoneAfterMs = 4000;

    private readonly ProcessPort _port;
    private readonly RunContext _run;
    private readonly Action<ControlMessage> _send;
    private readonly Func<Task<bool>> _queuesEmpty;
    private readonly object _lock = new();
    private readonly HashSet<(int Lane, int Writer)> _endSeen = new();
    private readonly int _endsNeeded;
    private readonly Dictionary<string, long> _others = new();
    private readonly Dictionary<string, bool> _votes = new();
    private readonly HashSet<string> _finished = new();
    private readonly Signal _wake = new();
    private int _round;
    private string[] _roundMembers = Array.Empty<string>();
    private bool _finishing;
    private bool _closer;
    private TaskCompletionSource<bool>? _allVoted;
    private TaskCompletionSource _othersFinished = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public EndProtocol(ProcessPort port, RunContext run, int endsNeeded, Action<ControlMessage> send, Func<Task<bool>> queuesEmpty)
    {
        _port = port;
        _run = run;
        _endsNeeded = endsNeeded;
        _send = send;
        _queuesEmpty = queuesEmpty;
    }

    public string Instance => _port.Instance;

    /// <summary>This instance sends the process's end marks (it is alone, or the closer).</summary>
    public bool SendsEnds
    {
        get { lock (_lock) return _closer; }
    }

    /// <summary>Completes when the other instances of the last round have their outputs confirmed.</summary>
    public Task OthersFinished => _othersFinished.Task;

    private ControlMessage Message(string type) => new() { Type = type, Index = _port.Index, Instance = Instance, Round = _round };

    public Task RunAsync() => Task.Run(async () =>
    {
        CancellationToken stop = _run.HardToken;
        long lastBeat = 0;
        try
        {
            while (!stop.IsCancellationRequested)
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
                if (finishing) return;
                if (ended && others.Length == 0)
                {
                    Finish(closer: true, Array.Empty<string>());
                    return;
                }
                if (ended && others.All(o => string.CompareOrdinal(Instance, o) < 0))
                {
                    if (await RoundAsync(others, stop)) return;
                    await Task.Delay(300, stop);
                    continue;
                }
                await _wake.WaitAsync(TimeSpan.FromMilliseconds(200));
            }
        }
        catch (OperationCanceledException)
        {
        }
    });

    /// <summary>
    /// Says this instance is here, and repeats the end marks it knows of: an instance that started
    /// later, or missed a message, learns them this way.
    /// </summary>
    public void Announce()
    {
        _send(Message("member"));
        (int Lane, int Writer)[] seen;
        lock (_lock) seen = _endSeen.ToArray();
        foreach (var (lane, writer) in seen)
        {
            var message = Message("end-seen");
            message.Lane = lane;
            message.Writer = writer;
            _send(message);
        }
    }

    /// <summary>An end mark taken from one of this process's queues.</summary>
    public void EndTaken(int lane, int writer)
    {
        bool added;
        lock (_lock) added = _endSeen.Add((lane, writer));
        if (added)
        {
            var message = Message("end-seen");
            message.Lane = lane;
            message.Writer = writer;
            _send(message);
        }
        _wake.Set();
    }

    private static readonly bool Debug = Environment.GetEnvironmentVariable("MILLRACE_DEBUG") == "1";

    private void Log(string text)
    {
        if (Debug) Console.Error.WriteLine($"[millrace debug] {_port.Name} {Instance[..6]}: {text}");
    }

    public void OnControl(ControlMessage message)
    {
        bool mine = message.Instance == Instance;
        if (message.Type != "member" && message.Type != "end-seen") Log($"got {message.Type} round {message.Round} from {message.Instance?[..6]} ok={message.Ok}");
        switch (message.Type)
        {
            case "member" when !mine:
                lock (_lock) _others[message.Instance!] = Environment.TickCount64;
                break;
            case "end-seen" when !mine:
                lock (_lock) _endSeen.Add((message.Lane, message.Writer));
                _wake.Set();
                break;
            case "prepare":
                _ = Task.Run(() => PrepareAsync(message));
                break;
            case "prepared":
                lock (_lock)
                {
                    if (message.Round != _round || _allVoted is null) return;
                    _votes[message.Instance!] = message.Ok;
                    if (_roundMembers.All(_votes.ContainsKey)) _allVoted.TrySetResult(_votes.Values.All(v => v));
                }
                break;
            case "finish" when !mine:
                Finish(closer: false, Array.Empty<string>());
                break;
            case "resume" when !mine:
                _ = _port.ResumeConsumingAsync();
                break;
            case "finished" when !mine:
                lock (_lock)
                {
                    _finished.Add(message.Instance!);
                    if (_closer && _roundMembers.Where(m => m != Instance).All(_finished.Contains)) _othersFinished.TrySetResult();
                }
                break;
        }
    }

    /// <summary>The closer's round: everyone stops taking and finishes what it holds; if all are idle and the queues empty, finish.</summary>
    private async Task<bool> RoundAsync(string[] others, CancellationToken stop)
    {
        TaskCompletionSource<bool> allVoted = new(TaskCreationOptions.RunContinuationsAsynchronously);
        ControlMessage prepare;
        lock (_lock)
        {
            _round++;
            _votes.Clear();
            _roundMembers = others.Append(Instance).ToArray();
            _allVoted = allVoted;
            prepare = Message("prepare");
        }
        _send(prepare);
        bool ready;
        try
        {
            ready = await allVoted.Task.WaitAsync(TimeSpan.FromSeconds(8), stop);
        }
        catch (TimeoutException)
        {
            ready = false;
        }
        if (ready && await _queuesEmpty())
        {
            Finish(closer: true, others);
            var finish = Message("finish");
            _send(finish);
            return true;
        }
        _send(Message("resume"));
        await _port.ResumeConsumingAsync();
        return false;
    }

    /// <summary>Any instance, on the closer's prepare: stop taking messages, finish what is held, say whether idle.</summary>
    private async Task PrepareAsync(ControlMessage prepare)
    {
        // Only a closer that has seen every end mark prepares: the inputs are over, whatever this instance heard.
        bool idle = false;
        await _port.PauseConsumingAsync();
        for (int i = 0; i < 250 && !(idle = _port.Idle); i++) await Task.Delay(20);
        var reply = Message("prepared");
        reply.Round = prepare.Round;
        reply.Ok = idle;
        // Replies go to the closer through the control exchange; the closer's own comes back the same way.
        _send(reply);
        if (!idle) await _port.ResumeConsumingAsync();
        else
        {
            // A closer that dies mid-round must not leave this instance paused for ever.
            await Task.Delay(TimeSpan.FromSeconds(10));
            bool finishing;
            lock (_lock) finishing = _finishing;
            if (!finishing) await _port.ResumeConsumingAsync();
        }
    }

    private void Finish(bool closer, string[] others)
    {
        Log($"finish as {(closer ? "closer" : "member")}, others {string.Join(",", others.Select(o => o[..6]))}");
        lock (_lock)
        {
            if (_finishing) return;
            _finishing = true;
            _closer = closer;
            if (!closer || others.Length == 0) _othersFinished.TrySetResult();
        }
        _port.EndInputs();
        _wake.Set();
    }

    /// <summary>This instance's outputs are confirmed after it ended: the closer may send the end marks.</summary>
    public void Finished()
    {
        bool closer;
        lock (_lock) closer = _closer;
        if (!closer) _send(Message("finished"));
    }
}
