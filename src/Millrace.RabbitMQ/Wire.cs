using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using RabbitMQ.Client;

namespace Millrace.RabbitMQ;

/// <summary>
/// Names and message format of the broker placement (documented in docs/broker-placement.md, so
/// that programs in other languages can read and write Millrace streams).
/// </summary>
internal static class Wire
{
    /// <summary>Who wrote a message: the writing process's name.</summary>
    public const string WriterHeader = "millrace-writer";

    /// <summary>Ids of the items, in order: ranges "first:count" separated by commas (decimal, unsigned 64-bit).</summary>
    public const string IdsHeader = "millrace-ids";

    /// <summary>How many items the body holds (required for binary bodies; optional for JSON).</summary>
    public const string CountHeader = "millrace-count";

    /// <summary>With checkpoints on: the generation of the run that wrote the message (older ones are dropped).</summary>
    public const string GenerationHeader = "millrace-generation";

    /// <summary>A checkpoint marker's number.</summary>
    public const string CheckpointHeader = "millrace-checkpoint";

    public const string MarkerType = "marker";

    /// <summary>
    /// "INCARNATION:N": the message's place among those one incarnation of a process wrote to one stream (0, 1, 2...).
    /// A message the broker refused (a full queue) is published again after newer ones; readers put them back in order.
    /// </summary>
    public const string SequenceHeader = "millrace-seq";

    public const string DataType = "data";
    public const string EndType = "end";

    public static string Exchange(string prefix, string stream) => $"{prefix}.{stream}";

    public static string Queue(string prefix, string stream, string reader) => $"{prefix}.{stream}.{reader}";

    /// <summary>The run's control exchange (a ':' no stream name has: a stream may be called "control").</summary>
    public static string ControlExchange(string prefix) => $"{prefix}:control";

    /// <summary>
    /// The run's dead-letter exchange and queue (the same name; a ':' no stream name has): messages its processes could not
    /// read, moved there with the reason in their headers (<see cref="BrokerOptions.PoisonMessages"/>).
    /// </summary>
    public static string DeadLetters(string prefix) => $"{prefix}:dead-letters";

    /// <summary>Headers a message moved to the dead-letter queue gets (its own stay as they were).</summary>
    public const string PoisonReasonHeader = "millrace-poison-reason";
    public const string PoisonProcessHeader = "millrace-poison-process";
    public const string PoisonStreamHeader = "millrace-poison-stream";
    public const string PoisonQueueHeader = "millrace-poison-queue";
    public const string PoisonMessageIdHeader = "millrace-poison-message-id";
    public const string PoisonTimeHeader = "millrace-poison-time";

    /// <summary>"first:count" ranges of consecutive ids.</summary>
    public static string EncodeIds(ulong[] ids, int count)
    {
        var text = new StringBuilder(32);
        int i = 0;
        while (i < count)
        {
            int run = 1;
            while (i + run < count && ids[i + run] == unchecked(ids[i] + (ulong)run)) run++;
            if (text.Length > 0) text.Append(',');
            text.Append(ids[i].ToString(CultureInfo.InvariantCulture)).Append(':').Append(run.ToString(CultureInfo.InvariantCulture));
            i += run;
        }
        return text.ToString();
    }

