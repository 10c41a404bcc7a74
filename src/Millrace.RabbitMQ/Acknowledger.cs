using Millrace.Engine;

namespace Millrace.RabbitMQ;

/// <summary>
/// A message taken from one of the process's queues, until it is acknowledged. The same message may
/// arrive more than once (the writer published it again after a lost connection, or the broker
/// delivers it again on a new channel); every copy is acknowledged together, once.
/// </summary>
internal sealed class PendingAck : Receipt
{
    private readonly Acknowledger _owner;

    public PendingAck(Acknowledger owner, string messageId, bool end)
    {
        _owner = owner;
        MessageId = messageId;
        End = end;
    }

    public string MessageId { get; }
    public bool End { get; }

    /// <summary>Delivery tags of the copies taken, with the epoch of the consuming channel of each. Under the acknowledger's lock.</summary>
    public List<(ulong Tag, long Epoch)> Tags { get; } = new(1);

    /// <summary>Acknowledge once every message the process accepted up to this one is confirmed.</summary>
    public long Required;

    public override void Handled() => _owner.Handled(this);
}

/// <summary>
/// Which taken messages may be acknowledged, and when: a message is acknowledged only after the
/// process handled its items and the broker confirmed every message the process had accepted for
/// publishing by then (so what it produced is safe); end marks only when the process has ended.
/// In order: a message is never acknowledged before one handled earlier. Copies of one message are
/// acknowledged together, and a copy of a message acknowledged lately is acknowledged at once.
/// The broker calls are made by <see cref="RunAsync"/>; the decisions are plain state, testable alone.
/// </summary>
internal sealed class Acknowledger
{
    private static readonly TimeSpan IdleWake = TimeSpan.FromSeconds(1);

    private readonly object _lock = new();
    private readonly Func<long> _accepted;
    private readonly Dictionary<string, PendingAck> _pending = new();
    private readonly Queue<PendingAck> _handled = new();
    private readonly List<PendingAck> _ends = new();
    private readonly RecentIds _acked = new(1 << 16);
    private readonly Queue<(ulong Tag, long Epoch)> _toAck = new();
    private readonly Queue<(ulong Tag, long Epoch)> _toReturn = new();
    private readonly AsyncSignal _work = new();
    private long _confirmed;

    /// <param name="accepted">Messages the process has accepted for publishing so far (the publisher's count).</param>
    public Acknowledger(Func<long> accepted) => _accepted = accepted;

    /// <summary>What happened to a copy just taken from a queue.</summary>
    public enum Taken
    {
        /// <summary>A message not seen before: hand it to the process.</summary>
        New,
        /// <summary>Another copy of a message the process holds: acknowledged with it.</summary>
        Copy,
        /// <summary>A copy of a message acknowledged lately: acknowledged now, not handled again.</summary>
        Done,
    }

    /// <summary>Consumer: a copy of <paramref name="messageId"/> arrived with <paramref name="tag"/> on the channel of <paramref name="epoch"/>.</summary>
    public Taken Take(string messageId, bool end, ulong tag, long epoch, out PendingAck? pending)
    {
        lock (_lock)
        {
            if (_pending.TryGetValue(messageId, out PendingAck? known))
            {
                known.Tags.Add((tag, epoch));
                pending = null;
                return Taken.Copy;
            }
            if (_acked.Contains(messageId))
            {
                _toAck.Enqueue((tag, epoch));
                pending = null;
            }
            else
            {
                pending = new PendingAck(this, messageId, end);
                pending.Tags.Add((tag, epoch));
                _pending[messageId] = pending;
                return Taken.New;
            }
        }
        _work.Set();
        return Taken.Done;
    }

    /// <summary>A message taken but not handed to the process goes back to its queue (for another instance, or a restart).</summary>
    public void GiveBack(PendingAck pending)
    {
        lock (_lock)
        {
            _pending.Remove(pending.MessageId);
            foreach (var copy in pending.Tags) _toReturn.Enqueue(copy);
        }
        _work.Set();
    }

    /// <summary>A message that failed (it could not be decoded): forgotten here, left unacknowledged in its queue.</summary>
    public void Forget(PendingAck pending)
    {
        lock (_lock) _pending.Remove(pending.MessageId);
    }

    /// <summary>A message of no use to the process (an older generation's; a marker, once handed over): acknowledged at once.</summary>
    public void Drop(PendingAck pending)
    {
        lock (_lock) AcknowledgeLocked(pending);
        _work.Set();
    }

    /// <summary>An end mark held until the process has ended (or, with replicas, until its own end marks are out).</summary>
    public void HoldEnd(PendingAck pending)
    {
        lock (_lock) _ends.Add(pending);
    }

