using System.Buffers;
using CsCheck;
using Millrace.RabbitMQ;
using RabbitMQ.Client;
using Xunit;

namespace Millrace.Tests;

/// <summary>
/// The broker placement's message envelopes, compact (<c>MRE2</c>, what Millrace writes) and by name (<c>MRE1</c>, still read;
/// docs/broker-placement.md, "Message format") and how acknowledgements are
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

    /// <summary>A compact envelope's fields, drawn: any writer name, incarnation, numbers at their limits, ids in runs or scattered.</summary>
    private static readonly Gen<(MessageKind Kind, string Writer, byte[] Incarnation, long Place, long Generation, long Checkpoint, int Count, ulong[]? Ids)> Compact =
        Gen.Select(Gen.Enum<MessageKind>(), Gen.OneOf(Gen.String[0, 40], Gen.Const(new string('é', 300))), Gen.Byte.Array[0, 20],
            Gen.OneOf(Gen.Long[0, 300], Gen.Long[0, long.MaxValue], Gen.Const(long.MaxValue)),
            Gen.OneOf(Gen.Const(-1L), Gen.Long[0, long.MaxValue]), Gen.OneOf(Gen.Const(-1L), Gen.Long[0, 1000]),
            Gen.OneOf(Gen.Const(-1), Gen.Int[0, 2000]), Gen.ULong)
        .SelectMany(f => (f.Item7 < 0 ? Gen.Const(NoIds) : Gen.OneOf(
                Gen.Const(NoIds),
                Gen.Const<ulong[]?>(Enumerable.Range(0, f.Item7).Select(i => unchecked(f.Item8 + (ulong)i)).ToArray()),
                Gen.ULong.Array[f.Item7].Select(a => (ulong[]?)a),
                Gen.ULong[0, 3].Array[f.Item7].Select(a => (ulong[]?)a.Select((d, i) => unchecked(f.Item8 + (ulong)i + d)).ToArray())))
            .Select(ids => (f.Item1, f.Item2, f.Item3, f.Item4, f.Item5, f.Item6, f.Item7, ids)));

    private static readonly ulong[]? NoIds = null;

    private static byte[] WriteCompact((MessageKind Kind, string Writer, byte[] Incarnation, long Place, long Generation, long Checkpoint, int Count, ulong[]? Ids) f,
        ReadOnlySpan<byte> items)
    {
        var buffer = new ArrayBufferWriter<byte>();
        Wire.WriteCompactEnvelope(buffer, f.Kind, System.Text.Encoding.UTF8.GetBytes(f.Writer), f.Incarnation, f.Place, f.Generation, f.Checkpoint, f.Count, f.Ids);
        buffer.Write(items);
        return buffer.WrittenSpan.ToArray();
    }

    [Fact]
    public void A_compact_envelope_gives_back_every_field_as_written()
    {
        Gen.Select(Compact, Gen.Byte.Array[0, 100]).Sample((f, items) =>
        {
            MessageFields read = Wire.Fields(Enveloped(), WriteCompact(f, items));
            Assert.Equal(items, read.Payload.ToArray());
            Assert.Equal(f.Kind switch { MessageKind.Data => "data", MessageKind.End => "end", _ => "marker" }, read.Type);
            Assert.Equal(f.Kind == MessageKind.Data ? null : read.Type, read.Text(Wire.TypeField));
            Assert.Equal(f.Writer.Length == 0 ? null : f.Writer, read.Text(Wire.WriterHeader));
            // The place reads as the MRE1 form writes it: the incarnation's hex, a colon, the number.
            Assert.Equal(f.Incarnation.Length == 0 ? null : $"{Convert.ToHexStringLower(f.Incarnation)}:{f.Place}", read.Text(Wire.SequenceHeader));
            Assert.Equal(f.Generation < 0 ? null : f.Generation.ToString(), read.Text(Wire.GenerationHeader));
            Assert.Equal(f.Checkpoint < 0 ? null : f.Checkpoint.ToString(), read.Text(Wire.CheckpointHeader));
            Assert.Equal(f.Count, read.Count);
            Assert.Equal(f.Ids, read.IdRanges is null ? null : Wire.ExpandIds(read.IdRanges, f.Count));
        });
    }

    [Fact]
    public void A_cut_or_mutated_compact_envelope_is_a_FormatException_never_another_error()
    {
        Gen.Select(Compact, Gen.Byte.Array[0, 16]).Sample((f, items) =>
        {
            byte[] whole = WriteCompact(f, items);
            for (int cut = 4; cut < whole.Length - items.Length; cut++)
            {
                var e = Assert.Throws<FormatException>(() => Wire.Fields(Enveloped(), whole.AsMemory(0, cut)));
                Assert.Contains("envelope", e.Message);
            }
        }, iter: 200);
        Gen.Select(Compact, Gen.Int, Gen.Byte, Gen.Byte.Array[0, 64]).Sample((f, at, value, junk) =>
        {
            byte[] mutated = WriteCompact(f, junk);
            mutated[4 + (int)((uint)at % (mutated.Length - 4))] = value;
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
                Wire.Fields(Enveloped(), "MRE2"u8.ToArray().Concat(bytes).ToArray());
            }
            catch (FormatException)
            {
            }
        });
        // A number of id ranges larger than the body could hold is refused before anything that size is made.
        var huge = new ArrayBufferWriter<byte>();
        huge.Write("MRE2"u8);
        huge.Write(new byte[] { 0, 8, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x07 });
        Assert.Contains("number of id ranges", Assert.Throws<FormatException>(() => Wire.Fields(Enveloped(), huge.WrittenMemory)).Message);
    }

    /// <summary>
    /// A count and an id range of two billion in a body of a few bytes: read without making anything that size, and refused
    /// against the items actually decoded (where the message keeps its place in its writer's order), not allocated.
    /// </summary>
    [Fact]
    public void Ids_that_claim_more_items_than_the_body_holds_are_refused_without_being_made()
    {
        var buffer = new ArrayBufferWriter<byte>();
        Wire.WriteCompactEnvelope(buffer, MessageKind.Data, "web"u8, new byte[8], 3, -1, -1, int.MaxValue, null);
        byte[] envelope = buffer.WrittenSpan.ToArray();
        // The same envelope with an ids flag and one range of int.MaxValue ids, then a one-item JSON body.
        envelope[5] |= 8;
        var body = new ArrayBufferWriter<byte>();
        body.Write(envelope);
        body.Write(new byte[] { 1, 7, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x07 });
        body.Write("[42]"u8);
        long before = GC.GetAllocatedBytesForCurrentThread();
        MessageFields read = Wire.Fields(Enveloped(), body.WrittenMemory);
        Assert.Equal(int.MaxValue, read.Count);
        Assert.Equal(new[] { (7UL, int.MaxValue) }, read.IdRanges);
        var e = Assert.Throws<FormatException>(() => Wire.ExpandIds(read.IdRanges!, 1));
        Assert.Contains($"names {int.MaxValue} ids for 1 items", e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "read and refused without allocating for the claimed ids");
        // A range of no ids is refused the same way.
        Assert.Contains("no ids", Assert.Throws<FormatException>(() => Wire.ExpandIds(new[] { (5UL, 0), (6UL, 1) }, 1)).Message);
    }

    /// <summary>
    /// The Python reader of examples/python (what docs/broker-placement.md gives programs of other languages) reads every
    /// compact envelope as Millrace does: the same fields, the same items.
    /// </summary>
    [Fact]
    public async Task The_Python_reader_reads_compact_envelopes_as_Millrace_does()
    {
        var cases = new List<(byte[] Body, MessageFields Read)>();
        Gen.Select(Compact, Gen.Byte.Array[0, 20]).Sample((f, items) => { byte[] body = WriteCompact(f, items); cases.Add((body, Wire.Fields(Enveloped(), body))); }, iter: 300);
        string folder = Path.Combine(AppContext.BaseDirectory, "python");
        string script = "import sys, json, base64\nsys.path.insert(0, sys.argv[1])\nfrom millrace_wire import fields_and_items\n" +
                        "class P: content_encoding = 'mre'\n" +
                        "class Q: content_encoding = 'millrace-envelope'\n" +
                        "for k, line in enumerate(sys.stdin):\n    f, items = fields_and_items(P() if k % 2 == 0 else Q(), base64.b64decode(line))\n" +
                        "    print(json.dumps({'fields': f, 'items': base64.b64encode(items).decode()}, sort_keys=True))\n";
        var info = new System.Diagnostics.ProcessStartInfo("/usr/bin/python3") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(script);
        info.ArgumentList.Add(folder);
        using var python = System.Diagnostics.Process.Start(info)!;
        Task<string> output = python.StandardOutput.ReadToEndAsync();
        Task<string> errors = python.StandardError.ReadToEndAsync();
        foreach (var (body, _) in cases) await python.StandardInput.WriteLineAsync(Convert.ToBase64String(body));
        python.StandardInput.Close();
        await python.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        Assert.True(python.ExitCode == 0, await errors);
        string[] lines = (await output).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(cases.Count, lines.Length);
        string[] names = { Wire.TypeField, Wire.WriterHeader, Wire.SequenceHeader, Wire.GenerationHeader, Wire.CheckpointHeader };
        for (int i = 0; i < cases.Count; i++)
        {
            using var json = System.Text.Json.JsonDocument.Parse(lines[i]);
            var fields = json.RootElement.GetProperty("fields");
            MessageFields read = cases[i].Read;
            foreach (string name in names)
                Assert.Equal(read.Text(name), fields.TryGetProperty(name, out var v) ? v.GetString() : null);
            Assert.Equal(read.Count < 0 ? null : read.Count.ToString(), fields.TryGetProperty(Wire.CountHeader, out var c) ? c.GetString() : null);
            Assert.Equal(read.IdRanges is null ? null : string.Join(",", read.IdRanges.Select(r => $"{r.First}:{r.Run}")),
                fields.TryGetProperty(Wire.IdsHeader, out var ids) ? ids.GetString() : null);
            Assert.Equal(read.Payload.ToArray(), Convert.FromBase64String(json.RootElement.GetProperty("items").GetString()!));
        }
    }

    [Fact]
    public void The_envelope_encoding_as_written_before_it_was_shortened_is_read_the_same()
    {
        Assert.Equal("mre", Wire.EnvelopeEncoding);
        byte[] body = WriteCompact((MessageKind.End, "web", new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, 42L, 3L, -1L, -1, (ulong[]?)null), "[]"u8.ToArray());
        MessageFields now = Wire.Fields(Enveloped(), body);
        MessageFields before = Wire.Fields(new BasicProperties { ContentEncoding = Wire.LongEnvelopeEncoding }, body);
        foreach (string name in new[] { Wire.TypeField, Wire.WriterHeader, Wire.SequenceHeader, Wire.GenerationHeader })
            Assert.Equal(now.Text(name), before.Text(name));
        Assert.Equal("end", before.Type);
        Assert.Equal("[]"u8.ToArray(), before.Payload.ToArray());
        // Any other content encoding is not an envelope: the body is the items.
        Assert.Equal(body, Wire.Fields(new BasicProperties { ContentEncoding = "mre2" }, body).Payload.ToArray());
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