    /// <exception cref="FormatException">The header is not a list of ids and runs, or names another number of ids than <paramref name="count"/>.</exception>
    public static ulong[] DecodeIds(string text, int count)
    {
        // Parsed first, allocated after: the array's size is what the header really names, never a count it only claims.
        var ranges = new List<(ulong First, int Run)>();
        long n = 0;
        foreach (string range in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int colon = range.IndexOf(':');
            if (!ulong.TryParse(colon < 0 ? range : range[..colon], NumberStyles.None, CultureInfo.InvariantCulture, out ulong first))
                throw new FormatException($"header {IdsHeader}: '{Shorten(range)}' is not an id or an id:run");
            int run = 1;
            if (colon >= 0 && !int.TryParse(range[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out run))
                throw new FormatException($"header {IdsHeader}: '{Shorten(range)}' has no valid run after its ':'");
            n += run;
            if (run < 1 || n > count)
                throw new FormatException($"header {IdsHeader} names more ids than the body has items ({count})");
            ranges.Add((first, run));
        }
        if (n != count) throw new FormatException($"header {IdsHeader} names {n} ids for {count} items");
        var ids = new ulong[n];
        int i = 0;
        foreach ((ulong first, int run) in ranges)
        {
            for (int k = 0; k < run; k++) ids[i++] = unchecked(first + (ulong)k);
        }
        return ids;
    }

    private static string Shorten(string s) => s.Length <= 30 ? s : s[..30] + "…";

    /// <summary>
    /// The <c>content_encoding</c> of a message whose body starts with an envelope: the message's fields (the names and
    /// values the headers above would carry, and <c>type</c>), then the payload as the stream's codec writes it. Millrace
    /// writes every message so: the broker reads headers and properties of every message it takes and hands on, a body
    /// it does not look into (four headers cost it more CPU than the rest of a one-item message). Readers take both forms.
    /// </summary>
    public const string EnvelopeEncoding = "millrace-envelope";

    /// <summary>The envelope's first bytes: "MRE1".</summary>
    public static ReadOnlySpan<byte> EnvelopeMagic => "MRE1"u8;

    /// <summary>The envelope's field for what the <c>type</c> property says otherwise (absent: data).</summary>
    public const string TypeField = "type";

    /// <summary>
    /// Writes an envelope: "MRE1", the number of fields (one byte), each field as its name's length (one byte), the name
    /// (UTF-8), its value's length (four bytes, little-endian) and the value (UTF-8). The payload follows.
    /// </summary>
    public static void WriteEnvelope(IBufferWriter<byte> to, ReadOnlySpan<(string Name, string Value)> fields)
    {
        int size = 5;
        foreach (var (name, value) in fields) size += 5 + Encoding.UTF8.GetByteCount(name) + Encoding.UTF8.GetByteCount(value);
        Span<byte> span = to.GetSpan(size);
        EnvelopeMagic.CopyTo(span);
        span[4] = checked((byte)fields.Length);
        int at = 5;
        foreach (var (name, value) in fields)
        {
            int n = Encoding.UTF8.GetBytes(name, span[(at + 1)..]);
            span[at] = checked((byte)n);
            at += 1 + n;
            int v = Encoding.UTF8.GetBytes(value, span[(at + 4)..]);
            BinaryPrimitives.WriteInt32LittleEndian(span[at..], v);
            at += 4 + v;
        }
        to.Advance(at);
    }

    /// <summary>A message's fields (its envelope's, or its headers and <c>type</c>) and its payload.</summary>
    /// <exception cref="FormatException">The message says it has an envelope and its body does not start with a whole one.</exception>
    public static MessageFields Fields(IReadOnlyBasicProperties properties, ReadOnlyMemory<byte> body)
    {
        if (properties.ContentEncoding != EnvelopeEncoding) return new MessageFields(properties.Headers, null, properties.Type, body);
        ReadOnlySpan<byte> span = body.Span;
        if (span.Length < 5 || !span[..4].SequenceEqual(EnvelopeMagic))
            throw new FormatException($"content_encoding is '{EnvelopeEncoding}' but the body ({body.Length} bytes) does not start with \"MRE1\" and a field count");
        int count = span[4];
        var fields = new (string Name, string Value)[count];
        string? type = null;
        int at = 5;
        for (int i = 0; i < count; i++)
        {
            if (at >= span.Length) throw new FormatException($"the envelope ends before its field {i + 1} of {count}");
            int n = span[at];
            if (at + 1 + n + 4 > span.Length) throw new FormatException($"the envelope ends inside its field {i + 1} of {count}");
            string name = Encoding.UTF8.GetString(span.Slice(at + 1, n));
            at += 1 + n;
            int v = BinaryPrimitives.ReadInt32LittleEndian(span[at..]);
            if (v < 0 || v > span.Length - at - 4) throw new FormatException($"the envelope ends inside the value of its field '{Shorten(name)}'");
            string value = Encoding.UTF8.GetString(span.Slice(at + 4, v));
            at += 4 + v;
            fields[i] = (name, value);
            if (name == TypeField) type = value;
        }
        return new MessageFields(null, fields, type, body[at..]);
    }

    public static string? Text(IDictionary<string, object?>? headers, string name) =>
        headers is not null && headers.TryGetValue(name, out object? value)
            ? value switch
            {
                byte[] bytes => Encoding.UTF8.GetString(bytes),
                string s => s,
                null => null,
                _ => Convert.ToString(value, CultureInfo.InvariantCulture),
            }
            : null;
}

/// <summary>The fields of one message, from its envelope or its headers, and its payload.</summary>
internal readonly struct MessageFields
{
    private readonly IDictionary<string, object?>? _headers;
    private readonly (string Name, string Value)[]? _fields;

    public MessageFields(IDictionary<string, object?>? headers, (string Name, string Value)[]? fields, string? type, ReadOnlyMemory<byte> payload)
    {
        _headers = headers;
        _fields = fields;
        Type = type;
        Payload = payload;
    }

    /// <summary>data (or absent), end or marker.</summary>
    public string? Type { get; }

    /// <summary>The items as the stream's codec wrote them.</summary>
    public ReadOnlyMemory<byte> Payload { get; }

    public string? Text(string name)
    {
        if (_fields is null) return Wire.Text(_headers, name);
        foreach (var (n, value) in _fields)
            if (n == name) return value;
        return null;
    }
}
