using Millrace.Codecs;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Millrace.RabbitMQ;

/// <summary>
/// Takes one hosted process's messages from its input queues (one consuming channel, a bounded
/// prefetch), decodes them and hands them to the process with a <see cref="PendingAck"/>. A new
/// channel (at start, after a reconnection, when the broker closed the channel alone) gets a new
/// epoch; delivery tags of older channels are never acknowledged. Consumers can be paused and resumed
/// (the replicas' end round); a consumer that could not be set up fully is never left behind: its
/// channel is aborted (taking every consumer on it along) and consuming starts again on a new one.
/// </summary>
internal sealed class Consumer
{
    /// <summary>Failed set-ups in a row after which the run fails instead of trying again.</summary>
    private const int MaxSetUpFailures = 5;

    private readonly ProcessPort _port;
    private readonly BrokerSession _session;
    private readonly Acknowledger _acknowledger;
    private readonly RunContext _run;
    private readonly ushort _prefetch;
    private readonly TimeSpan _operationTimeout;
    private readonly object _lock = new();
    private readonly List<(Lane Lane, string Queue, StreamShape Stream, BatchCodec Codec)> _inputs = new();
    private readonly SemaphoreSlim _setUp = new(1, 1);
    private IChannel? _channel;
    private List<(string Tag, Task Unregistered)> _consumerTags = new();
    private bool _paused;
    private long _epoch;
    private long _externalMessages;
    private int _setUpFailures;
    private volatile bool _closed;

    public Consumer(ProcessPort port, BrokerSession session, Acknowledger acknowledger, RunContext run, ushort prefetch, TimeSpan operationTimeout)
    {
        _port = port;
        _session = session;
        _acknowledger = acknowledger;
        _run = run;
        _prefetch = prefetch;
        _operationTimeout = operationTimeout;
    }

    private string Name => _port.Name;

    public IReadOnlyList<(Lane Lane, string Queue, StreamShape Stream, BatchCodec Codec)> Inputs => _inputs;

    public void AddInput(Lane lane, string queue, StreamShape stream, BatchCodec codec) => _inputs.Add((lane, queue, stream, codec));

    /// <summary>The consuming channel now, with its epoch (for acknowledgements).</summary>
    public (IChannel? Channel, long Epoch) Current
    {
        get { lock (_lock) return (_channel, _epoch); }
    }

    /// <summary>Consumers registered on the current channel (for tests and MILLRACE_DEBUG).</summary>
    public int Consumers
    {
        get { lock (_lock) return _consumerTags.Count; }
    }

    public string Describe()
    {
        lock (_lock) return $"consume epoch {_epoch}, consumers {_consumerTags.Count}{(_paused ? " (paused)" : "")}, {Early} early";
    }

