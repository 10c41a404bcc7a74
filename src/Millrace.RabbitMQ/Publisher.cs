using System.Security.Cryptography;
using Millrace.Engine;
using RabbitMQ.Client;
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

    /// <summary>
    /// Set for a message that must reach a queue (a move to the dead-letter queue): published as mandatory, and if the broker
    /// returns it (no queue bound) or refuses it (the queue is full), this is told why, once, and the message is never taken as
    /// confirmed (what waits for it is never acknowledged), instead of being published again.
    /// </summary>
    public Action<string>? Undeliverable;

    /// <summary>
    /// The broker returned it (unroutable) or refused it (a full queue) on the channel it was last published on: no confirm
    /// counts for it there — neither its own after a return, nor a later one with <c>multiple</c> whose range covers its number
    /// (the broker settled it already; taken as confirmed, the message it stands for would be acknowledged and lost).
    /// </summary>
    public bool Undelivered;

    public bool Told;
}

/// <summary>
/// Publishes one hosted process's messages on a channel with publisher confirms, in order, each kept
/// until the broker confirms it: a message the broker refuses (a reader's queue at its length limit)
/// goes again after a pause, and what a lost channel did not confirm goes again on the next one.
/// A new batch is taken only while fewer than <c>maxInFlight</c> messages were accepted since the oldest one not
/// yet confirmed (see <see cref="HasRoom"/>): a writer beyond that is blocked and woken when one is confirmed. A
/// checkpoint's marker and an end mark are taken beyond the bound (a checkpoint is one at a time, and an end mark
/// leaves only once all before it are confirmed, so at most one marker per writer is ever past it). Readers recognise
/// a copy by its writer's place in the stream (in the message's envelope).
/// </summary>
internal sealed class Publisher
{
    private static readonly TimeSpan IdleWake = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Refused without a confirm for this long, the publishing channel is made again. A quorum queue tells a channel it is
    /// full, and later that it may publish again, and the channel refuses by itself in between; that "go" can be lost
    /// (RabbitMQ 3.10: a leader elected after a node stopped, seen in the cluster test as a writer refused for minutes by an
    /// empty queue). A new channel asks the queue its state when it first publishes to it.
    /// </summary>
    internal static readonly long RenewRefusedChannelAfterMs = 3000;

    private readonly BrokerSession _session;
    private readonly TimeSpan _operationTimeout;
    private readonly Action<long> _confirmedUpTo;
    private readonly Action _poke;
    private readonly object _lock = new();
    private readonly int _maxInFlight;

    // Accepted messages wait in _toSend, then in _unconfirmed until confirmed; both ordered by Seq.
    private readonly LinkedList<Outgoing> _toSend = new();
    private readonly LinkedList<Outgoing> _unconfirmed = new();
    private readonly AsyncSignal _publishWork = new();
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
    private long _refusedSince;
    private bool _renewChannel;
    private long _pausedUntil;
    private volatile bool _closed;
    private Task _loop = Task.CompletedTask;

    /// <param name="name">The process whose messages these are.</param>
    /// <param name="session">The broker connection (made again after a loss).</param>
    /// <param name="maxInFlight">Messages that may be accepted from the oldest one not yet confirmed on (markers and end marks aside).</param>
    /// <param name="operationTimeout">The longest one call to the broker may take before its channel is given up.</param>
    /// <param name="confirmedUpTo">Told (outside any lock) that every message up to this number is confirmed.</param>
    /// <param name="poke">Told when the broker starts refusing: the process is blocked, termination detection should look.</param>
    public Publisher(string name, BrokerSession session, int maxInFlight, TimeSpan operationTimeout, Action<long> confirmedUpTo, Action poke)
    {
        Name = name;
        _session = session;
        _maxInFlight = maxInFlight;
        _operationTimeout = operationTimeout;
        _confirmedUpTo = confirmedUpTo;
        _poke = poke;
    }

    private static readonly bool Debug = Environment.GetEnvironmentVariable("MILLRACE_DEBUG") == "1";

    /// <summary>The process whose messages these are (for MILLRACE_DEBUG lines).</summary>
    public string Name { get; }

    /// <summary>This incarnation's id: the prefix of its message ids.</summary>
    public string Incarnation => field ??= Convert.ToHexStringLower(IncarnationBytes);

    /// <summary>This incarnation's id as the compact envelope carries it (eight random bytes; <see cref="Incarnation"/> is their hex).</summary>
    public byte[] IncarnationBytes { get; } = RandomNumberGenerator.GetBytes(8);

    /// <summary>Messages accepted for publishing so far.</summary>
    public long Accepted
    {
        get { lock (_lock) return _assigned; }
    }

    /// <summary>Every accepted message is confirmed.</summary>
    public bool AllConfirmed
    {
        get { lock (_lock) return _confirmed == _assigned; }
    }

