using System.Buffers;
using Millrace.Codecs;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using RabbitMQ.Client;

namespace Millrace.RabbitMQ;

/// <summary>
/// Every stream through the broker: a writer publishes each batch once to the stream's exchange,
/// which hands a copy to the queue of every reader. Readers take from their queues (the ports).
/// </summary>
internal sealed class BrokerLinks : ITransport
{
    private readonly GraphShape _graph;
    private readonly string _prefix;
    private readonly Func<StreamShape, BatchCodec> _codecs;
    private readonly ProcessPort?[] _ports;

    public BrokerLinks(GraphShape graph, string prefix, Func<StreamShape, BatchCodec> codecs, ProcessPort?[] ports)
    {
        _graph = graph;
        _prefix = prefix;
        _codecs = codecs;
        _ports = ports;
    }

    public bool CarriesEverything => true;

    public Destination Outgoing(StreamShape stream, int writerIndex, int reader, bool inSameCycle)
    {
        int writer = stream.WriterIndexes[writerIndex];
        string readerName = _graph.Processes[reader].Name;
        // One publish reaches every reader; the other readers' destinations only keep the count. The
        // one that publishes is a reader outside the writer's cycle if there is one: termination
        // detection closes the links inside the cycle, and the end mark must still reach the others.
        int publisher = stream.ReaderIndexes.Where(r => !_graph.InSameCycle(writer, r)).DefaultIfEmpty(stream.ReaderIndexes[0]).First();
        if (reader != publisher) return new CopyDestination(readerName, writerIndex, inSameCycle);
        return new ExchangeDestination(_ports[writer]!, Wire.Exchange(_prefix, stream.Name), stream.Name,
            _codecs(stream), readerName, writerIndex, inSameCycle);
    }

    public RoomReturn? Incoming(StreamShape stream, int writerIndex, ProcessRunner reader, Lane lane)
    {
        // One queue per reader and stream, whatever the number of writers.
        if (writerIndex == 0)
            _ports[_graph.IndexOf(reader.Name)]!.AddInput(lane, Wire.Queue(_prefix, stream.Name, reader.Name), stream, _codecs(stream));
        return null;
    }
}

/// <summary>Publishes a writer's batches of one stream to the stream's exchange, within the port's bound on unconfirmed messages.</summary>
internal sealed class ExchangeDestination : Destination
{
    private readonly ProcessPort _port;
    private readonly string _exchange;
    private readonly string _stream;
    private readonly BatchCodec _codec;
    private ArrayBufferWriter<byte> _buffer = new(256);

    /// <summary>
    /// The properties of every data message of this destination, one object, while nothing traces publishes: never changed
    /// once made. Its headers are an empty table from the start: with publisher confirms on, RabbitMQ.Client gives a message
    /// without headers an empty table of its own (a dictionary made per message), and writes into a message's headers only
    /// a trace context (confirmation tracking, which would add a number, is off).
    /// </summary>
    private readonly BasicProperties _dataProperties = new()
    {
        ContentEncoding = Wire.EnvelopeEncoding, Persistent = true, Headers = new Dictionary<string, object?>(),
    };
    private readonly byte[] _writerName;
    private long _sequence;

    public ExchangeDestination(ProcessPort port, string exchange, string stream, BatchCodec codec, string readerName, int writer, bool inSameCycle)
        : base(readerName, writer, inSameCycle)
    {
        _port = port;
        _exchange = exchange;
        _stream = stream;
        _codec = codec;
        _writerName = System.Text.Encoding.UTF8.GetBytes(port.Name);
    }

    /// <summary>Has listeners exactly when RabbitMQ.Client's own source of publishing activities has (they listen by name).</summary>
    private static readonly System.Diagnostics.ActivitySource TracedPublishes = new(RabbitMQActivitySource.PublisherSourceName);

    public override bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer)
    {
        if (!_port.HasRoom(writer)) return false;
        // The envelope first (the message's fields), then the items as the codec writes them. Written into this destination's
        // own buffer (the writer's thread only), then copied out at its exact size: the body lives until the broker confirms
        // it, so a buffer sized for the worst case would keep twice the memory that long.
        ArrayBufferWriter<byte> buffer = _buffer;
        buffer.ResetWrittenCount();
        Wire.WriteCompactEnvelope(buffer, MessageKind.Data, _writerName, _port.InstanceBytes, _sequence++, _port.Generation, -1, count, ids);
        try
        {
            _codec.Encode(items, count, buffer);
        }
        catch (Exception e)
        {
            _sequence--;
            throw new InvalidOperationException(
                $"Process '{_port.Name}' could not encode a batch of stream '{_stream}' ({_codec.Name} codec): {e.GetType().Name}: {e.Message}", e);
        }
        // Traced (something listens to RabbitMQ.Client's publishing activities): the client writes each message's trace
        // context into its headers, so each message has properties of its own.
        BasicProperties properties = TracedPublishes.HasListeners() ? new BasicProperties { ContentEncoding = Wire.EnvelopeEncoding, Persistent = true } : _dataProperties;
        _port.Accept(new Outgoing { Exchange = _exchange, Stream = _stream, Body = buffer.WrittenSpan.ToArray(), Properties = properties });
        // A buffer grown for one unusually large batch is not kept for ever.
        if (buffer.Capacity > 1 << 20 && buffer.WrittenCount < 1 << 18) _buffer = new ArrayBufferWriter<byte>(256);
        return true;
    }

    /// <summary>The items are encoded into the message's body before TryEnqueue returns.</summary>
    public override bool KeepsArrays => false;

    public override void SendEnd() => _port.AcceptEnd(Message(Envelope(MessageKind.End, -1), Wire.EndType));

    /// <summary>The marker of a checkpoint, after every batch published before it (one publisher, in order).</summary>
    public override void SendMarker(long checkpoint) => _port.Accept(Message(Envelope(MessageKind.Marker, checkpoint), Wire.MarkerType));

    /// <summary>An end mark's or a marker's body: the envelope alone, with this message's place (every kind has one).</summary>
    private ReadOnlyMemory<byte> Envelope(MessageKind kind, long checkpoint)
    {
        var buffer = new ArrayBufferWriter<byte>(64);
        Wire.WriteCompactEnvelope(buffer, kind, _writerName, _port.InstanceBytes, _sequence++, _port.Generation, checkpoint, -1, null);
        return buffer.WrittenMemory;
    }

    /// <summary>
    /// A message as Millrace writes it: persistent, its fields in the envelope. End marks and markers say their type in the
    /// <c>type</c> property too, for programs that watch a stream without reading envelopes.
    /// </summary>
    private Outgoing Message(ReadOnlyMemory<byte> body, string? type) => new()
    {
        Exchange = _exchange,
        Stream = _stream,
        Body = body,
        Properties = new BasicProperties { ContentEncoding = Wire.EnvelopeEncoding, Type = type, Persistent = true },
    };

    public override string Fill => _port.Fill;
}

/// <summary>Another reader of a stream already published to: the exchange copies; this only counts.</summary>
internal sealed class CopyDestination : Destination
{
    public CopyDestination(string readerName, int writer, bool inSameCycle) : base(readerName, writer, inSameCycle)
    {
    }

    public override bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer) => true;

    public override bool KeepsArrays => false;

    public override void SendEnd()
    {
    }

    public override void SendMarker(long checkpoint)
    {
    }

    public override string Fill => "copied by the broker";
}