    /// <summary>
    /// A new consuming channel (at start, after a reconnection, or when the broker closed the channel
    /// alone). One at a time; each has its own epoch, and delivery tags of older ones are never acknowledged.
    /// </summary>
    public async Task SetUpAsync()
    {
        if (_inputs.Count == 0) return;
        await _setUp.WaitAsync();
        try
        {
            if (_closed) return;
            IConnection connection = await _session.ConnectionAsync();
            IChannel channel = await connection.CreateChannelAsync().WaitAsync(_operationTimeout);
            await channel.BasicQosAsync(0, _prefetch, false).WaitAsync(_operationTimeout);
            IChannel? old;
            long epoch;
            lock (_lock)
            {
                old = _channel;
                _channel = channel;
                _consumerTags = new();
                epoch = ++_epoch;
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
                        lock (_lock) current = ReferenceEquals(_channel, channel);
                        if (current && connection.IsOpen) await SetUpSafelyAsync();
                    });
                return Task.CompletedTask;
            };
            bool paused;
            lock (_lock) paused = _paused;
            if (!paused) await ConsumeAsync(channel, epoch);
        }
        finally
        {
            _setUp.Release();
        }
    }

    private async Task SetUpSafelyAsync()
    {
        try
        {
            await SetUpAsync();
        }
        catch (Exception e)
        {
            Notices.Say(_run.Options.Logger, $"process '{Name}' could not take from its queues again: {BrokerSession.Reason(e)}");
        }
    }

    /// <summary>
    /// Subscribes to every input on <paramref name="channel"/>. Each consumer tag is kept as soon as it
    /// is known (so a pause cancels it). If any subscription fails or times out, the broker may still
    /// hold a consumer whose tag never came back: the channel is aborted, which ends every consumer on
    /// it, and consuming starts again on a new channel (a bounded number of times in a row).
    /// Called under <see cref="_setUp"/>.
    /// </summary>
    private async Task ConsumeAsync(IChannel channel, long epoch)
    {
        try
        {
            foreach (var input in _inputs)
            {
                var consumer = new AsyncEventingBasicConsumer(channel);
                // The broker's cancel-ok reaches the consumer after every delivery it sent before it (one dispatcher, in order).
                var unregistered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                consumer.UnregisteredAsync += (_, _) =>
                {
                    unregistered.TrySetResult();
                    return Task.CompletedTask;
                };
                consumer.ShutdownAsync += (_, _) =>
                {
                    unregistered.TrySetResult();
                    return Task.CompletedTask;
                };
                consumer.ReceivedAsync += (_, delivery) =>
                {
                    // The process's work this delivery wakes runs here while its own thread sleeps (ProcessRunner.DeliverInline):
                    // what it publishes then goes out from this thread too, with no other thread woken for it.
                    _port.Runner.DeliverInline((Consumer: this, Input: input, Epoch: epoch, Delivery: delivery),
                        static s => s.Consumer.Received(s.Input.Lane, s.Input.Queue, s.Input.Stream, s.Input.Codec, s.Epoch, s.Delivery));
                    return Task.CompletedTask;
                };
                string tag = await channel.BasicConsumeAsync(input.Queue, autoAck: false, consumer).WaitAsync(_operationTimeout);
                lock (_lock)
                {
                    if (ReferenceEquals(_channel, channel)) _consumerTags.Add((tag, unregistered.Task));
                }
            }
            _setUpFailures = 0;
        }
        catch (Exception e)
        {
            // A channel that went (with its connection, or closed by the broker) is made again by the
            // reconnection or by its shutdown handler; one still open holds consumers that must go.
            bool went = !channel.IsOpen;
            await AbortAsync(channel);
            if (_closed || went) return;
            int failures = ++_setUpFailures;
            if (failures >= MaxSetUpFailures)
            {
                _run.Fail(new ProcessFailure(Name, null, null, null,
                    $"Process '{Name}' could not take from its queues on the broker at {_session.Where} ({failures} tries in a row): {BrokerSession.Reason(e)}", e));
                return;
            }
            Notices.Say(_run.Options.Logger, $"process '{Name}' could not take from its queues ({BrokerSession.Reason(e)}); trying again on a new channel.");
            // After this set-up has let go of _setUp.
            _ = Task.Run(async () =>
            {
                await Task.Delay(100 * failures);
                await SetUpSafelyAsync();
            });
        }
    }

    /// <summary>Ends a channel and every consumer on it, whatever state its calls are in.</summary>
    private async Task AbortAsync(IChannel channel)
    {
        lock (_lock)
        {
            if (ReferenceEquals(_channel, channel)) _consumerTags = new();
        }
        try
        {
            await channel.AbortAsync().WaitAsync(TimeSpan.FromSeconds(2));
        }
        catch (Exception)
        {
            // The connection went: its channels and consumers went with it.
        }
    }

    /// <summary>
    /// Stops taking messages (what was taken stays taken): the process's other instances are about to agree to end. False when
    /// what the broker sent before the cancel may still be on its way to the process (the client's dispatcher did not get to
    /// the cancel within 5 s): the process must not say it is idle.
    /// </summary>
    public async Task<bool> PauseAsync()
    {
        // One change of consumers at a time (pause, resume, a new channel), so none is missed.
        await _setUp.WaitAsync();
        try
        {
            IChannel? channel;
            List<(string Tag, Task Unregistered)> tags;
            lock (_lock)
            {
                if (_paused) return true;
                _paused = true;
                channel = _channel;
                tags = _consumerTags;
                _consumerTags = new();
            }
            foreach (var (tag, _) in tags)
            {
                try
                {
                    if (channel is { IsOpen: true }) await channel.BasicCancelAsync(tag).WaitAsync(_operationTimeout);
                }
                catch (Exception)
                {
                    // A consumer that could not be cancelled must not go on taking messages: its channel goes
                    // (what it took and did not acknowledge goes back to the queue), and a new one is made.
                    if (channel is not null) await AbortAsync(channel);
                    _ = Task.Run(SetUpSafelyAsync);
                    return true; // the channel went, and what it had not handed over with it (back to the queue)
                }
            }
            // Every message the broker sent these consumers before they stopped has reached the process (or waits its turn):
            // the broker's cancel-ok reaches each consumer after them, on the channel's one dispatcher (the client's
            // ConsumerDispatchConcurrency, left at 1 by BrokerSession: with more, deliveries and the cancel-ok could pass each other).
            try
            {
                await Task.WhenAll(tags.Select(t => t.Unregistered)).WaitAsync(TimeSpan.FromSeconds(5));
                return true;
            }
            catch (TimeoutException)
            {
                return false;
            }
        }
        finally
        {
            _setUp.Release();
        }
    }

    public async Task ResumeAsync()
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
                channel = _channel;
                epoch = _epoch;
            }
            // A channel that went is made again by the reconnection (or by ConsumeAsync's own retry).
            if (channel is { IsOpen: true }) await ConsumeAsync(channel, epoch);
        }
        finally
        {
            _setUp.Release();
        }
    }

    /// <summary>
    /// Every input queue has no message waiting and no consumer: the instances have all paused, and
    /// none the closer does not know of is still taking messages. A quorum queue goes on listing a consumer that was
    /// cancelled while it holds unacknowledged messages (the end marks every instance keeps until its process ends), so
    /// there only the messages waiting count: instances announce themselves before they take anything (docs/broker-placement.md).
    /// </summary>
    public async Task<bool> QueuesQuietAsync()
    {
        try
        {
            await using IChannel channel = await _session.CreateChannelAsync().WaitAsync(_operationTimeout);
            foreach (var input in _inputs)
            {
                QueueDeclareOk queue = await channel.QueueDeclarePassiveAsync(input.Queue).WaitAsync(_operationTimeout);
                if (queue.MessageCount > 0 || (queue.ConsumerCount > 0 && _run.Options.Broker.Queues != BrokerQueues.Quorum)) return false;
            }
            return true;
        }
        catch (Exception)
        {
            return false;
        }
    }

    /// <summary>
    /// One message taken from an input queue. The common case (a data message in its writer's turn) makes no closure and no
    /// text beyond its id: the envelope's numbers are read as numbers, the writer's name is matched as bytes.
    /// </summary>
    private void Received(Lane lane, string queue, StreamShape stream, BatchCodec codec, long epoch, BasicDeliverEventArgs delivery)
    {
        IReadOnlyBasicProperties properties = delivery.BasicProperties;
        MessageFields fields;
        string? badEnvelope = null;
        try
        {
            fields = Wire.Fields(properties, delivery.Body);
        }
        catch (Exception e)
        {
            // A FormatException says what is wrong with the bytes; anything else must not leave the message taken and never answered.
            fields = new MessageFields(null, null, properties.Type, delivery.Body);
            badEnvelope = e is FormatException ? e.Message : $"{e.GetType().Name}: {e.Message}";
        }
        // A writer's place in the stream names a message as well as an id: an envelope carries no message id.
        Place at = PlaceOf(fields);
        string messageId = properties.MessageId ?? (at.Text is not null ? $"{at.Text}@{stream.Name}"
            : at.Incarnation is not null ? $"{at.Incarnation}:{at.Number.ToString(System.Globalization.CultureInfo.InvariantCulture)}@{stream.Name}"
            : $"external-{_port.Instance}-{Interlocked.Increment(ref _externalMessages)}");
        bool end = fields.Type == Wire.EndType;
        int writerIndex = WriterOf(stream, fields, out string? writer);
        var message = new Taken(lane, queue, stream, delivery, properties, messageId, writer, writerIndex, at);
        if (_acknowledger.Take(messageId, end, delivery.DeliveryTag, epoch, out PendingAck? pending) != Acknowledger.Taken.New) return;
        ProcessRunner runner = _port.Runner;

        if (badEnvelope is not null)
        {
            Reject(message, pending!, $"has a bad envelope: {badEnvelope}");
            return;
        }
        if (writer is not null)
        {
            if (writerIndex < 0)
            {
                Reject(message, pending!, $"names writer '{writer}', which does not write stream '{stream.Name}' in this graph");
                return;
            }
        }
        else if (end)
        {
            Reject(message, pending!, $"is an end mark without the {Wire.WriterHeader} header saying which writer ended");
            return;
        }
        else
        {
            writerIndex = 0;
            message = message with { WriterIndex = 0 };
        }
        if (_port.Generation >= 0)
        {
            // Checkpoints: the run goes back to a checkpoint as a whole, each time as a new generation.
            if (!TryNumber(fields, Wire.GenerationHeader, fields.Compact?.Generation, out long generation))
            {
                // A host or program set up otherwise (without --state): not bad data, and its end marks must not vanish. The run stops.
                Reject(message, pending!, $"has no {Wire.GenerationHeader} header: with checkpoints on, every writer of the run's streams must be a process of the run " +
                       "started with the same --state (a program of your own cannot write them: a checkpoint could not cover its messages)", always: true);
                return;
            }
            if (generation < _port.Generation)
            {
                // Written before the run went back: the checkpoint covers what came before it, and what came after is written again.
                _acknowledger.Drop(pending!);
                return;
            }
            if (generation > _port.Generation)
            {
                // The run went back, and this host has not heard yet: the message waits in its queue for the new generation.
                _acknowledger.GiveBack(pending!);
                _port.NewerGeneration?.Invoke(generation);
                return;
            }
            if (fields.Type == Wire.MarkerType)
            {
                if (!TryNumber(fields, Wire.CheckpointHeader, fields.Compact?.Checkpoint, out long checkpoint))
                {
                    Reject(message, pending!, $"is a checkpoint marker without a valid {Wire.CheckpointHeader} header", sequenced: true);
                    return;
                }
                Sequenced(lane, writerIndex, at, (Runner: runner, Lane: lane, Writer: writerIndex, Checkpoint: checkpoint, Pending: pending!, Acknowledger: _acknowledger),
                    static m =>
                    {
                        m.Runner.DeliverMarker(m.Lane, m.Writer, m.Checkpoint);
                        m.Acknowledger.Drop(m.Pending);
                    });
                return;
            }
        }
        else if (fields.Type == Wire.MarkerType)
        {
            // A marker with checkpoints off (another host of the run has them on): it carries nothing, but holds its place.
            Sequenced(lane, writerIndex, at, (Acknowledger: _acknowledger, Pending: pending!), static m => m.Acknowledger.Drop(m.Pending));
            return;
        }
        EndProtocol? protocol = _port.Protocol;
        if (!end && protocol is { Finishing: true })
        {
            // Its inputs are over here; a copy taken now (another instance's, going round again) goes back.
            _acknowledger.GiveBack(pending!);
            return;
        }
        if (end && protocol is not null)
        {
            Sequenced(lane, writerIndex, at, (Acknowledger: _acknowledger, Pending: pending!, Protocol: protocol, Port: _port, Lane: lane.Index, Writer: writerIndex),
                static m =>
                {
                    // Held (acknowledged once the process has ended); the instances of the process agree when its inputs are over.
                    m.Acknowledger.HoldEnd(m.Pending);
                    // The protocol first (the process shows as agreeing once every end is seen), then the count:
                    // taken, no longer in flight, termination detection counts it as received now (not again when delivered).
                    m.Protocol.EndTaken(m.Lane, m.Writer);
                    m.Port.EndHeld(m.Lane, m.Writer);
                });
            return;
        }
        if (end)
        {
            Sequenced(lane, writerIndex, at, (Runner: runner, Lane: lane, Writer: writerIndex, Pending: pending!),
                static m => m.Runner.DeliverEnd(m.Lane, m.Writer, m.Pending));
            return;
        }

        Array items;
        ulong[] ids;
        int count;
        try
        {
            string? countText = fields.Count >= 0 ? null : fields.Text(Wire.CountHeader);
            if (fields.Count >= 0) count = fields.Count;
            else if (countText is null) count = codec.Name != "binary" ? -1 : throw new FormatException($"a {codec.Name} body needs the {Wire.CountHeader} header");
            else if (!int.TryParse(countText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out count))
                throw new FormatException($"header {Wire.CountHeader} is '{(countText.Length <= 30 ? countText : countText[..30] + "…")}', not a number of items");
            items = codec.Decode(fields.Payload.Span, count);
            count = items.Length;
            if (fields.IdRanges is { } ranges)
            {
                ids = Wire.ExpandIds(ranges, count);
            }
            else
            {
                string? idText = fields.Text(Wire.IdsHeader);
                ids = idText is null ? ExternalIds(messageId, count) : Wire.DecodeIds(idText, count);
            }
        }
        catch (Exception e)
        {
            Reject(message, pending!, $"could not be decoded ({delivery.Body.Length} bytes, {codec.Name} codec): {e.GetType().Name}: {e.Message}", e, sequenced: true);
            return;
        }
        pending!.Ids = ids;
        Sequenced(lane, writerIndex, at, (Runner: runner, Lane: lane, Items: items, Count: count, Writer: writerIndex, Pending: pending),
            static m => m.Runner.Deliver(m.Lane, m.Items, m.Count, m.Writer, m.Pending));
    }

    /// <summary>A message as taken, for what is done with one that cannot be read (<see cref="Reject"/>).</summary>
    private readonly record struct Taken(Lane Lane, string Queue, StreamShape Stream, BasicDeliverEventArgs Delivery, IReadOnlyBasicProperties Properties,
        string MessageId, string? Writer, int WriterIndex, Place At);

    /// <summary>
    /// A message's place in its writer's order: its incarnation (as text) and number, or the text of a
    /// <see cref="Wire.SequenceHeader"/> (the forms by name), or none.
    /// </summary>
    private readonly record struct Place(string? Incarnation, long Number, string? Text);

    private Place PlaceOf(MessageFields fields)
    {
        if (fields.Compact is { } compact)
            return compact.Place >= 0 ? new Place(IncarnationText(compact.Incarnation.Span), compact.Place, null) : default;
        string? text = fields.Text(Wire.SequenceHeader);
        if (text is null) return default;
        int colon = text.LastIndexOf(':');
        return colon >= 0 && long.TryParse(text.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long place)
            ? new Place(text[..colon], place, text)
            : new Place(null, -1, text);
    }

    /// <summary>The incarnations seen, as text (a writer's is the same for all its messages): made once, not per message.</summary>
    private readonly Dictionary<ulong, string> _incarnations = new();

    private string IncarnationText(ReadOnlySpan<byte> incarnation)
    {
        if (incarnation.Length != 8) return Convert.ToHexStringLower(incarnation);
        ulong key = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(incarnation);
        lock (_incarnations)
        {
            if (_incarnations.TryGetValue(key, out string? text)) return text;
            // Bounded: incarnations are few (one per start of a writer), but a stream of bad messages must not grow this.
            if (_incarnations.Count >= 4096) _incarnations.Clear();
            return _incarnations[key] = Convert.ToHexStringLower(incarnation);
        }
    }

    /// <summary>The writers' names of each stream as UTF-8, to match a compact envelope's without making a text.</summary>
    private readonly Dictionary<StreamShape, byte[][]> _writerNames = new();

    /// <summary>
    /// Which of <paramref name="stream"/>'s writers wrote the message (-1: one it does not have, or none), and its name
    /// (null: the message names none).
    /// </summary>
    private int WriterOf(StreamShape stream, MessageFields fields, out string? writer)
    {
        if (fields.Compact is { } compact)
        {
            if (compact.Writer.Length == 0)
            {
                writer = null;
                return -1;
            }
            byte[][] names;
            lock (_writerNames)
                if (!_writerNames.TryGetValue(stream, out names!))
                    _writerNames[stream] = names = stream.Writers.Select(w => System.Text.Encoding.UTF8.GetBytes(w)).ToArray();
            ReadOnlySpan<byte> name = compact.Writer.Span;
            for (int i = 0; i < names.Length; i++)
            {
                if (name.SequenceEqual(names[i]))
                {
                    writer = stream.Writers[i];
                    return i;
                }
            }
            writer = System.Text.Encoding.UTF8.GetString(name);
            return -1;
        }
        writer = fields.Text(Wire.WriterHeader);
        return writer is null ? -1 : IndexOf(stream.Writers, writer);
    }

    /// <summary>A field that is a number: a compact envelope's as read (-1: absent), or the text of the forms by name.</summary>
    private static bool TryNumber(MessageFields fields, string name, long? compact, out long value)
    {
        if (compact is { } number)
        {
            value = number;
            return number >= 0;
        }
        return long.TryParse(fields.Text(name), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out value);
    }

    /// <summary>
    /// A message that cannot be read is never handed to the process: it stops the run (staying in its queue), or is moved
    /// to the run's dead-letter queue. Sequenced: a writer's later messages must not wait for it.
    /// </summary>
    private void Reject(Taken message, PendingAck pending, string what, Exception? e = null, bool sequenced = false, bool always = false)
    {
        var (lane, queue, stream, delivery, properties, messageId, writer, writerIndex, at) = message;
        ProcessRunner runner = _port.Runner;
        string description = $"message {messageId} of stream '{stream.Name}'{(writer is null ? "" : $" from '{writer}'")}";
        ProcessFailure? beyondLimit = null;
        if (always || !runner.SetsAsidePoison(_port.PoisonMessages, stream.Name, what, out beyondLimit))
        {
            _acknowledger.Forget(pending);
            _run.Fail(beyondLimit ?? new ProcessFailure(Name, stream.Name, null, null,
                $"Process '{Name}' received {description}, which {what}. It stays in the queue, unacknowledged" +
                (always ? "." : " (--broker-poison dead-letter, or an error policy of skip or dead-letter, moves such messages to the run's dead-letter queue)."), e));
            return;
        }
        byte[] body = delivery.Body.ToArray();
        var headers = new Dictionary<string, object?>();
        if (properties.Headers is not null)
            foreach (var header in properties.Headers) headers[header.Key] = header.Value;
        headers[Wire.PoisonReasonHeader] = what;
        headers[Wire.PoisonProcessHeader] = Name;
        headers[Wire.PoisonStreamHeader] = stream.Name;
        headers[Wire.PoisonQueueHeader] = queue;
        headers[Wire.PoisonMessageIdHeader] = messageId;
        headers[Wire.PoisonTimeHeader] = DateTimeOffset.UtcNow.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        var moved = new Outgoing
        {
            Exchange = _port.DeadLetterExchange,
            Stream = stream.Name,
            Body = body,
            Properties = new BasicProperties
            {
                ContentType = properties.ContentType,
                ContentEncoding = properties.ContentEncoding,
                CorrelationId = properties.CorrelationId,
                AppId = properties.AppId,
                Type = properties.Type,
                Persistent = true,
                Headers = headers,
            },
            // Never acknowledged where it is unless it is in the dead-letter queue: a full or missing one stops the run.
            Undeliverable = why => _run.Fail(new ProcessFailure(Name, stream.Name, null, null,
                $"Process '{Name}' could not move {description} to the run's dead-letter queue '{_port.DeadLetterExchange}': {why}. " +
                $"It stays in its queue, unacknowledged. Take messages from the dead-letter queue (examples/python/dead_letters.py), " +
                "or start a host again to declare it.", null)),
        };
        if (properties.IsTimestampPresent()) moved.Properties.Timestamp = properties.Timestamp;
        void Move()
        {
            _port.SetAside(moved, pending);
            // A writer of the run counted it as sent: for termination detection it was received.
            if (writer is not null && writerIndex >= 0) runner.CountHeldEnd();
            Notices.Say(_run.Options.Logger,
                $"process '{Name}' moved {description} to the run's dead-letter queue '{_port.DeadLetterExchange}': it {what}");
        }
        if (sequenced && writerIndex >= 0 && writer is not null) Sequenced(lane, writerIndex, at, (Action)Move, static move => move());
        else Move();
    }

    /// <summary>Where each writer's messages are, per stream and incarnation: the next one due, and those that came early.</summary>
    private readonly Dictionary<(int Lane, int Writer, string Incarnation), Sequence> _sequences = new();

    /// <summary>Another instance of this process takes from the same queues (replicas): each sees only part of a writer's messages.</summary>
    private bool _unordered;

    private sealed class Sequence
    {
        public long Next = -1;
        public readonly SortedDictionary<long, Action> Early = new();
    }

    /// <summary>
    /// Hands a message over in its writer's order. The broker refuses a message while a reader's queue is full, and the
    /// writer publishes it again, after newer ones it may have taken meanwhile: one that comes early waits here
    /// (unacknowledged, within the prefetch bound) until those before it have come. With checkpoints a writer's order starts
    /// at 0 in each generation; without, a writer's first message seen here sets where its order starts (a reader started
    /// again sees the middle of it), so a first message refused and published again after later ones is out of order
    /// there (documented in docs/broker-placement.md); one that comes later than
    /// its turn is handed over at once (a copy is the acknowledger's to recognise). Messages without a place
    /// (a program of another language), and every message once replicas share the queues, are handed over as taken.
    /// </summary>
    private void Sequenced<TState>(Lane lane, int writer, Place at, TState state, Action<TState> deliver)
    {
        lock (_sequences)
        {
            if (_unordered || at.Incarnation is null)
            {
                deliver(state);
                return;
            }
            long place = at.Number;
            var key = (lane.Index, writer, at.Incarnation);
            if (!_sequences.TryGetValue(key, out Sequence? sequence))
            {
                // A new incarnation of this writer (it started again): what an older one left waiting will never be completed.
                foreach (var old in _sequences.Where(s => s.Key.Lane == lane.Index && s.Key.Writer == writer && s.Value.Early.Count > 0).ToArray())
                    ReleaseLocked(old.Value);
                // With checkpoints, a generation starts every writer and every reader afresh (a restart anywhere is a new
                // generation), and each writer numbers a stream's messages from 0: so the order starts at 0, whatever comes
                // first — a first message the reader's full queue refused comes after later ones, and must not be taken as
                // late (an event-time window saw time go backwards: the broker chaos test, once). Without checkpoints a reader
                // started again sees a writer's order from its middle: there the first message seen sets where it starts.
                _sequences[key] = sequence = new Sequence { Next = _port.Generation >= 0 ? 0 : place };
            }
            if (place > sequence.Next)
            {
                // Early: it waits (only these make a closure).
                sequence.Early[place] = Later(deliver, state);
                return;
            }
            deliver(state);
            if (place < sequence.Next) return;
            sequence.Next++;
            while (sequence.Early.Remove(sequence.Next, out Action? next))
            {
                next();
                sequence.Next++;
            }
        }
    }

    /// <summary>A delivery for later (a closure made here, not on entry to <see cref="Sequenced"/>, where most deliveries make none).</summary>
    private static Action Later<TState>(Action<TState> deliver, TState state) => () => deliver(state);

    private static void ReleaseLocked(Sequence sequence)
    {
        foreach (Action early in sequence.Early.Values) early();
        sequence.Early.Clear();
    }

    /// <summary>Replicas share this process's queues: from now on messages are handed over as taken, and those waiting go now, in order.</summary>
    public void Unordered()
    {
        lock (_sequences)
        {
            if (_unordered) return;
            _unordered = true;
            foreach (Sequence sequence in _sequences.Values) ReleaseLocked(sequence);
        }
    }

    /// <summary>Messages waiting for their turn (for MILLRACE_DEBUG).</summary>
    private int Early
    {
        get { lock (_sequences) return _sequences.Values.Sum(s => s.Early.Count); }
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

    public async Task CloseAsync()
    {
        _closed = true;
        IChannel? channel;
        lock (_lock) channel = _channel;
        await ProcessPort.CloseChannelAsync(channel);
    }
}
