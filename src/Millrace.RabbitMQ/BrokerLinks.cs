using System.Buffers;
using System.Globalization;
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
    private long _sequence;

    public ExchangeDestination(ProcessPort port, string exchange, string stream, BatchCodec codec, string readerName, int writer, bool inSameCycle)
        : base(readerName, writer, inSameCycle)
    {
        _port = port;
        _exchange = exchange;
        _stream = stream;
        _codec = codec;
    }

    public override bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer)
    {
        if (!_port.HasRoom(writer)) return false;
        // The envelope first (the message's fields), then the items as the codec writes them.
        Span<(string, string)> fields = new (string, string)[5];
        int n = 0;
        fields[n++] = (Wire.WriterHeader, _port.Name);
        fields[n++] = (Wire.SequenceHeader, NextPlace());
        fields[n++] = (Wire.CountHeader, count.ToString(CultureInfo.InvariantCulture));
        if (ids is not null) fields[n++] = (Wire.IdsHeader, Wire.EncodeIds(ids, count));
        if (_port.Generation >= 0) fields[n++] = (Wire.GenerationHeader, Generation);
        // Written into this destination's own buffer (the writer's thread only), then copied out at its exact size: the body
        // lives until the broker confirms it, so a buffer sized for the worst case would keep twice the memory that long.
        ArrayBufferWriter<byte> buffer = _buffer;
        buffer.ResetWrittenCount();
        Wire.WriteEnvelope(buffer, fields[..n]);
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
        _port.Accept(Message(buffer.WrittenSpan.ToArray(), null));
        // A buffer grown for one unusually large batch is not kept for ever.
        if (buffer.Capacity > 1 << 20 && buffer.WrittenCount < 1 << 18) _buffer = new ArrayBufferWriter<byte>(256);
        return true;
    }

    /// <summary>The items are encoded into the message's body before TryEnqueue returns.</summary>
    public override bool KeepsArrays => false;

    private string Generation => _port.Generation.ToString(CultureInfo.InvariantCulture);

    /// <summary>"INCARNATION:N": this message's place among those this incarnation wrote to the stream (every kind).</summary>
    private string NextPlace() => $"{_port.Instance}:{_sequence++}";

    public override void SendEnd()
    {
        var fields = new List<(string, string)> { (Wire.WriterHeader, _port.Name), (Wire.SequenceHeader, NextPlace()), (Wire.TypeField, Wire.EndType) };
        if (_port.Generation >= 0) fields.Add((Wire.GenerationHeader, Generation));
        _port.AcceptEnd(Message(Envelope(fields), Wire.EndType));
    }

    /// <summary>The marker of a checkpoint, after every batch published before it (one publisher, in order).</summary>
    public override void SendMarker(long checkpoint) =>
        _port.Accept(Message(Envelope(new List<(string, string)>
        {
            (Wire.WriterHeader, _port.Name),
            (Wire.SequenceHeader, NextPlace()),
            (Wire.TypeField, Wire.MarkerType),
            (Wire.GenerationHeader, Generation),
            (Wire.CheckpointHeader, checkpoint.ToString(CultureInfo.InvariantCulture)),
        }), Wire.MarkerType));

    private static ReadOnlyMemory<byte> Envelope(List<(string, string)> fields)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        Wire.WriteEnvelope(buffer, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(fields));
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
