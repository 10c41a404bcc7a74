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
    private readonly string _contentType;
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);
    private long _sequence;

    public ExchangeDestination(ProcessPort port, string exchange, string stream, BatchCodec codec, string readerName, int writer, bool inSameCycle)
        : base(readerName, writer, inSameCycle)
    {
        _port = port;
        _exchange = exchange;
        _stream = stream;
        _codec = codec;
        _contentType = Wire.ContentType(codec.Name);
    }

    public override bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer)
    {
        if (!_port.HasRoom(writer)) return false;
        _buffer.ResetWrittenCount();
        try
        {
            _codec.Encode(items, count, _buffer);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException(
                $"Process '{_port.Name}' could not encode a batch of stream '{_stream}' ({_codec.Name} codec): {e.GetType().Name}: {e.Message}", e);
        }
        var headers = new Dictionary<string, object?>
        {
            [Wire.WriterHeader] = _port.Name,
            [Wire.CountHeader] = count.ToString(CultureInfo.InvariantCulture),
        };
        if (ids is not null) headers[Wire.IdsHeader] = Wire.EncodeIds(ids, count);
        if (_port.Generation >= 0) headers[Wire.GenerationHeader] = Generation;
        _port.Accept(Message(_buffer.WrittenSpan.ToArray(), Wire.DataType, headers));
        return true;
    }

    private string Generation => _port.Generation.ToString(CultureInfo.InvariantCulture);

    public override void SendEnd()
    {
        var headers = new Dictionary<string, object?> { [Wire.WriterHeader] = _port.Name };
        if (_port.Generation >= 0) headers[Wire.GenerationHeader] = Generation;
        _port.AcceptEnd(Message(Array.Empty<byte>(), Wire.EndType, headers));
    }

    /// <summary>The marker of a checkpoint, after every batch published before it (one publisher, in order).</summary>
    public override void SendMarker(long checkpoint) =>
        _port.Accept(Message(Array.Empty<byte>(), Wire.MarkerType, new Dictionary<string, object?>
        {
            [Wire.WriterHeader] = _port.Name,
            [Wire.GenerationHeader] = Generation,
            [Wire.CheckpointHeader] = checkpoint.ToString(CultureInfo.InvariantCulture),
        }));

    private Outgoing Message(byte[] body, string type, Dictionary<string, object?> headers)
    {
        var properties = new BasicProperties
        {
            ContentType = _contentType,
            Type = type,
            Persistent = true,
            Headers = headers,
        };
        // In order per stream and incarnation, whatever the broker refuses and takes later (every kind: data, end, marker).
        headers[Wire.SequenceHeader] = $"{_port.Instance}:{_sequence++}";
        var message = new Outgoing { Exchange = _exchange, Stream = _stream, Body = body, Properties = properties };
        return message;
    }

    public override string Fill => _port.Fill;
}

/// <summary>Another reader of a stream already published to: the exchange copies; this only counts.</summary>
internal sealed class CopyDestination : Destination
{
    public CopyDestination(string readerName, int writer, bool inSameCycle) : base(readerName, writer, inSameCycle)
    {
    }

    public override bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer) => true;

    public override void SendEnd()
    {
    }

    public override void SendMarker(long checkpoint)
    {
    }

    public override string Fill => "copied by the broker";
}
