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
        return ExpandIds(ranges.ToArray(), count);
    }

    private static string Shorten(string s) => s.Length <= 30 ? s : s[..30] + "…";

    /// <summary>
    /// The <c>content_encoding</c> of a message whose body starts with an envelope: the message's fields (the names and
    /// values the headers above would carry, and <c>type</c>), then the payload as the stream's codec writes it. Millrace
    /// writes every message so, in the compact form (<see cref="WriteCompactEnvelope"/>): the broker reads headers and
    /// properties of every message it takes and hands on, a body it does not look into (four headers cost it more CPU than
    /// the rest of a one-item message). Readers take the compact form, the form by name (<see cref="WriteEnvelope"/>) and headers.
    /// </summary>
    public const string EnvelopeEncoding = "mre";

    /// <summary>
    /// What <see cref="EnvelopeEncoding"/> was before it was shortened (still read): the broker carries the property in every
    /// message it takes and hands on, and its CPU per message grows with the message's bytes.
    /// </summary>
    public const string LongEnvelopeEncoding = "millrace-envelope";

    /// <summary>Whether a message's <c>content_encoding</c> says its body starts with an envelope.</summary>
    public static bool IsEnveloped(string? contentEncoding) => contentEncoding is EnvelopeEncoding or LongEnvelopeEncoding;

    /// <summary>The envelope's first bytes: "MRE1".</summary>
    public static ReadOnlySpan<byte> EnvelopeMagic => "MRE1"u8;

    /// <summary>The envelope's field for what the <c>type</c> property says otherwise (absent: data).</summary>
    public const string TypeField = "type";

    /// <summary>
    /// Writes an envelope by name (what Millrace wrote before the compact form; still read): "MRE1", the number of fields (one byte), each field as its name's length (one byte), the name
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

    /// <summary>The compact envelope's first bytes: "MRE2" (what Millrace writes; see <see cref="WriteCompactEnvelope"/>).</summary>
    public static ReadOnlySpan<byte> CompactMagic => "MRE2"u8;

    // The compact envelope's flags: which of the optional numbers follow.
    private const byte HasGeneration = 1, HasCheckpoint = 2, HasCount = 4, HasIds = 8;

    /// <summary>
    /// Writes a compact envelope (docs/broker-placement.md, "Message format"): "MRE2"; the kind (one byte: 0 data, 1 end,
    /// 2 marker); flags (one byte: 1 generation, 2 checkpoint, 4 count, 8 ids follow); the writer's name (a varint length,
    /// then UTF-8); the incarnation (a varint length, then its bytes; none: no place), and the place (a varint) when there
    /// is one; then, as flagged, the generation, the checkpoint and the count (varints), and the ids (a varint number of
    /// ranges, each its first id, eight bytes little-endian, and its length, a varint). A varint is LEB128: seven bits
    /// a byte, the lowest first, the high bit set on every byte but the last. The payload follows.
    /// A one-item message's fields take about 35 bytes here, against about 130 in the <c>MRE1</c> form: the broker's CPU per
    /// message grows with its size (bench/RESULTS.md).
    /// </summary>
    /// <param name="to">Where the envelope goes (the payload is written after it).</param>
    /// <param name="kind">Data, an end mark or a marker.</param>
    /// <param name="writer">The writing process's name, UTF-8.</param>
    /// <param name="incarnation">The writer's incarnation (empty: the message has no place).</param>
    /// <param name="place">The message's place among those the incarnation wrote to the stream.</param>
    /// <param name="generation">The run's generation, or -1 for none (checkpoints off).</param>
    /// <param name="checkpoint">A marker's checkpoint, or -1.</param>
    /// <param name="count">The number of items, or -1 to leave it out.</param>
    /// <param name="ids">The items' ids (the first <paramref name="count"/>), or null.</param>
    public static void WriteCompactEnvelope(IBufferWriter<byte> to, MessageKind kind, ReadOnlySpan<byte> writer, ReadOnlySpan<byte> incarnation, long place,
        long generation, long checkpoint, int count, ulong[]? ids)
    {
        int ranges = ids is null ? 0 : Ranges(ids, count);
        int size = 6 + 10 + writer.Length + 10 + incarnation.Length + 4 * 10 + ranges * 18;
        Span<byte> span = to.GetSpan(size);
        CompactMagic.CopyTo(span);
        span[4] = (byte)kind;
        span[5] = (byte)((generation >= 0 ? HasGeneration : 0) | (checkpoint >= 0 ? HasCheckpoint : 0) | (count >= 0 ? HasCount : 0) | (ids is not null ? HasIds : 0));
        int at = 6;
        at += WriteVarint(span[at..], (ulong)writer.Length);
        writer.CopyTo(span[at..]);
        at += writer.Length;
        at += WriteVarint(span[at..], (ulong)incarnation.Length);
        incarnation.CopyTo(span[at..]);
        at += incarnation.Length;
        if (incarnation.Length > 0) at += WriteVarint(span[at..], checked((ulong)place));
        if (generation >= 0) at += WriteVarint(span[at..], (ulong)generation);
        if (checkpoint >= 0) at += WriteVarint(span[at..], (ulong)checkpoint);
        if (count >= 0) at += WriteVarint(span[at..], (ulong)count);
        if (ids is not null)
        {
            at += WriteVarint(span[at..], (ulong)ranges);
            int i = 0;
            while (i < count)
            {
                int run = 1;
                while (i + run < count && ids[i + run] == unchecked(ids[i] + (ulong)run)) run++;
                BinaryPrimitives.WriteUInt64LittleEndian(span[at..], ids[i]);
                at += 8;
                at += WriteVarint(span[at..], (ulong)run);
                i += run;
            }
        }
        to.Advance(at);
    }

    private static int Ranges(ulong[] ids, int count)
    {
        int ranges = 0;
        for (int i = 0; i < count; i++)
            if (i == 0 || ids[i] != unchecked(ids[i - 1] + 1)) ranges++;
        return ranges;
    }

    private static int WriteVarint(Span<byte> to, ulong value)
    {
        int n = 0;
        while (value >= 0x80)
        {
            to[n++] = (byte)(value | 0x80);
            value >>= 7;
        }
        to[n++] = (byte)value;
        return n;
    }

    /// <exception cref="FormatException">The body ends inside it, or it has more than ten bytes or more than 64 bits.</exception>
    private static ulong ReadVarint(ReadOnlySpan<byte> span, ref int at, string what)
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (at >= span.Length) throw new FormatException($"the envelope ends inside its {what}");
            byte b = span[at++];
            if (shift == 63 && b > 1) throw new FormatException($"the envelope's {what} is more than 64 bits");
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return value;
        }
        throw new FormatException($"the envelope's {what} is more than 64 bits");
    }

    private static long ReadNumber(ReadOnlySpan<byte> span, ref int at, string what, long max)
    {
        ulong value = ReadVarint(span, ref at, what);
        if (value > (ulong)max) throw new FormatException($"the envelope's {what} is {value}, more than {max}");
        return (long)value;
    }

    private static MessageFields CompactFields(ReadOnlyMemory<byte> body)
    {
        ReadOnlySpan<byte> span = body.Span;
        if (span.Length < 6) throw new FormatException($"the envelope ends before its kind and flags ({body.Length} bytes)");
        string type = span[4] switch
        {
            (byte)MessageKind.Data => DataType,
            (byte)MessageKind.End => EndType,
            (byte)MessageKind.Marker => MarkerType,
            _ => throw new FormatException($"the envelope's kind is {span[4]}, not 0 (data), 1 (end) or 2 (marker)"),
        };
        byte flags = span[5];
        if ((flags & ~(HasGeneration | HasCheckpoint | HasCount | HasIds)) != 0) throw new FormatException($"the envelope's flags are {flags}, which has bits no version of it knows");
        int at = 6;
        int length = (int)ReadNumber(span, ref at, "writer's length", span.Length - at);
        if (length > span.Length - at) throw new FormatException("the envelope ends inside its writer's name");
        ReadOnlyMemory<byte> writer = body.Slice(at, length);
        at += length;
        length = (int)ReadNumber(span, ref at, "incarnation's length", span.Length - at);
        if (length > span.Length - at) throw new FormatException("the envelope ends inside its incarnation");
        ReadOnlyMemory<byte> incarnation = body.Slice(at, length);
        at += length;
        long place = length > 0 ? ReadNumber(span, ref at, "place", long.MaxValue) : -1;
        long generation = (flags & HasGeneration) != 0 ? ReadNumber(span, ref at, "generation", long.MaxValue) : -1;
        long checkpoint = (flags & HasCheckpoint) != 0 ? ReadNumber(span, ref at, "checkpoint", long.MaxValue) : -1;
        int count = (flags & HasCount) != 0 ? (int)ReadNumber(span, ref at, "count", int.MaxValue) : -1;
        (ulong First, int Run)[]? ranges = null;
        if ((flags & HasIds) != 0)
        {
            // Every range takes nine bytes at least: a number of ranges the body cannot hold is refused before anything is made.
            // The ranges are only read here; whether they name as many ids as there are items is the items' decoding's to say
            // (ExpandIds), where a message keeps its place in its writer's order (a gap there would hold back every later one).
            long number = ReadNumber(span, ref at, "number of id ranges", (span.Length - at) / 9);
            ranges = new (ulong First, int Run)[number];
            for (int i = 0; i < number; i++)
            {
                if (span.Length - at < 8) throw new FormatException("the envelope ends inside its ids");
                ulong first = BinaryPrimitives.ReadUInt64LittleEndian(span[at..]);
                at += 8;
                ranges[i] = (first, (int)ReadNumber(span, ref at, "id range's length", int.MaxValue));
            }
        }
        return new MessageFields(new CompactEnvelope(writer, incarnation, place, generation, checkpoint), type, body[at..], count, ranges);
    }

    /// <summary>
    /// The ids a compact envelope's ranges name, for the <paramref name="count"/> items its body held (each range's ids wrap
    /// round at 2^64, as the <see cref="IdsHeader"/> text's do). Made only once the items are decoded: an array as long as
    /// the items, never as long as a range merely claims.
    /// </summary>
    /// <exception cref="FormatException">A range of no ids, or the ranges name another number of ids than <paramref name="count"/>.</exception>
    public static ulong[] ExpandIds((ulong First, int Run)[] ranges, int count)
    {
        long total = 0;
        foreach ((_, int run) in ranges)
        {
            if (run < 1) throw new FormatException("the envelope has an id range of no ids");
            total += run;
        }
        if (total != count) throw new FormatException($"the envelope names {total} ids for {count} items");
        var ids = new ulong[count];
        int k = 0;
        foreach ((ulong first, int run) in ranges)
            for (int j = 0; j < run; j++) ids[k++] = unchecked(first + (ulong)j);
        return ids;
    }

    /// <summary>A message's fields (its envelope's, or its headers and <c>type</c>) and its payload.</summary>
    /// <exception cref="FormatException">The message says it has an envelope and its body does not start with a whole one.</exception>
    public static MessageFields Fields(IReadOnlyBasicProperties properties, ReadOnlyMemory<byte> body)
    {
        if (!IsEnveloped(properties.ContentEncoding)) return new MessageFields(properties.Headers, null, properties.Type, body);
        ReadOnlySpan<byte> span = body.Span;
        if (span.Length >= 4 && span[..4].SequenceEqual(CompactMagic)) return CompactFields(body);
        if (span.Length < 5 || !span[..4].SequenceEqual(EnvelopeMagic))
            throw new FormatException($"content_encoding is '{properties.ContentEncoding}' (a Millrace envelope) but the body ({body.Length} bytes) does not start with \"MRE2\" or \"MRE1\" and a field count");
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

/// <summary>What a message is, in a compact envelope's kind byte.</summary>
internal enum MessageKind : byte
{
    Data = 0,
    End = 1,
    Marker = 2,
}

/// <summary>The fields of one message, from its envelope or its headers, and its payload.</summary>
internal readonly struct MessageFields
{
    private readonly IDictionary<string, object?>? _headers;
    private readonly (string Name, string Value)[]? _fields;
    private readonly CompactEnvelope? _compact;

    public MessageFields(IDictionary<string, object?>? headers, (string Name, string Value)[]? fields, string? type, ReadOnlyMemory<byte> payload,
        int count = -1, (ulong First, int Run)[]? idRanges = null)
    {
        _headers = headers;
        _fields = fields;
        Type = type;
        Payload = payload;
        Count = count;
        IdRanges = idRanges;
    }

    /// <summary>A compact envelope's fields, kept as read (as numbers and bytes: texts only when asked for, see <see cref="Text"/>).</summary>
    public MessageFields(CompactEnvelope compact, string type, ReadOnlyMemory<byte> payload, int count, (ulong First, int Run)[]? idRanges)
        : this(null, null, type, payload, count, idRanges) => _compact = compact;

    /// <summary>The compact envelope's fields, or null (an envelope by name, or headers).</summary>
    public CompactEnvelope? Compact => _compact;

    /// <summary>The number of items a compact envelope gave as a number, or -1 (then <see cref="Wire.CountHeader"/>'s text, if any).</summary>
    public int Count { get; }

    /// <summary>
    /// The ranges of ids a compact envelope gave (first id, how many), or null (then <see cref="Wire.IdsHeader"/>'s text, if
    /// any); not yet checked against the items (<see cref="Wire.ExpandIds"/>).
    /// </summary>
    public (ulong First, int Run)[]? IdRanges { get; }

    /// <summary>data (or absent), end or marker.</summary>
    public string? Type { get; }

    /// <summary>The items as the stream's codec wrote them.</summary>
    public ReadOnlyMemory<byte> Payload { get; }

    /// <summary>A field as text, whichever form the message came in (a compact envelope's numbers are written out here).</summary>
    public string? Text(string name)
    {
        if (_compact is { } c)
            return name switch
            {
                Wire.WriterHeader => c.Writer.Length > 0 ? Encoding.UTF8.GetString(c.Writer.Span) : null,
                Wire.SequenceHeader => c.Place >= 0 ? $"{Convert.ToHexStringLower(c.Incarnation.Span)}:{c.Place.ToString(CultureInfo.InvariantCulture)}" : null,
                Wire.GenerationHeader => c.Generation >= 0 ? c.Generation.ToString(CultureInfo.InvariantCulture) : null,
                Wire.CheckpointHeader => c.Checkpoint >= 0 ? c.Checkpoint.ToString(CultureInfo.InvariantCulture) : null,
                Wire.TypeField => Type != Wire.DataType ? Type : null,
                _ => null,
            };
        if (_fields is null) return Wire.Text(_headers, name);
        foreach (var (n, value) in _fields)
            if (n == name) return value;
        return null;
    }
}

/// <summary>
/// A compact envelope's fields as read: the writer's name (UTF-8, empty for none), its incarnation (empty: the message has
/// no place) and the place, generation and checkpoint (-1 where absent).
/// </summary>
internal sealed record CompactEnvelope(ReadOnlyMemory<byte> Writer, ReadOnlyMemory<byte> Incarnation, long Place, long Generation, long Checkpoint);
