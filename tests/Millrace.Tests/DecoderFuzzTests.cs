using System.Buffers;
using System.Text;
using Millrace.Codecs;

namespace Millrace.Tests;

/// <summary>
/// The codecs that carry batches across OS processes and the broker, fed mutated and random bytes and wrong
/// counts: every outcome is a batch of the announced count or an <see cref="InvalidDataException"/> — never
/// another exception, and never an allocation sized by a count the bytes cannot hold. Unmutated batches come
/// back equal. Iterations: MILLRACE_FUZZ_ITERATIONS (default 20,000).
/// </summary>
public class DecoderFuzzTests
{
    public sealed record Reading(int Sensor, string? Place, double Value, byte[]? Raw);

    public sealed record Envelope(Reading Inner, long Sequence, bool Final);

    private static readonly string[] Texts = ["", "a", "ü€𝄞", "line\nbreak", "\"quoted\"", new string('x', 300), "\0nul"];

    private static object Item(Type type, Random random) => type == typeof(long)
        ? random.Next(4) switch { 0 => long.MinValue, 1 => long.MaxValue, _ => (long)random.Next() - 1_000_000 }
        : type == typeof(string)
            ? Texts[random.Next(Texts.Length)]
            : type == typeof(Reading)
                ? NewReading(random)
                : new Envelope(NewReading(random), random.NextInt64(), random.Next(2) == 0);

    private static Reading NewReading(Random random) => new(random.Next(), random.Next(3) == 0 ? null : Texts[random.Next(Texts.Length)],
        random.Next(5) == 0 ? double.NaN : random.NextDouble() * 1e6, random.Next(3) == 0 ? null : Enumerable.Range(0, random.Next(20)).Select(i => (byte)i).ToArray());

    private static BatchCodec Codec(Type type, bool binary)
    {
        object codec = binary
            ? typeof(BinaryCodec).GetMethod(nameof(BinaryCodec.For))!.MakeGenericMethod(type).Invoke(null, null)!
            : Activator.CreateInstance(typeof(JsonCodec<>).MakeGenericType(type), [null])!;
        return (BatchCodec)Activator.CreateInstance(typeof(BatchCodec<>).MakeGenericType(type), codec)!;
    }

    [Fact]
    public void Mutated_batches_and_wrong_counts_decode_or_fail_with_InvalidDataException_only()
    {
        int iterations = Helpers.Iterations("MILLRACE_FUZZ_ITERATIONS", 20_000);
        var random = new Random(20261203);
        Type[] types = [typeof(long), typeof(string), typeof(Reading), typeof(Envelope)];
        int decoded = 0, refused = 0;
        for (int i = 0; i < iterations; i++)
        {
            Type type = types[random.Next(types.Length)];
            bool binary = random.Next(2) == 0;
            BatchCodec codec = Codec(type, binary);
            int n = random.Next(0, 12);
            Array items = Array.CreateInstance(type, n);
            for (int k = 0; k < n; k++) items.SetValue(Item(type, random), k);
            var output = new ArrayBufferWriter<byte>();
            codec.Encode(items, n, output);
            byte[] bytes = output.WrittenSpan.ToArray();
            if (random.Next(8) == 0)
            {
                // Unchanged: the same items come back.
                Array back = codec.Decode(bytes, n);
                Assert.Equal(Json(items), Json(back));
                decoded++;
                continue;
            }
            int count = random.Next(6) switch
            {
                0 => int.MaxValue,
                1 => int.MaxValue / 8 + 1, // times 8 bytes wraps an int
                2 => -1 - random.Next(3),
                3 => n + random.Next(-1, 2),
                _ => n,
            };
            byte[] input = random.Next(5) == 0 ? bytes : Fuzz.Mutate(bytes, random);
            try
            {
                Array result = codec.Decode(input, count);
                Assert.True(count < 0 || result.Length == count, $"{codec.Name} {type.Name}: {result.Length} items for a count of {count}");
                decoded++;
            }
            catch (InvalidDataException e)
            {
                Assert.False(string.IsNullOrWhiteSpace(e.Message));
                refused++;
            }
            catch (Exception e)
            {
                Assert.Fail($"{codec.Name} codec, {type.Name}, count {count}, bytes {Convert.ToHexString(input.AsSpan(0, Math.Min(64, input.Length)))}: {e.GetType().Name}: {e.Message}");
            }
        }
        Assert.True(decoded > 0 && refused > 0, $"decoded {decoded}, refused {refused}");
    }

    [Fact]
    public void The_broker_ids_header_refuses_what_does_not_match_its_body()
    {
        int iterations = Helpers.Iterations("MILLRACE_FUZZ_ITERATIONS", 20_000);
        var random = new Random(7);
        string[] seeds = ["1:5", "7", "1:2,9:3", "18446744073709551615:1", "0:1,0:1"];
        for (int i = 0; i < iterations; i++)
        {
            string text = Encoding.UTF8.GetString(Fuzz.Mutate(Encoding.UTF8.GetBytes(seeds[random.Next(seeds.Length)]), random));
            int count = random.Next(4) == 0 ? int.MaxValue : random.Next(0, 8);
            try
            {
                ulong[] ids = Millrace.RabbitMQ.Wire.DecodeIds(text, count);
                Assert.Equal(count, ids.Length);
            }
            catch (FormatException)
            {
            }
            catch (OverflowException e)
            {
                Assert.Fail($"'{text}' ({count}): {e.Message}");
            }
        }
    }

