using System.Buffers;
using System.Text;
using System.Text.Json;
using Millrace.Codecs;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;

namespace Millrace.Tests;

public class CodecTests
{
    public sealed record Point(int X, double Y);
    public sealed record Named(string? Name, Point Where, byte[] Payload, long Id);
    public sealed record WithList(List<int> Values);

    private static byte[] Encode<T>(ICodec<T> codec, T[] items)
    {
        var buffer = new ArrayBufferWriter<byte>();
        codec.Encode(items, buffer);
        return buffer.WrittenSpan.ToArray();
    }

    private static T[] RoundTrip<T>(ICodec<T> codec, T[] items) => codec.Decode(Encode(codec, items), items.Length);

    public sealed class WithFields
    {
        public int Count;
        public string? Label;
        public double[] Values = Array.Empty<double>();
    }

    [Theory]
    [InlineData("json")]
    [InlineData("binary")]
    public void Strings_that_are_not_valid_utf16_are_refused_never_replaced(string codecName)
    {
        ICodec<string> codec = codecName == "json" ? new JsonCodec<string>() : BinaryCodec.For<string>();
        // Valid pairs, the largest code point and a family emoji (joined pairs) cross exactly.
        string[] good = ["\U0001F600", "\U0010FFFF", "\U0001F468\u200D\U0001F469\u200D\U0001F467", "e\u0301", "\u0000", ""];
        Assert.Equal(good, RoundTrip(codec, good));
        foreach (string bad in new[] { "\ud800", "a \udfff", "end \ud83d", "\udc00\ud800" })
        {
            var e = Assert.Throws<ArgumentException>(() => Encode(codec, [bad]));
            Assert.Contains("holds an unpaired surrogate", e.Message);
        }
        var inRecord = Assert.Throws<ArgumentException>(() => Encode(new JsonCodec<Named>(), [new Named("x\ud800", new Point(1, 2), [], 3)]));
        Assert.Contains("U+D800 at index 1", inRecord.Message);
    }

    [Fact]
    public void A_char_that_is_half_a_surrogate_pair_is_refused_by_json()
    {
        Assert.Equal(['a', '\u00e9', '\u0000'], RoundTrip(new JsonCodec<char>(), ['a', '\u00e9', '\u0000']));
        Assert.Throws<ArgumentException>(() => Encode(new JsonCodec<char>(), ['\ud83d']));
    }

    [Fact]
    public void The_binary_codec_reads_invalid_utf8_as_an_error_not_as_replacement_characters()
    {
        byte[] batch = [2, 0, 0, 0, 0xC3, 0x28]; // a string of two bytes that are not UTF-8
        var e = Assert.Throws<InvalidDataException>(() => BinaryCodec.For<string>().Decode(batch, 1));
        Assert.Contains("is not valid UTF-8", e.Message);
    }

    [Fact]
    public void The_binary_codec_leaves_nullable_values_to_json()
    {
        Assert.False(BinaryCodec.Supports(typeof(int?)));
        Assert.False(BinaryCodec.Supports(typeof(long?)));
    }

    [Fact]
    public void Json_carries_value_tuples_public_fields_and_every_double()
    {
        var codec = new JsonCodec<(int, string?, (double, DateTimeOffset))>();
        var at = new DateTimeOffset(2026, 12, 2, 13, 0, 0, TimeSpan.FromHours(-3)).AddTicks(1);
        var tuples = new[] { (1, (string?)"a", (0.1 + 0.2, at)), (0, null, (-0.0, DateTimeOffset.MinValue)) };
        Assert.Equal(tuples, RoundTrip(codec, tuples));

        var fields = RoundTrip(new JsonCodec<WithFields>(), new[] { new WithFields { Count = 3, Label = "x", Values = [1.5, double.NaN] } });
        Assert.Equal(3, fields[0].Count);
        Assert.Equal("x", fields[0].Label);
        Assert.Equal(new[] { 1.5, double.NaN }, fields[0].Values);

        double[] doubles = [double.NaN, double.PositiveInfinity, double.NegativeInfinity, double.Epsilon, -0.0, double.MaxValue];
        double[] back = RoundTrip(new JsonCodec<double>(), doubles);
        Assert.Equal(doubles.Select(BitConverter.DoubleToInt64Bits), back.Select(BitConverter.DoubleToInt64Bits));
    }