    /// <summary>Process thread: the items of <paramref name="pending"/> are handled and what they produced is accepted for publishing.</summary>
    public void Handled(PendingAck pending)
    {
        if (pending.End)
        {
            // An end mark is acknowledged only when this process's own end marks are confirmed:
            // a process killed before that is started again and still sees its inputs end.
            HoldEnd(pending);
            return;
        }
        Done(pending);
    }

    /// <summary>
    /// A message that could not be read was published to the run's dead-letter queue: acknowledged once that (and
    /// everything the process accepted before) is confirmed. End marks too: this one is not the process's input.
    /// </summary>
    public void SetAside(PendingAck pending) => Done(pending);

    private void Done(PendingAck pending)
    {
        long required = _accepted();
        bool any;
        lock (_lock)
        {
            pending.Required = required;
            _handled.Enqueue(pending);
            any = CollectLocked();
        }
        if (any) _work.Set();
    }

    /// <summary>The broker confirmed every message the process accepted up to number <paramref name="upTo"/>.</summary>
    public void Confirmed(long upTo)
    {
        bool any;
        lock (_lock)
        {
            if (upTo <= _confirmed) return;
            _confirmed = upTo;
            any = CollectLocked();
        }
        if (any) _work.Set();
    }

    private bool CollectLocked()
    {
        bool any = false;
        while (_handled.TryPeek(out PendingAck? next) && next.Required <= _confirmed)
        {
            _handled.Dequeue();
            AcknowledgeLocked(next);
            any = true;
        }
        return any;
    }

    private void AcknowledgeLocked(PendingAck pending)
    {
        _pending.Remove(pending.MessageId);
        _acked.Add(pending.MessageId);
        foreach (var copy in pending.Tags) _toAck.Enqueue(copy);
    }

    /// <summary>The process ended: the end marks it holds are acknowledged. Returns how many messages it held unhandled (they go back).</summary>
    public int AcknowledgeEnds(bool acknowledge)
    {
        int left;
        lock (_lock)
        {
            left = _pending.Values.Count(p => !p.End);
            if (acknowledge)
            {
                foreach (PendingAck end in _ends) AcknowledgeLocked(end);
                _ends.Clear();
            }
        }
        _work.Set();
        return left;
    }

    /// <summary>Nothing handled is waiting for confirms, and nothing but end marks is held.</summary>
    public bool Quiet
    {
        get
        {
            lock (_lock) return _handled.Count == 0 && _pending.Values.All(p => p.End);
        }
    }

    /// <summary>No acknowledgement is left to send.</summary>
    public bool Sent
    {
        get
        {
            lock (_lock) return _toAck.Count == 0;
        }
    }

    public string Describe()
    {
        lock (_lock)
            return $"taken {_pending.Count}, handled awaiting confirms {_handled.Count}, end marks {_ends.Count}, acks to send {_toAck.Count}";
    }

    /// <summary>
    /// The next acknowledgement to send on the channel of <paramref name="epoch"/>. Tags of older
    /// channels are dropped (those copies are delivered again on a newer one); a tag of a newer
    /// channel than <paramref name="epoch"/> stops here (the caller looks at the channel again).
    /// </summary>
    public bool NextAck(long epoch, out ulong tag) => Next(_toAck, epoch, out tag);

    /// <summary>The next message to give back (negative acknowledgement, requeued) on the channel of <paramref name="epoch"/>.</summary>
    public bool NextReturn(long epoch, out ulong tag) => Next(_toReturn, epoch, out tag);

    private bool Next(Queue<(ulong Tag, long Epoch)> queue, long epoch, out ulong tag)
    {
        lock (_lock)
        {
            while (queue.TryPeek(out var next) && next.Epoch <= epoch)
            {
                queue.Dequeue();
                if (next.Epoch < epoch) continue;
                tag = next.Tag;
                return true;
            }
        }
        tag = 0;
        return false;
    }

    /// <summary>Wakes the sending loop (new work, a new channel, or closing).</summary>
    public void Wake() => _work.Set();

