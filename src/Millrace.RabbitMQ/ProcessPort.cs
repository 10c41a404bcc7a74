using System.Buffers;
using System.Security.Cryptography;
using Millrace.Codecs;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;

namespace Millrace.RabbitMQ;

/// <summary>A message on its way to an exchange, kept until the broker confirms it.</summary>
internal sealed class Outgoing
{
    public long Seq;
    public required string Exchange;
    public required string Stream;
    public required ReadOnlyMemory<byte> Body;
    public required BasicProperties Properties;
    /// <summary>Its publish sequence number on the channel it was last published on.</summary>
    public ulong ChannelSeq;
}

/// <summary>
/// A message taken from one of the process's queues, until it is acknowledged. The same message may
/// arrive more than once (the writer published it again after a lost connection, or the broker
/// delivers it again on a new channel); every copy is acknowledged together, once.
/// </summary>
internal sealed class PendingAck : Receipt
{
    private readonly ProcessPort _port;

    public PendingAck(ProcessPort port, string messageId, bool end)
    {
        _port = port;
        MessageId = messageId;
        End = end;
    }

    public string MessageId { get; }
    public bool End { get; }

    /// <summary>Delivery tags of the copies taken, with the epoch of the consuming channel of each.</summary>
    public List<(ulong Tag, long Epoch)> Tags { get; } = new(1);

    /// <summary>Acknowledge once every message the process accepted up to this one is confirmed.</summary>
    public long Required;

    public override void Handled() => _port.Handled(this);
}

/// <summary>
/// One hosted process's link to the broker: a channel that publishes its outputs with publisher
/// confirms, and a channel that consumes its input queues with a bounded prefetch. A message taken
/// is acknowledged only after the process has handled its items and the broker has confirmed every
/// message they produced (at-least-once: a process killed at any point loses nothing).
/// </summary>
internal sealed class ProcessPort
{
    private static readonly TimeSpan IdleWake = TimeSpan.FromSeconds(1);

    /// <summary>The longest any one call to the broker may take before its channel is given up and made again.</summary>
    private static readonly TimeSpan OperationTimeout = TimeSpan.FromSeconds(10);

    private readonly BrokerSession _session;
    private readonly RunContext _run;
    private readonly object _lock = new();
    private readonly string _incarnation = Convert.ToHexString(RandomNumberGenerator.GetBytes(8)).ToLowerInvariant();
    private readonly int _maxInFlight;
    private readonly ushort _prefetch;
    private readonly List<(Lane Lane, string Queue, StreamShape Stream, BatchCodec Codec)> _inputs = new();
    private readonly string[] _writerNames;

    // Publishing: accepted messages wait in _toSend, then in _unconfirmed until confirmed; both in order.
    private readonly LinkedList<Outgoing> _toSend = new();
    private readonly LinkedList<Outgoing> _unconfirmed = new();
    private readonly Signal _publishWork = new();
    private long _assigned;
    private long _confirmed;
    private ProcessRunner? _waiter;
    private IChannel? _publishChannel;
    private long _publishGeneration;
    private ulong _channelSeq;
    /// <summary>A refused message went again on this channel: publishing order no longer follows sequence order.</summary>
    private bool _outOfOrder;
    private CancellationTokenSource _channelLost = new();
    private int _backoffMs;
    private long _pausedUntil;

    // Consuming and acknowledging.
    private readonly Dictionary<string, PendingAck> _pending = new();
    private readonly Queue<PendingAck> _handled = new();
    private readonly List<PendingAck> _ends = new();
    private readonly RecentIds _acked = new(1 << 16);
    private readonly Queue<(ulong Tag, long Epoch)> _toAck = new();
    private readonly Queue<(ulong Tag, long Epoch)> _toNack = new();
    private readonly Signal _ackWork = new();
    private IChannel? _consumeChannel;
    private List<string> _consumerTags = new();
    private bool _paused;
    private readonly List<Outgoing> _heldEnds = new();
    private long _consumeEpoch;
    private readonly SemaphoreSlim _setUp = new(1, 1);
    private long _externalMessages;

    private volatile bool _closed;
    private Task _publishLoop = Task.CompletedTask;
    private Task _ackLoop = Task.CompletedTask;

