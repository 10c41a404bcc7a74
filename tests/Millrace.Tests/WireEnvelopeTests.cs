using System.Buffers;
using CsCheck;
using Millrace.RabbitMQ;
using RabbitMQ.Client;
using Xunit;

namespace Millrace.Tests;

/// <summary>
/// The broker placement's message envelope (docs/broker-placement.md, "Message format") and how acknowledgements are
/// coalesced with <c>multiple</c>, without a broker: fields come back exactly as written whatever their values and sizes,
/// bad bytes give a clear <see cref="FormatException"/> and nothing else, and an acknowledgement with <c>multiple</c> never
/// settles a delivery that is held or settled already.
/// </summary>
public class WireEnvelopeTests
{
    private static readonly Gen<string> Text = Gen.OneOf(Gen.String[Gen.Char.AlphaNumeric, 0, 40], Gen.String[0, 300], Gen.Const(new string('x', 70_000)));

    [Fact]
    public void Fields_and_items_come_back_as_written()
    {
        Gen.Select(Gen.Select(Gen.String[Gen.Char.AlphaNumeric, 1, 30], Text).Array[0, 12], Gen.Byte.Array[0, 200]).Sample((fields, items) =>
        {
            var buffer = new ArrayBufferWriter<byte>();
            Wire.WriteEnvelope(buffer, fields);
            buffer.Write(items);
            MessageFields read = Wire.Fields(Enveloped(), buffer.WrittenMemory);
            Assert.Equal(items, read.Payload.ToArray());
            foreach (var (name, value) in fields)
                Assert.Equal(fields.First(f => f.Item1 == name).Item2, read.Text(name)); // the first of a name wins
            Assert.Null(read.Text("not-a-field-name-" + new string('z', 40)));
        });
    }

    [Fact]
    public void A_cut_or_mutated_envelope_is_a_FormatException_never_another_error()
    {
        var buffer = new ArrayBufferWriter<byte>();
        Wire.WriteEnvelope(buffer, new[] { ("millrace-writer", "web"), ("millrace-seq", "abc:12"), ("millrace-ids", "5:1") });
        buffer.Write("[42]"u8);
        byte[] whole = buffer.WrittenSpan.ToArray();
        int payloadAt = whole.Length - 4;
        for (int cut = 0; cut < payloadAt; cut++)
        {
            var e = Assert.Throws<FormatException>(() => Wire.Fields(Enveloped(), whole.AsMemory(0, cut)));
            Assert.Contains("envelope", e.Message);
        }
        Gen.Select(Gen.Int[0, whole.Length - 1], Gen.Byte, Gen.Byte.Array[0, 64]).Sample((at, value, junk) =>
        {
            byte[] mutated = whole.Concat(junk).ToArray();
            mutated[at] = value;
            try
            {
                Wire.Fields(Enveloped(), mutated);
            }
            catch (FormatException)
            {
            }
        });
        Gen.Byte.Array[0, 300].Sample(bytes =>
        {
            try
            {
                Wire.Fields(Enveloped(), bytes);
            }
            catch (FormatException)
            {
            }
        });
    }

    [Fact]
    public void A_message_without_the_envelope_encoding_is_read_from_its_headers_and_type()
    {
        var properties = new BasicProperties { Type = "end", Headers = new Dictionary<string, object?> { ["millrace-writer"] = "web"u8.ToArray() } };
        MessageFields read = Wire.Fields(properties, "MRE1 not an envelope here"u8.ToArray());
        Assert.Equal("end", read.Type);
        Assert.Equal("web", read.Text("millrace-writer"));
        Assert.Equal("MRE1 not an envelope here"u8.ToArray(), read.Payload.ToArray());
    }

    private static BasicProperties Enveloped() => new() { ContentEncoding = Wire.EnvelopeEncoding };

    /// <summary>
    /// A channel's deliveries 1..N settled in any order, some held for ever, some given back; acknowledgements sent in
    /// batches as the acknowledger does. A model of the broker (an acknowledgement with <c>multiple</c> settles every
    /// outstanding delivery up to its tag; one without, on a settled tag, is a channel error) sees exactly the intended
    /// deliveries acknowledged — never a held one — and no tag named twice.
    /// </summary>
    [Fact]
    public void Acknowledgements_with_multiple_settle_exactly_the_deliveries_meant()
    {
        Gen.Select(Gen.Int[1, 60], Gen.Int, Gen.Int[1, 8]).Sample((n, seed, batchEvery) =>
        {
            var random = new Random(seed);
            var fate = Enumerable.Range(1, n).ToDictionary(t => (ulong)t, _ => random.Next(10) switch { 0 => "held", 1 => "returned", _ => "acked" });
            ulong[] order = fate.Keys.Where(t => fate[t] != "held").OrderBy(_ => random.Next()).ToArray();
            var outstanding = new SortedSet<ulong>(fate.Keys);
            var acknowledged = new HashSet<ulong>();
            var coalescer = new AckCoalescer();
            var batch = new List<ulong>();
            void Flush()
            {
                if (batch.Count == 0) return;
                ulong upTo = coalescer.Plan(batch, out int covered);
                if (covered > 0)
                {
                    Assert.Contains(upTo, outstanding);
                    foreach (ulong t in outstanding.Where(t => t <= upTo).ToArray())
                    {
                        Assert.Equal("acked", fate[t]);
                        Assert.True(batch.Contains(t) || covered == 1 && t == upTo, $"tag {t} settled by a multiple up to {upTo} it was not meant for");
                        outstanding.Remove(t);
                        acknowledged.Add(t);
                    }
                }
                foreach (ulong t in batch.Where(t => covered == 0 || t > upTo))
                {
                    Assert.True(outstanding.Remove(t), $"tag {t} acknowledged alone after it was settled");
                    acknowledged.Add(t);
                }
                batch.Clear();
            }
            foreach (ulong t in order)
            {
                if (fate[t] == "returned")
                {
                    if (random.Next(2) == 0) Flush(); // given back before or after acknowledgements collected earlier go
                    Assert.True(outstanding.Remove(t));
                    coalescer.Resolved(t);
                }
                else
                {
                    batch.Add(t);
                    if (random.Next(batchEvery) == 0) Flush();
                }
            }
            Flush();
            Assert.Equal(fate.Where(f => f.Value == "acked").Select(f => f.Key).Order(), acknowledged.Order());
            Assert.Equal(fate.Where(f => f.Value == "held").Select(f => f.Key).Order(), outstanding.Order());
        });
    }
}