    [Fact]
    public void Binary_primitives_are_their_raw_little_endian_bytes()
    {
        byte[] bytes = Encode(BinaryCodec.For<long>(), new[] { 1L, -2L });
        Assert.Equal(new byte[] { 1, 0, 0, 0, 0, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, bytes);
        Assert.Equal(new[] { 0.5, double.NaN, -1e300 }, RoundTrip(BinaryCodec.For<double>(), new[] { 0.5, double.NaN, -1e300 }));
        Assert.Equal(new[] { true, false }, RoundTrip(BinaryCodec.For<bool>(), new[] { true, false }));
        Assert.Equal("héllo", new string(RoundTrip(BinaryCodec.For<char>(), "héllo".ToCharArray())));
    }

    [Fact]
    public void Binary_strings_and_byte_arrays_carry_null_empty_and_unicode()
    {
        string?[] strings = { "plain", "", null, "日本語 ✓" };
        Assert.Equal(strings, RoundTrip(BinaryCodec.For<string?>(), strings));
        byte[] encoded = Encode(BinaryCodec.For<string>(), new[] { "hi" });
        Assert.Equal(new byte[] { 2, 0, 0, 0, (byte)'h', (byte)'i' }, encoded);
        byte[]?[] arrays = { new byte[] { 1, 2, 3 }, Array.Empty<byte>(), null };
        Assert.Equal(arrays, RoundTrip(BinaryCodec.For<byte[]?>(), arrays));
    }

    [Fact]
    public void Binary_records_are_their_constructor_parameters_in_order()
    {
        var items = new[]
        {
            new Named("a", new Point(1, 2.5), new byte[] { 9 }, 42),
            new Named(null, new Point(-1, 0), Array.Empty<byte>(), long.MaxValue),
        };
        Named[] back = RoundTrip(BinaryCodec.For<Named>(), items);
        Assert.Equal(items.Length, back.Length);
        for (int i = 0; i < items.Length; i++)
        {
            Assert.Equal(items[i].Name, back[i].Name);
            Assert.Equal(items[i].Where, back[i].Where);
            Assert.Equal(items[i].Payload, back[i].Payload);
            Assert.Equal(items[i].Id, back[i].Id);
        }
        byte[] point = Encode(BinaryCodec.For<Point>(), new[] { new Point(7, 1.0) });
        Assert.Equal(12, point.Length);
        Assert.Equal(7, BitConverter.ToInt32(point, 0));
        Assert.Equal(1.0, BitConverter.ToDouble(point, 4));
    }

    [Fact]
    public void Binary_refuses_what_it_cannot_carry_and_reports_truncated_batches()
    {
        Assert.False(BinaryCodec.Supports(typeof(WithList)));
        Assert.False(BinaryCodec.Supports(typeof(object)));
        var refused = Assert.Throws<NotSupportedException>(() => BinaryCodec.For<WithList>());
        Assert.Contains("WithList", refused.Message);

        byte[] bytes = Encode(BinaryCodec.For<long>(), new[] { 1L, 2L });
        var wrongSize = Assert.Throws<InvalidDataException>(() => BinaryCodec.For<long>().Decode(bytes.AsSpan(0, 12), 2));
        Assert.Contains("needs 16 bytes; the frame has 12", wrongSize.Message);

        byte[] text = Encode(BinaryCodec.For<string>(), new[] { "hello" });
        var cut = Assert.Throws<InvalidDataException>(() => BinaryCodec.For<string>().Decode(text.AsSpan(0, 6), 1));
        Assert.Contains("string length of 5", cut.Message);

        var extra = Assert.Throws<InvalidDataException>(() => BinaryCodec.For<string>().Decode(text, 0));
        Assert.Contains("9 bytes are left over", extra.Message);
    }

    [Fact]
    public void Json_batches_are_arrays_with_camel_case_names()
    {
        var codec = new JsonCodec<Point>();
        byte[] bytes = Encode(codec, new[] { new Point(1, 2.5), new Point(3, 4) });
        Assert.Equal("""[{"x":1,"y":2.5},{"x":3,"y":4}]""", Encoding.UTF8.GetString(bytes));
        Assert.Equal(new[] { new Point(1, 2.5) }, codec.Decode("""[{"X":1,"y":"2.5"}]"""u8, 1));
        Assert.Equal(new[] { new WithList(new List<int> { 1, 2 }) }.Select(w => w.Values), RoundTrip(new JsonCodec<WithList>(), new[] { new WithList(new List<int> { 1, 2 }) }).Select(w => w.Values));
    }

    [Fact]
    public void Json_of_the_wrong_shape_or_count_is_an_error()
    {
        var codec = new JsonCodec<Point>();
        Assert.ThrowsAny<JsonException>(() => codec.Decode("""[{"x":"one"}]"""u8, 1));
        var count = Assert.ThrowsAny<JsonException>(() => codec.Decode("""[{"x":1,"y":2}]"""u8, 2));
        Assert.Contains("holds 1 items; its frame announced 2", count.Message);
        Assert.ThrowsAny<JsonException>(() => codec.Decode("not json"u8, 1));
    }

    [Fact]
    public void Binary_primitives_decode_into_an_array_handed_back_and_still_check_the_frame()
    {
        var none = new Dictionary<Type, object>();
        BatchCodec codec = new CodecSet(none, "auto").For(typeof(long));
        Assert.True(codec.DecodesInto);
        byte[] bytes = Encode(BinaryCodec.For<long>(), new[] { 5L, -6L });
        var into = new long[] { 7, 7 };
        Assert.Same(into, codec.Decode(bytes, 2, into));
        Assert.Equal(new[] { 5L, -6L }, into);
        // An array of another length is not filled: a new one is.
        var longer = new long[3];
        var decoded = (long[])codec.Decode(bytes, 2, longer);
        Assert.NotSame(longer, decoded);
        Assert.Equal(new[] { 5L, -6L }, decoded);
        var wrongSize = Assert.Throws<InvalidDataException>(() => codec.Decode(bytes.AsSpan(0, 12), 2, new long[2]));
        Assert.Contains("needs 16 bytes; the frame has 12", wrongSize.Message);
        // Items with references, records and JSON are decoded into new arrays only.
        Assert.False(new CodecSet(none, "auto").For(typeof(string)).DecodesInto);
        Assert.False(new CodecSet(none, "binary").For(typeof(Point)).DecodesInto);
        Assert.False(new CodecSet(none, "json").For(typeof(long)).DecodesInto);
    }

    [Fact]
    public void The_codec_choice_follows_options_and_registrations()
    {
        var none = new Dictionary<Type, object>();
        Assert.Equal("binary", new CodecSet(none, "auto").For(typeof(long)).Name);
        Assert.Equal("binary", new CodecSet(none, "auto").For(typeof(string)).Name);
        Assert.Equal("json", new CodecSet(none, "auto").For(typeof(Point)).Name);
        Assert.Equal("binary", new CodecSet(none, "binary").For(typeof(Point)).Name);
        Assert.Equal("json", new CodecSet(none, "binary").For(typeof(WithList)).Name);
        Assert.Equal("json", new CodecSet(none, "json").For(typeof(long)).Name);
        var mine = new Dictionary<Type, object> { [typeof(long)] = new JsonCodec<long>() };
        Assert.Equal("json", new CodecSet(mine, "binary").For(typeof(long)).Name);
    }
}
