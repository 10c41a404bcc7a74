using System.Buffers;
using System.Text.Json;

namespace Millrace;

/// <summary>
/// The default codec: a batch is one UTF-8 JSON array of its items, written by System.Text.Json
/// with the web defaults (camelCase property names; reading ignores case and accepts numbers in
/// strings), public fields included (value tuples, classes with fields), and NaN and the
/// infinities as the strings "NaN", "Infinity" and "-Infinity". A string that is not valid UTF-16
/// (an unpaired surrogate) is refused with an error naming it: JSON text is UTF-8, which cannot carry
/// it exactly. Any program that reads and writes JSON can take part.
/// </summary>
public sealed class JsonCodec<T> : ICodec<T>
{
    private readonly JsonSerializerOptions _options;

    /// <summary>A JSON codec with the web defaults, or with <paramref name="options"/>.</summary>
    public JsonCodec(JsonSerializerOptions? options = null) => _options = options ?? Defaults;

    internal static JsonSerializerOptions Defaults { get; } = new(JsonSerializerDefaults.Web)
    {
        IncludeFields = true,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowReadingFromString |
                         System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
        // A string with an unpaired surrogate is refused, not sent with U+FFFD in its place.
        Converters = { new Codecs.StrictStringConverter(), new Codecs.StrictCharConverter() },
    };

    /// <inheritdoc />
    public string Name => "json";

    /// <inheritdoc />
    public void Encode(ReadOnlySpan<T> items, IBufferWriter<byte> output)
    {
        // One writer per thread, reset for each batch (a batch of one item made a writer each time). Taken out of its slot
        // while in use: an item's converter that encodes a batch itself gets a writer of its own.
        Utf8JsonWriter? writer = t_writer;
        t_writer = null;
        if (writer is null) writer = new Utf8JsonWriter(output);
        else writer.Reset(output);
        writer.WriteStartArray();
        foreach (T item in items) JsonSerializer.Serialize(writer, item, _options);
        writer.WriteEndArray();
        writer.Flush();
        // Kept without the output (the writer must not keep a batch's buffer alive).
        writer.Reset(Stream.Null);
        t_writer = writer;
    }

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    /// <inheritdoc />
    public T[] Decode(ReadOnlySpan<byte> data, int count)
    {
        T[] items = JsonSerializer.Deserialize<T[]>(data, _options)
            ?? throw new JsonException("The batch is the JSON literal null, not an array.");
        // A count below zero: not announced (a message from a program that only wrote a JSON array).
        if (count >= 0 && items.Length != count)
            throw new JsonException($"The batch holds {items.Length} items; its frame announced {count}.");
        return items;
    }
}