    public ProcessPort(ProcessRunner runner, int index, BrokerSession session, RunContext run, int maxInFlight, ushort prefetch, string[] processNames)
    {
        Runner = runner;
        Index = index;
        _session = session;
        _run = run;
        _maxInFlight = maxInFlight;
        _prefetch = prefetch;
        _writerNames = processNames;
    }

    public ProcessRunner Runner { get; }
    public int Index { get; }
    public string Name => Runner.Name;

    /// <summary>Messages accepted for publishing so far.</summary>
    public long Assigned
    {
        get { lock (_lock) return _assigned; }
    }

    public void AddInput(Lane lane, string queue, StreamShape stream, BatchCodec codec) => _inputs.Add((lane, queue, stream, codec));

    public async Task StartAsync()
    {
        await SetUpConsumerAsync();
        _publishLoop = Task.Run(PublishLoopAsync);
        _ackLoop = Task.Run(AckLoopAsync);
    }

    // ---------------------------------------------------------------- publishing

    /// <summary>Whether a new message fits within the bound; if not, <paramref name="writer"/> is woken once one is confirmed.</summary>
    public bool HasRoom(ProcessRunner writer)
    {
        lock (_lock)
        {
            if (_toSend.Count + _unconfirmed.Count < _maxInFlight) return true;
            _waiter = writer;
            return false;
        }
    }

    /// <summary>Takes a message for publishing (end marks are taken even beyond the bound).</summary>
    public void Accept(Outgoing message)
    {
        lock (_lock)
        {
            message.Seq = ++_assigned;
            message.Properties.MessageId = $"{_incarnation}-{message.Seq}";
            _toSend.AddLast(message);
        }
        _publishWork.Set();
    }

    /// <summary>For MILLRACE_DEBUG=1: where this process's messages are.</summary>
    public string Describe()
    {
        lock (_lock)
            return $"{Name}: accepted {_assigned}, confirmed up to {_confirmed}, to send {_toSend.Count}, unconfirmed {_unconfirmed.Count}" +
                   $"{(Refusing ? " (refused)" : "")}, taken {_pending.Count}, handled awaiting confirms {_handled.Count}, end marks {_ends.Count}, " +
                   $"acks to send {_toAck.Count}, publish channel {(_publishChannel is { IsOpen: true } ? "open" : "none")} gen {_publishGeneration}, " +
                   $"consume epoch {_consumeEpoch}, connection {_session.Generation}, state {Runner.Status.State}";
    }

    /// <summary>
    /// An end mark of this process: with several instances only one sends them, after the others
    /// have their outputs confirmed (their items must not arrive after it).
    /// </summary>
    public void AcceptEnd(Outgoing message)
    {
        if (Protocol is not { } protocol)
        {
            Accept(message);
            return;
        }
        if (!protocol.SendsEnds) return;
        bool first;
        lock (_lock)
        {
            first = _heldEnds.Count == 0;
            _heldEnds.Add(message);
        }
        // Not on the process thread's context: that thread is about to end.
        if (first) _ = Task.Run(ReleaseEndsAsync);
    }

    private async Task ReleaseEndsAsync()
    {
        // Bounded: an instance that died after agreeing cannot hold the end for ever.
        await Protocol!.WaitForOthersAsync();
        Outgoing[] ends;
        lock (_lock)
        {
            ends = _heldEnds.ToArray();
            _heldEnds.Clear();
        }
        foreach (Outgoing end in ends) Accept(end);
    }

    public int InFlight
    {
        get { lock (_lock) return _toSend.Count + _unconfirmed.Count; }
    }

    public string Fill
    {
        get
        {
            lock (_lock)
                return (Refusing ? "its queue on the broker is full; " : "") +
                       $"{_toSend.Count + _unconfirmed.Count} of {_maxInFlight} messages not yet confirmed by the broker";
        }
    }