    public void Start() => _loop = Task.Run(PublishLoopAsync);

    /// <summary>
    /// Whether a new message fits within the bound; if not, <paramref name="writer"/> is woken once one is confirmed. The bound
    /// counts from the oldest message not yet confirmed, not the messages in flight: a message the broker keeps refusing (its
    /// reader's queue full) must never have more than the bound of newer ones ahead of it. A reader holds those that come
    /// before their turn within its prefetch, which is the bound; more would fill it, the reader would take nothing, its queue
    /// would stay full, and the refused message would never get in (found by the broker benchmark, a hang).
    /// </summary>
    public bool HasRoom(ProcessRunner writer)
    {
        lock (_lock)
        {
            if (_assigned - _confirmed < _maxInFlight) return true;
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
            // A message moved to the dead-letter queue is told apart by its id if the broker returns it. The stream's own
            // messages are named by their writer's place in the stream, in their envelope (an id would cost the broker).
            if (message.Undeliverable is not null) message.Properties.MessageId = $"{Incarnation}-{message.Seq}";
            _toSend.AddLast(message);
        }
        _publishWork.Set();
    }

    /// <summary>For MILLRACE_DEBUG=1: where the messages are.</summary>
    public string Describe()
    {
        lock (_lock)
            return $"accepted {_assigned}, confirmed up to {_confirmed}, to send {_toSend.Count}, unconfirmed {_unconfirmed.Count}" +
                   $"{(Refusing ? " (refused)" : "")}, channels renewed {ChannelsRenewed}, publish channel {(_publishChannel is { IsOpen: true } ? "open" : "none")} gen {_publishGeneration}";
    }

    public string Fill
    {
        get
        {
            lock (_lock)
                return (Refusing ? "its queue on the broker is full; " : "") +
                       $"{_toSend.Count + _unconfirmed.Count} messages not yet confirmed by the broker, " +
                       $"{_assigned - _confirmed} of at most {_maxInFlight} from the oldest of them on";
        }
    }