    /// <summary>
    /// The corpus of what the fuzz tests found (each crashed, allocated by a claimed count, or threw another exception before
    /// the fix): kept as cases that must stay refused with <see cref="InvalidDataException"/>, whatever the mutator does later.
    /// </summary>
    public static TheoryData<string, Type, bool, byte[], int> PastFailures => new()
    {
        // Binary, fixed-size items: count × size overflowed an int and let a frame of the wrong length through.
        { "unmanaged count overflowing count × size", typeof(long), true, new byte[8], int.MaxValue / 4 + 1 },
        // A negative count reached new T[count]: OverflowException.
        { "unmanaged negative count", typeof(long), true, [], -5 },
        // Binary, variable-size items: new T[count] for a count the 3 bytes cannot hold (2 billion references: out of memory).
        { "managed count beyond the bytes", typeof(string), true, [1, 2, 3], 2_000_000_000 },
        { "managed negative count", typeof(Reading), true, [0, 0, 0, 0], -1 },
        // JSON: an object where a batch belongs, an unfinished array, a string for a number: JsonException leaked out.
        { "JSON object for a batch", typeof(long), false, Encoding.UTF8.GetBytes("{\"x\": 1}"), -1 },
        { "JSON cut short", typeof(Reading), false, Encoding.UTF8.GetBytes("[{\"sensor\": 1, \"pla"), -1 },
        { "JSON string for a number", typeof(long), false, Encoding.UTF8.GetBytes("[\"a\"]"), -1 },
        { "JSON with fewer items than its count", typeof(long), false, Encoding.UTF8.GetBytes("[1]"), 7 },
        { "JSON not UTF-8", typeof(string), false, [0xff, 0xfe, 0x5b, 0x5d], -1 },
    };

    [Theory]
    [MemberData(nameof(PastFailures))]
    public void Past_fuzz_failures_stay_refused_with_InvalidDataException(string what, Type type, bool binary, byte[] bytes, int count)
    {
        BatchCodec codec = Codec(type, binary);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => codec.Decode(bytes, count));
        Assert.False(string.IsNullOrWhiteSpace(e.Message), what);
        // Refused before anything the size of the claimed count was allocated.
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, $"{what}: {GC.GetAllocatedBytesForCurrentThread() - before} bytes allocated");
    }

    [Theory]
    [InlineData("1:2147483647", 2)] // allocated an array of two billion ids before it counted them
    [InlineData("5:3", 2)]
    [InlineData("1:-1", 1)]
    [InlineData("18446744073709551616:1", 1)]
    [InlineData("", 1)]
    public void Past_ids_header_failures_stay_refused_with_FormatException(string header, int count)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Throws<FormatException>(() => Millrace.RabbitMQ.Wire.DecodeIds(header, count));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
    }

    private static string Json(Array items) => System.Text.Json.JsonSerializer.Serialize(items, new System.Text.Json.JsonSerializerOptions
    {
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    });

    /// <summary>
    /// A data connection of the processes placement carrying mutated frames (lengths, kinds, counts and payloads changed, cut
    /// short, garbage): the reader hands over whole frames only and ends, or throws InvalidDataException — never another
    /// exception or a hang — and a Data frame's payload decodes or is refused as above.
    /// </summary>
    [Fact]
    public void Mutated_frames_on_a_data_connection_are_read_whole_or_refused()
    {
        int iterations = Math.Max(50, Helpers.Iterations("MILLRACE_FUZZ_ITERATIONS", 20_000) / 40);
        var random = new Random(11);
        BatchCodec codec = Codec(typeof(Reading), binary: true);
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        listener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listener.Listen(1);
        int frames = 0, refused = 0;
        for (int i = 0; i < iterations; i++)
        {
            // A few frames one after the other, as a writer sends them.
            var stream = new List<byte>();
            for (int f = random.Next(1, 4); f > 0; f--)
            {
                var kind = (Millrace.Placements.Processes.FrameKind)random.Next(1, 6);
                byte[] payload = [];
                int count = random.Next(0, 5);
                if (kind == Millrace.Placements.Processes.FrameKind.Data)
                {
                    Array items = Array.CreateInstance(typeof(Reading), count);
                    for (int k = 0; k < count; k++) items.SetValue(NewReading(random), k);
                    var output = new ArrayBufferWriter<byte>();
                    codec.Encode(items, count, output);
                    payload = output.WrittenSpan.ToArray();
                }
                var header = new byte[Millrace.Placements.Processes.Frame.HeaderSize];
                Millrace.Placements.Processes.Frame.WriteHeader(header, kind, random.Next(3), count, payload.Length);
                stream.AddRange(header);
                stream.AddRange(payload);
            }
            byte[] bytes = random.Next(4) == 0 ? stream.ToArray() : Fuzz.Mutate(stream.ToArray(), random);
            using var writer = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            writer.Connect(listener.LocalEndPoint!);
            using var connection = new Millrace.Placements.Processes.Connection(listener.Accept());
            writer.Send(bytes);
            writer.Shutdown(System.Net.Sockets.SocketShutdown.Send); // the peer closes: the reader returns at the end
            try
            {
                connection.ReadFrames((kind, link, count, payload) =>
                {
                    frames++;
                    Assert.InRange((int)kind, 1, 5);
                    if (kind != Millrace.Placements.Processes.FrameKind.Data) return;
                    try
                    {
                        Assert.Equal(count, codec.Decode(payload, count).Length);
                    }
                    catch (InvalidDataException)
                    {
                        refused++;
                    }
                });
            }
            catch (InvalidDataException)
            {
                refused++;
            }
        }
        Assert.True(frames > 0 && refused > 0, $"frames {frames}, refused {refused}");
    }
}