    private async Task PublishLoopAsync()
    {
        while (!_closed)
        {
            IChannel channel;
            try
            {
                channel = await PublishChannelAsync();
            }
            catch (Exception e) when (!_closed)
            {
                if (e is BrokerUnreachableException) return; // the session fails the run
                await Task.Delay(100);
                continue;
            }
            while (!_closed)
            {
                long pause;
                lock (_lock) pause = _pausedUntil - Environment.TickCount64;
                if (pause > 0) await Task.Delay((int)pause);
                Outgoing? message;
                lock (_lock)
                {
                    if (_toSend.First is not { } first || !ReferenceEquals(channel, _publishChannel))
                    {
                        message = null;
                    }
                    else if (_unconfirmed.Count > 0 && (Refusing || first.Value.Properties.Type == Wire.EndType))
                    {
                        // An end mark leaves only after everything before it is confirmed (a refused
                        // message must never arrive after it); while queues refuse, one message at a time.
                        message = null;
                    }
                    else
                    {
                        message = first.Value;
                        _toSend.RemoveFirst();
                        message.ChannelSeq = ++_channelSeq;
                        InsertInOrder(_unconfirmed, message);
                    }
                }
                if (message is null) break;
                try
                {
                    // Never wait on a publish for ever: with confirms on, RabbitMQ.Client 7 can hang a
                    // publish that was under way when the connection went (rabbitmq-dotnet-client#1930).
                    CancellationToken lost = _channelLost.Token;
                    await channel.BasicPublishAsync(message.Exchange, "", false, message.Properties, message.Body, lost)
                        .AsTask().WaitAsync(OperationTimeout, lost);
                }
                catch (Exception)
                {
                    // Lost with the channel (whatever the client calls it): republished on the next one, in order.
                    await AbandonAsync(channel);
                    break;
                }
            }
            if (_closed) return;
            bool more;
            lock (_lock)
                more = _toSend.Count > 0 && _unconfirmed.Count == 0 && ReferenceEquals(channel, _publishChannel) && channel.IsOpen;
            if (!more) await _publishWork.WaitAsync(IdleWake);
        }
    }