    /// <summary>After a reconnection: publish again (what was not confirmed goes again on the new channel).</summary>
    public void Wake() => _publishWork.Set();

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
                bool renew;
                lock (_lock)
                {
                    pause = _pausedUntil - Environment.TickCount64;
                    renew = _renewChannel && ReferenceEquals(channel, _publishChannel);
                    _renewChannel = false;
                }
                if (renew)
                {
                    ChannelsRenewed++;
                    if (Debug) Console.Error.WriteLine($"[millrace debug] {Name}: refused for {RenewRefusedChannelAfterMs / 1000} s without a confirm: a new publishing channel ({ChannelsRenewed} so far)");
                    await AbandonAsync(channel);
                    _publishWork.Set(); // at once on the new channel, not after the idle wait
                    break;
                }
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
                    ValueTask publish = channel.BasicPublishAsync(message.Exchange, "", message.Undeliverable is not null, message.Properties, message.Body, lost);
                    // Mostly done at once (the frames handed to the connection's writer): then no task and no timer for the bound.
                    if (publish.IsCompletedSuccessfully) publish.GetAwaiter().GetResult();
                    else await publish.AsTask().WaitAsync(_operationTimeout, lost);
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
            .WaitAsync(_operationTimeout);
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
        // A mandatory message no queue took comes back before its confirm (the same channel, in order).
        channel.BasicReturnAsync += (_, e) =>
        {
            Returned(channel, e.BasicProperties.MessageId);
            return Task.CompletedTask;
        };
        lock (_lock)
        {
            _channelLost = lost;
            _publishChannel = channel;
            _publishGeneration = generation;
            _channelSeq = 0;
            _outOfOrder = false;
            _renewChannel = false; // asked for the channel this one replaces
            _refusedSince = Environment.TickCount64;
            // Whatever the old channel did not confirm goes again, in order among what waits (a
            // refused message may already wait there, behind newer unconfirmed ones).
            foreach (Outgoing message in _unconfirmed)
            {
                message.Undelivered = false;
                InsertInOrder(_toSend, message);
            }
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

    /// <summary>The session lost its connection: calls under way on the channel end now.</summary>
    public void ConnectionLost()
    {
        lock (_lock) _channelLost.Cancel();
        _publishWork.Set();
    }

    private void Returned(IChannel channel, string? messageId)
    {
        lock (_lock)
        {
            if (!ReferenceEquals(channel, _publishChannel)) return;
            foreach (Outgoing message in _unconfirmed)
                if (message.Properties.MessageId == messageId && message.Undeliverable is not null) message.Undelivered = true;
        }
    }

    /// <summary>Tells each message that could not be delivered why, once (outside the lock).</summary>
    private static void Tell(List<(Outgoing Message, string Why)>? undeliverable)
    {
        if (undeliverable is null) return;
        foreach (var (message, why) in undeliverable) message.Undeliverable!(why);
    }

    private void Confirmed(IChannel channel, ulong tag, bool multiple)
    {
        ProcessRunner? waiter;
        long confirmed;
        bool wake;
        List<(Outgoing, string)>? undeliverable = null;
        lock (_lock)
        {
            if (!ReferenceEquals(channel, _publishChannel)) return;
            // Ordered by sequence number, not by publishing order (a refused message goes again
            // later): look at every one.
            for (LinkedListNode<Outgoing>? node = _unconfirmed.First; node is not null;)
            {
                LinkedListNode<Outgoing>? next = node.Next;
                if (node.Value.ChannelSeq == tag || (multiple && node.Value.ChannelSeq < tag))
                {
                    if (!node.Value.Undelivered) _unconfirmed.Remove(node);
                    else if (!node.Value.Told)
                    {
                        // Stays unconfirmed for ever: what waits for it is not acknowledged.
                        node.Value.Told = true;
                        (undeliverable ??= new()).Add((node.Value, "no queue is bound to its exchange (was the queue deleted?)"));
                    }
                }
                else if (node.Value.ChannelSeq > tag && !_outOfOrder) break;
                node = next;
            }
            long firstOpen = Math.Min(_unconfirmed.First?.Value.Seq ?? long.MaxValue, _toSend.First?.Value.Seq ?? long.MaxValue);
            _confirmed = firstOpen == long.MaxValue ? _assigned : firstOpen - 1;
            confirmed = _confirmed;
            waiter = _waiter;
            _waiter = null;
            Refusing = false;
            _backoffMs = 0;
            // The loop waits for a confirm only with messages left to send (an end mark behind unconfirmed ones, one at a
            // time while refused); otherwise waking it would cost a thread's wake-up per confirm for nothing.
            wake = _toSend.Count > 0;
        }
        _confirmedUpTo(confirmed);
        Tell(undeliverable);
        waiter?.WakeForRoom();
        if (wake) _publishWork.Set();
    }

    /// <summary>
    /// The broker refused a message: a reader's queue is at its length limit (backpressure across the
    /// broker). It goes back in front, in order, and publishing pauses, longer each time, until the
    /// broker takes messages again.
    /// </summary>
    private void Refused(IChannel channel, ulong tag, bool multiple)
    {
        bool poke;
        List<(Outgoing, string)>? undeliverable = null;
        lock (_lock)
        {
            if (!ReferenceEquals(channel, _publishChannel)) return;
            var refused = new List<Outgoing>();
            for (LinkedListNode<Outgoing>? node = _unconfirmed.First; node is not null;)
            {
                LinkedListNode<Outgoing>? next = node.Next;
                if (node.Value.ChannelSeq == tag || (multiple && node.Value.ChannelSeq < tag))
                {
                    if (node.Value.Undeliverable is null)
                    {
                        refused.Add(node.Value);
                        _unconfirmed.Remove(node);
                    }
                    else
                    {
                        // Not published again and again: it stays unconfirmed (whatever later confirms cover), and the run hears why, once.
                        node.Value.Undelivered = true;
                        if (!node.Value.Told)
                        {
                            node.Value.Told = true;
                            (undeliverable ??= new()).Add((node.Value, "the broker refused it (the queue is at its length limit)"));
                        }
                    }
                }
                node = next;
            }
            poke = false;
            if (refused.Count > 0)
            {
                // Back among what waits, in order.
                foreach (Outgoing message in refused) InsertInOrder(_toSend, message);
                _outOfOrder = true;
                _backoffMs = Math.Clamp(_backoffMs * 2, 5, 200);
                long now = Environment.TickCount64;
                _pausedUntil = now + _backoffMs;
                poke = !Refusing;
                if (!Refusing) _refusedSince = now;
                else if (now - _refusedSince >= RenewRefusedChannelAfterMs)
                {
                    _renewChannel = true;
                    _refusedSince = now;
                }
                Refusing = true;
            }
        }
        Tell(undeliverable);
        // Refused is blocked: termination detection should look (it may be a cycle that filled its queues).
        if (poke) _poke();
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

    /// <summary>Publishing channels made again because the broker refused everything on them for long (see <see cref="RenewRefusedChannelAfterMs"/>).</summary>
    public int ChannelsRenewed { get; private set; }

    /// <summary>Stops the loop (bounded) and closes the channel.</summary>
    public async Task CloseAsync()
    {
        _closed = true;
        _publishWork.Set();
        await Task.WhenAny(_loop, Task.Delay(TimeSpan.FromSeconds(5)));
        await ProcessPort.CloseChannelAsync(_publishChannel);
    }
}
