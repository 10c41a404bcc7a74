using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Millrace.Codecs;

/// <summary>
/// Strings cross an OS process or the broker as UTF-8, which cannot carry an unpaired surrogate
/// (half of a UTF-16 pair, as a string cut in the middle of an emoji holds). Encoders would put U+FFFD
/// in its place without a word; the codecs refuse such a string instead, naming it.
/// </summary>
internal static class Utf16
{
    /// <summary>UTF-8 that throws on what it cannot encode or decode exactly, instead of putting U+FFFD.</summary>
    public static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Throws if <paramref name="value"/> holds an unpaired surrogate. Fast when it holds no surrogate at all.</summary>
    public static void EnsureValid(string value)
    {
        ReadOnlySpan<char> span = value.AsSpan();
        int i = span.IndexOfAnyInRange('\ud800', '\udfff');
        if (i < 0) return;
        for (; i < span.Length; i++)
        {
            char c = span[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < span.Length && char.IsLowSurrogate(span[i + 1]))
            {
                i++;
                continue;
            }
            throw Unpaired(value, i);
        }
    }

    public static ArgumentException Unpaired(string value, int index)
    {
        string preview = value.Length <= 40 ? value : value[..40] + "…";
        return new ArgumentException(
            $"The string \"{Escape(preview)}\" holds an unpaired surrogate (U+{(int)value[index]:X4} at index {index}): it is not valid UTF-16, " +
            "so it cannot be written as UTF-8 exactly, nor cross an OS process or the broker (UTF-8 would put U+FFFD in its place). " +
            "Mend the string before emitting it (a cut in the middle of a surrogate pair is the usual cause).");
    }

    /// <summary>The index of the first unpaired surrogate, for a message; -1 if none.</summary>
    public static int FirstUnpaired(string value)
    {
        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                i++;
                continue;
            }
            return i;
        }
        return -1;
    }

    private static string Escape(string s)
    {
        var b = new StringBuilder(s.Length);
        foreach (char c in s) b.Append(char.IsSurrogate(c) || char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString());
        return b.ToString();
    }
}

/// <summary>Writes a char as System.Text.Json does, after refusing a lone surrogate (it would arrive as U+FFFD).</summary>
internal sealed class StrictCharConverter : JsonConverter<char>
{
    public override char Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        string? text = reader.GetString();
        if (text is not { Length: 1 }) throw new JsonException($"A char is a string of one UTF-16 unit; got {(text is null ? "null" : $"{text.Length} units")}.");
        return text[0];
    }

    public override void Write(Utf8JsonWriter writer, char value, JsonSerializerOptions options)
    {
        if (char.IsSurrogate(value)) throw Utf16.Unpaired(value.ToString(), 0);
        writer.WriteStringValue(value.ToString());
    }
}

/// <summary>Writes strings (values and property names) as System.Text.Json does, after refusing an unpaired surrogate.</summary>
internal sealed class StrictStringConverter : JsonConverter<string>
{
    public override bool HandleNull => false;

    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.GetString();

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options)
    {
        Utf16.EnsureValid(value);
        writer.WriteStringValue(value);
    }

    public override string ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.GetString()!;

    public override void WriteAsPropertyName(Utf8JsonWriter writer, string value, JsonSerializerOptions options)
    {
        Utf16.EnsureValid(value);
        writer.WritePropertyName(value);
    }
}