    /// <summary>The publishing channel of the current connection; a new one puts what was not confirmed back in front.</summary>
    private async Task<IChannel> PublishChannelAsync()
    {
        if (_publishChannel is { IsOpen: true } open && _publishGeneration == _session.Generation) return open;
        IConnection connection = await _session.ConnectionAsync();
        long generation = _session.Generation;
        IChannel channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: false))
            .WaitAsync(OperationTimeout);
        var lost = new CancellationTokenSource();
        channel.ChannelShutdownAsync += (_, _) =>
        {
            lost.Cancel();
            return Task.CompletedTask;
        };
        channel.BasicAcksAsync += (_, e) =>
        {
            Confirmed(channel, e.DeliveryTag, e.Multiple);
            return Task.CompletedTask;
        };
        channel.BasicNacksAsync += (_, e) =>
        {
            Refused(channel, e.DeliveryTag, e.Multiple);
            return Task.CompletedTask;
        };
        lock (_lock)
        {
            _channelLost = lost;
            _publishChannel = channel;
            _publishGeneration = generation;
            _channelSeq = 0;
            _outOfOrder = false;
            // Whatever the old channel did not confirm goes again, in order among what waits (a
            // refused message may already wait there, behind newer unconfirmed ones).
            foreach (Outgoing message in _unconfirmed) InsertInOrder(_toSend, message);
            _unconfirmed.Clear();
        }
        return channel;
    }

    /// <summary>Gives a publishing channel up (its connection went, or a call on it hung); the loop makes a new one.</summary>
    private async Task AbandonAsync(IChannel channel)
    {
        CancellationTokenSource lost;
        lock (_lock) lost = _channelLost;
        lost.Cancel();
        try
        {
            if (channel.IsOpen) await channel.AbortAsync().WaitAsync(TimeSpan.FromSeconds(2));
        }
        catch (Exception)
        {
        }
        lock (_lock)
        {
            if (ReferenceEquals(channel, _publishChannel)) _publishChannel = null;
        }
        await Task.Delay(50);
    }

    /// <summary>The session lost its connection: calls under way on its channels end now.</summary>
    public void ConnectionLost()
    {
        lock (_lock) _channelLost.Cancel();
        _publishWork.Set();
        _ackWork.Set();
    }

    private void Confirmed(IChannel channel, ulong tag, bool multiple)
    {
        ProcessRunner? waiter;
        lock (_lock)
        {
            if (!ReferenceEquals(channel, _publishChannel)) return;
            // Ordered by sequence number, not by publishing order (a refused message goes again
            // later): look at every one.
            for (LinkedListNode<Outgoing>? node = _unconfirmed.First; node is not null;)
            {
                LinkedListNode<Outgoing>? next = node.Next;
                if (node.Value.ChannelSeq == tag || (multiple && node.Value.ChannelSeq < tag)) _unconfirmed.Remove(node);
                else if (node.Value.ChannelSeq > tag && !_outOfOrder) break;
                node = next;
            }
            long firstOpen = Math.Min(_unconfirmed.First?.Value.Seq ?? long.MaxValue, _toSend.First?.Value.Seq ?? long.MaxValue);
            _confirmed = firstOpen == long.MaxValue ? _assigned : firstOpen - 1;
            waiter = _waiter;
            _waiter = null;
            Refusing = false;
            _backoffMs = 0;
            CollectAcksLocked();
        }
        waiter?.WakeForRoom();
        _ackWork.Set();
        _publishWork.Set();
    }

    /// <summary>
    /// The broker refused a message: a reader's queue is at its length limit (backpressure across the
    /// broker). It goes back in front, in order, and publishing pauses, longer each time, until the
    /// broker takes messages again.
    /// </summary>
    private void Refused(IChannel channel, ulong tag, bool multiple)
    {
        bool poke;
        lock (_lock)
        {
            if (!ReferenceEquals(channel, _publishChannel)) return;
            var refused = new List<Outgoing>();
            for (LinkedListNode<Outgoing>? node = _unconfirmed.First; node is not null;)
            {
                LinkedListNode<Outgoing>? next = node.Next;
                if (node.Value.ChannelSeq == tag || (multiple && node.Value.ChannelSeq < tag))
                {
                    refused.Add(node.Value);
                    _unconfirmed.Remove(node);
                }
                node = next;
            }
            if (refused.Count == 0) return;
            poke = false;
            // Back among what waits, in order.
            foreach (Outgoing message in refused) InsertInOrder(_toSend, message);
            _outOfOrder = true;
            _backoffMs = Math.Clamp(_backoffMs * 2, 5, 200);
            _pausedUntil = Environment.TickCount64 + _backoffMs;
            poke = !Refusing;
            Refusing = true;
        }
        // Refused is blocked: termination detection should look (it may be a cycle that filled its queues).
        if (poke) _run.Poke();
        _publishWork.Set();
    }

    /// <summary>Keeps <paramref name="list"/> ordered by sequence number (the lowest open one is then always first).</summary>
    private static void InsertInOrder(LinkedList<Outgoing> list, Outgoing message)
    {
        // Usually the newest: walk from the end.
        LinkedListNode<Outgoing>? before = list.Last;
        while (before is not null && before.Value.Seq > message.Seq) before = before.Previous;
        if (before is null) list.AddFirst(message);
        else list.AddAfter(before, message);
    }

    /// <summary>The broker refuses this process's messages (a reader's queue is full): the process is blocked, not busy.</summary>
    public bool Refusing { get; private set; }

    // ---------------------------------------------------------------- consuming

    /// <summary>
    /// A new consuming channel (at start, after a reconnection, or when the broker closed the channel
    /// alone). One at a time; each has its own epoch, and delivery tags of older ones are never acknowledged.
    /// </summary>
    private async Task SetUpConsumerAsync()
    {
        if (_inputs.Count == 0) return;
        await _setUp.WaitAsync();
        try
        {
            if (_closed) return;
            IConnection connection = await _session.ConnectionAsync();
            IChannel channel = await connection.CreateChannelAsync().WaitAsync(OperationTimeout);
            await channel.BasicQosAsync(0, _prefetch, false).WaitAsync(OperationTimeout);
            IChannel? old;
            long epoch;
            lock (_lock)
            {
                old = _consumeChannel;
                _consumeChannel = channel;
                epoch = ++_consumeEpoch;
            }
            old?.Dispose();
            channel.ChannelShutdownAsync += (_, e) =>
            {
                // Closed by the broker alone (the connection lives on): take from the queues on a new channel.
                if (!_closed && e.Initiator != ShutdownInitiator.Application && connection.IsOpen)
                    _ = Task.Run(async () =>
                    {
                        await Task.Delay(100);
                        bool current;
                        lock (_lock) current = ReferenceEquals(_consumeChannel, channel);
                        if (current && connection.IsOpen) await SetUpConsumerSafelyAsync();
                    });
                return Task.CompletedTask;
            };
            if (!_paused) await ConsumeAsync(channel, epoch);
        }
        finally
        {
            _setUp.Release();
        }
    }

    private async Task SetUpConsumerSafelyAsync()
    {
        try
        {
            await SetUpConsumerAsync();
        }
        catch (Exception e)
        {
            Notices.Say(_run.Options.Logger, $"process '{Name}' could not take from its queues again: {BrokerSession.Reason(e)}");
        }
    }

    private async Task ConsumeAsync(IChannel channel, long epoch)
    {
        var tags = new List<string>();
        foreach (var input in _inputs)
        {
            var consumer = new AsyncEventingBasicConsumer(channel);
            consumer.ReceivedAsync += (_, delivery) =>
            {
                Received(input.Lane, input.Stream, input.Codec, epoch, delivery);
                return Task.CompletedTask;
            };
            tags.Add(await channel.BasicConsumeAsync(input.Queue, autoAck: false, consumer).WaitAsync(OperationTimeout));
        }
        lock (_lock) _consumerTags = tags;
    }

    /// <summary>Stops taking messages (what was taken stays taken): the process's other instances are about to agree to end.</summary>
    public async Task PauseConsumingAsync()
    {
        // One change of consumers at a time (pause, resume, a new channel), so none is missed.
        await _setUp.WaitAsync();
        try
        {
            IChannel? channel;
            List<string> tags;
            lock (_lock)
            {
                if (_paused) return;
                _paused = true;
                channel = _consumeChannel;
                tags = _consumerTags;
                _consumerTags = new List<string>();
            }
            foreach (string tag in tags)
            {
                try
                {
                    if (channel is { IsOpen: true }) await channel.BasicCancelAsync(tag).WaitAsync(OperationTimeout);
                }
                catch (Exception)
                {
                    // A channel that went takes its consumers with it.
                }
            }
        }
        finally
        {
            _setUp.Release();
        }
    }

    public async Task ResumeConsumingAsync()
    {
        await _setUp.WaitAsync();
        try
        {
            IChannel? channel;
            long epoch;
            lock (_lock)
            {
                if (!_paused) return;
                _paused = false;
                channel = _consumeChannel;
                epoch = _consumeEpoch;
            }
            if (channel is { IsOpen: true }) await ConsumeAsync(channel, epoch);
        }
        catch (Exception)
        {
            // The connection went: consuming starts again with the next one.
        }
        finally
        {
            _setUp.Release();
        }
    }

    /// <summary>Nothing taken is left to handle or acknowledge, and the process waits for input.</summary>
    public bool Idle
    {
        get
        {
            lock (_lock)
                return _handled.Count == 0 && _pending.Values.All(p => p.End) && Runner.Status.State == RunnerState.Passive;
        }
    }

    /// <summary>
    /// Every input queue has no message waiting and no consumer: the instances have all paused, and
    /// none the closer does not know of is still taking messages.
    /// </summary>
    public async Task<bool> QueuesQuietAsync()
    {
        try
        {
            await using IChannel channel = await _session.CreateChannelAsync().WaitAsync(OperationTimeout);
            foreach (var input in _inputs)
            {
                QueueDeclareOk queue = await channel.QueueDeclarePassiveAsync(input.Queue).WaitAsync(OperationTimeout);
                if (queue.MessageCount > 0 || queue.ConsumerCount > 0) return false;
            }
            return true;
        }
        catch (Exception)
        {
            return false;
        }
    }

    /// <summary>All inputs of the process are over (its instances agreed): its lanes end behind what is queued.</summary>
    public void EndInputs()
    {
        foreach (var input in _inputs)
            for (int w = 0; w < input.Stream.Writers.Count; w++)
                Runner.DeliverEnd(input.Lane, w);
    }

    /// <summary>Set for processes with inputs outside cycles: end marks go through the instances' agreement.</summary>
    public EndProtocol? Protocol { get; set; }

    public string Instance => _incarnation;

    public int EndsNeeded => _inputs.Sum(i => i.Stream.Writers.Count);

    /// <summary>After a reconnection: consume again (the broker redelivers what was not acknowledged) and publish again.</summary>
    public async Task ReconnectedAsync()
    {
        await SetUpConsumerAsync();
        _publishWork.Set();
    }

    private void Received(Lane lane, StreamShape stream, BatchCodec codec, long epoch, BasicDeliverEventArgs delivery)
    {
        IReadOnlyBasicProperties properties = delivery.BasicProperties;
        string messageId = properties.MessageId ?? $"external-{_incarnation}-{Interlocked.Increment(ref _externalMessages)}";
        bool end = properties.Type == Wire.EndType;
        string? writer = Wire.Text(properties.Headers, Wire.WriterHeader);
        PendingAck pending;
        lock (_lock)
        {
            if (_pending.TryGetValue(messageId, out PendingAck? known))
            {
                // Another copy of a message already taken: acknowledged with it.
                known.Tags.Add((delivery.DeliveryTag, epoch));
                return;
            }
            if (_acked.Contains(messageId))
            {
                _toAck.Enqueue((delivery.DeliveryTag, epoch));
                _ackWork.Set();
                return;
            }
            pending = new PendingAck(this, messageId, end);
            pending.Tags.Add((delivery.DeliveryTag, epoch));
            _pending[messageId] = pending;
        }

        int writerIndex = 0;
        if (writer is not null)
        {
            writerIndex = IndexOf(stream.Writers, writer);
            if (writerIndex < 0)
            {
                Reject(stream, $"names writer '{writer}', which does not write stream '{stream.Name}' in this graph");
                return;
            }
        }
        else if (end)
        {
            Reject(stream, $"is an end mark without the {Wire.WriterHeader} header saying which writer ended");
            return;
        }
        if (!end && Protocol is { Finishing: true })
        {
            // Its inputs are over here; a copy taken now (another instance's, going round again) goes back.
            lock (_lock)
            {
                _pending.Remove(messageId);
                _toNack.Enqueue((delivery.DeliveryTag, epoch));
            }
            _ackWork.Set();
            return;
        }
        if (end && Protocol is { } protocol)
        {
            // Held (acknowledged once the process has ended); the instances of the process agree when its inputs are over.
            lock (_lock) _ends.Add(pending);
            protocol.EndTaken(lane.Index, writerIndex);
            return;
        }
        if (end)
        {
            Runner.DeliverEnd(lane, writerIndex, pending);
            return;
        }

        Array items;
        ulong[] ids;
        int count;
        try
        {
            string? countText = Wire.Text(properties.Headers, Wire.CountHeader);
            count = countText is null ? -1 : int.Parse(countText, System.Globalization.CultureInfo.InvariantCulture);
            items = codec.Decode(delivery.Body.Span, count);
            count = items.Length;
            string? idText = Wire.Text(properties.Headers, Wire.IdsHeader);
            ids = idText is null ? ExternalIds(messageId, count) : Wire.DecodeIds(idText, count);
        }
        catch (Exception e)
        {
            Reject(stream, $"could not be decoded ({delivery.Body.Length} bytes, {codec.Name} codec): {e.GetType().Name}: {e.Message}", e);
            return;
        }
        pending.Ids = ids;
        Runner.Deliver(lane, items, count, writerIndex, pending);

        void Reject(StreamShape s, string what, Exception? e = null) =>
            _run.Fail(new ProcessFailure(Name, s.Name, null, null,
                $"Process '{Name}' received a message of stream '{s.Name}' (message {messageId}{(writer is null ? "" : $" from '{writer}'")}) that {what}. " +
                "It stays in the queue, unacknowledged.", e));
    }

    /// <summary>Ids for items from a program that gave none: stable per message id, so a redelivery gets the same ones.</summary>
    private static ulong[] ExternalIds(string messageId, int count)
    {
        ulong first = Hash(messageId);
        var ids = new ulong[count];
        for (int i = 0; i < count; i++) ids[i] = unchecked(first + (ulong)i);
        return ids;
    }

    private static int IndexOf(IReadOnlyList<string> names, string name)
    {
        for (int i = 0; i < names.Count; i++)
            if (names[i] == name) return i;
        return -1;
    }

    /// <summary>A well-mixed 64-bit number for a text (FNV-1a, then a SplitMix64 finish); never random.</summary>
    private static ulong Hash(string text)
    {
        ulong h = 14695981039346656037;
        foreach (char c in text)
        {
            h ^= c;
            h *= 1099511628211;
        }
        h ^= h >> 30;
        h *= 0xBF58476D1CE4E5B9;
        h ^= h >> 27;
        h *= 0x94D049BB133111EB;
        return h ^ (h >> 31);
    }

    /// <summary>Process thread: the delivery's items are handled and what they produced is accepted for publishing.</summary>
    public void Handled(PendingAck pending)
    {
        lock (_lock)
        {
            if (pending.End)
            {
                // An end mark is acknowledged only when this process's own end marks are confirmed:
                // a process killed before that is started again and still sees its inputs end.
                _ends.Add(pending);
                return;
            }
            pending.Required = _assigned;
            _handled.Enqueue(pending);
            CollectAcksLocked();
        }
        _ackWork.Set();
    }

    private void CollectAcksLocked()
    {
        while (_handled.TryPeek(out PendingAck? next) && next.Required <= _confirmed)
        {
            _handled.Dequeue();
            Acknowledge(next);
        }
    }

    private void Acknowledge(PendingAck pending)
    {
        _pending.Remove(pending.MessageId);
        _acked.Add(pending.MessageId);
        foreach (var tag in pending.Tags) _toAck.Enqueue(tag);
    }

    private async Task AckLoopAsync()
    {
        while (true)
        {
            while (true)
            {
                (ulong Tag, long Epoch) back;
                IChannel? channel;
                lock (_lock)
                {
                    if (!_toNack.TryDequeue(out back)) break;
                    channel = _consumeChannel;
                    if (back.Epoch != _consumeEpoch) continue;
                }
                try
                {
                    if (channel is { IsOpen: true }) await channel.BasicNackAsync(back.Tag, multiple: false, requeue: true).AsTask().WaitAsync(OperationTimeout);
                }
                catch (Exception)
                {
                }
            }
            while (true)
            {
                (ulong Tag, long Epoch) next;
                IChannel? channel;
                lock (_lock)
                {
                    if (!_toAck.TryDequeue(out next)) break;
                    channel = _consumeChannel;
                    // A tag of an older connection means nothing now: that copy comes again and is acknowledged then.
                    if (next.Epoch != _consumeEpoch) continue;
                }
                try
                {
                    if (channel is { IsOpen: true }) await channel.BasicAckAsync(next.Tag, multiple: false).AsTask().WaitAsync(OperationTimeout);
                }
                catch (Exception)
                {
                    // The channel is gone: that copy is delivered again on the next one and acknowledged then.
                }
            }
            if (_closed) return;
            await _ackWork.WaitAsync(IdleWake);
        }
    }

    /// <summary>
    /// After the process ended normally: waits until the broker confirmed everything it published
    /// (its end marks included), then acknowledges what it took, end marks too. Bounded by <paramref name="timeout"/>.
    /// </summary>
    public async Task<bool> FinishAsync(bool ended, TimeSpan timeout)
    {
        DateTime deadline = DateTime.UtcNow + timeout;
        bool done = false;
        while (DateTime.UtcNow < deadline)
        {
            lock (_lock)
            {
                CollectAcksLocked();
                done = _confirmed == _assigned && _heldEnds.Count == 0;
            }
            _ackWork.Set();
            if (done) break;
            await Task.Delay(5);
        }
        if (done && ended)
        {
            // With other instances, the end marks held here are acknowledged only once the
            // process's own end marks are out (else they go back to the queues for a restart).
            bool acknowledgeEnds = Protocol is null || await Protocol.CompletedAsync();
            lock (_lock)
            {
                int left = _pending.Values.Count(p => !p.End);
                if (left > 0)
                    Notices.Say(_run.Options.Logger, $"process '{Name}' ended holding {left} messages it had not handled; they go back to its queues.");
                if (acknowledgeEnds)
                {
                    foreach (PendingAck end in _ends) Acknowledge(end);
                    _ends.Clear();
                }
            }
            _ackWork.Set();
        }
        // Let the acknowledgements leave.
        while (DateTime.UtcNow < deadline)
        {
            lock (_lock)
            {
                if (_toAck.Count == 0) break;
            }
            await Task.Delay(5);
        }
        return done;
    }

    public async Task CloseAsync()
    {
        _closed = true;
        _publishWork.Set();
        _ackWork.Set();
        await Task.WhenAny(Task.WhenAll(_publishLoop, _ackLoop), Task.Delay(TimeSpan.FromSeconds(5)));
        foreach (IChannel? channel in new[] { _publishChannel, _consumeChannel })
        {
            if (channel is null) continue;
            try
            {
                await channel.CloseAsync();
            }
            catch (Exception e) when (IsConnectionFailure(e))
            {
            }
            channel.Dispose();
        }
    }

    public static bool IsConnectionFailure(Exception e) =>
        e is AlreadyClosedException or OperationInterruptedException or IOException or ObjectDisposedException or
            System.Net.Sockets.SocketException or OperationCanceledException or System.Threading.Channels.ChannelClosedException;
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