    /// <summary>
    /// Sends acknowledgements and returns until <paramref name="closed"/>, on the consuming channel
    /// <paramref name="current"/> gives (with its epoch). A failed call is not retried: its channel is
    /// gone, and the copy is delivered again on the next one and acknowledged then.
    /// </summary>
    public async Task RunAsync(Func<(global::RabbitMQ.Client.IChannel? Channel, long Epoch)> current, Func<bool> closed, TimeSpan callTimeout)
    {
        var batch = new List<ulong>();
        var coalescer = new AckCoalescer();
        long coalescerEpoch = -1;
        while (true)
        {
            var (channel, epoch) = current();
            if (epoch != coalescerEpoch)
            {
                // Delivery tags are numbered per channel: a new one starts again at 1.
                coalescer = new AckCoalescer();
                coalescerEpoch = epoch;
            }
            while (NextReturn(epoch, out ulong tag))
            {
                coalescer.Resolved(tag);
                await CallAsync(channel, c => c.BasicNackAsync(tag, multiple: false, requeue: true), callTimeout);
            }
            batch.Clear();
            while (NextAck(epoch, out ulong tag)) batch.Add(tag);
            if (batch.Count > 0)
            {
                // One acknowledgement with `multiple` for the run of tags from the lowest unresolved one on, single ones for the rest.
                ulong upTo = coalescer.Plan(batch, out int covered);
                if (covered > 1) await CallAsync(channel, c => c.BasicAckAsync(upTo, multiple: true), callTimeout);
                else if (covered == 1) await CallAsync(channel, c => c.BasicAckAsync(upTo, multiple: false), callTimeout);
                foreach (ulong tag in batch)
                    if (covered == 0 || tag > upTo) await CallAsync(channel, c => c.BasicAckAsync(tag, multiple: false), callTimeout);
            }
            if (closed()) return;
            // A new channel meanwhile: its tags may be waiting behind.
            if (current().Epoch != epoch) continue;
            await _work.WaitAsync(IdleWake);
        }
    }

    private static async Task CallAsync(global::RabbitMQ.Client.IChannel? channel, Func<global::RabbitMQ.Client.IChannel, ValueTask> call, TimeSpan timeout)
    {
        try
        {
            if (channel is not { IsOpen: true }) return;
            ValueTask done = call(channel);
            // Mostly done at once (the frame handed to the connection's writer): then no task and no timer for the bound.
            if (done.IsCompletedSuccessfully) done.GetAwaiter().GetResult();
            else await done.AsTask().WaitAsync(timeout);
        }
        catch (Exception)
        {
            // The channel is gone: that copy is delivered again on the next one and acknowledged then.
        }
    }
}

/// <summary>
/// Which acknowledgements of one consuming channel can go as one with <c>multiple</c>. The broker numbers a channel's
/// deliveries 1, 2, 3...; an acknowledgement with <c>multiple</c> settles every delivery up to its tag not yet settled. So it
/// may cover a tag only when every lower tag is settled already (acknowledged or given back) or acknowledged with it — never a
/// message still held (unhandled, an end mark kept until the process ends, one left in its queue because it could not be read).
/// </summary>
internal sealed class AckCoalescer
{
    private readonly HashSet<ulong> _settledAbove = new();
    private ulong _floor;

    /// <summary>Every delivery up to this tag is settled.</summary>
    public ulong Floor => _floor;

    /// <summary>A tag given back (or acknowledged alone) on the channel.</summary>
    public void Resolved(ulong tag)
    {
        if (tag <= _floor) return;
        _settledAbove.Add(tag);
        while (_settledAbove.Remove(_floor + 1)) _floor++;
    }

    /// <summary>
    /// Takes <paramref name="toAck"/> (tags about to be acknowledged) as settled. Returns the highest of them that one
    /// acknowledgement with <c>multiple</c> may name: it settles exactly those of them at or below it (<paramref name="covered"/>
    /// of them; 0 when none), every other delivery below it being settled already. The tags above it are acknowledged one by one.
    /// </summary>
    public ulong Plan(List<ulong> toAck, out int covered)
    {
        ulong before = _floor;
        foreach (ulong tag in toAck)
            if (tag > _floor) _settledAbove.Add(tag);
        while (_settledAbove.Remove(_floor + 1)) _floor++;
        covered = 0;
        ulong upTo = 0;
        foreach (ulong tag in toAck)
        {
            if (tag <= before || tag > _floor) continue;
            covered++;
            upTo = Math.Max(upTo, tag);
        }
        return upTo;
    }
}

/// <summary>The last N message ids, bounded.</summary>
internal sealed class RecentIds
{
    private readonly HashSet<string> _set = new();
    private readonly string[] _ring;
    private int _next;
    private int _count;

    public RecentIds(int size) => _ring = new string[size];

    public bool Contains(string id) => _set.Contains(id);

    public void Add(string id)
    {
        if (!_set.Add(id)) return;
        if (_count == _ring.Length) _set.Remove(_ring[_next]);
        else _count++;
        _ring[_next] = id;
        _next = (_next + 1) % _ring.Length;
    }
}
