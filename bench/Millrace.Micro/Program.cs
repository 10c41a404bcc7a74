// Micro benchmarks of Millrace's hot paths, per batch of 8192 items (the default batch):
//   QueueHop     a batch into a reader's inbox and out again (what every stream hop costs)
//   Codecs       binary longs, binary strings, JSON records: encode and decode a batch
//   Framing      a Data frame: header plus binary payload into the send buffer
//
//   dotnet run -c Release --project bench/Millrace.Micro -- --filter '*'
using System.Buffers;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using Millrace;
using Millrace.Codecs;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using Millrace.Placements.Processes;

BenchmarkSwitcher.FromAssembly(typeof(QueueHop).Assembly).Run(args);

public record Reading(int Sensor, double Value, string Unit);

[MemoryDiagnoser]
public class QueueHop
{
    private Inbox _inbox = null!;
    private Lane _lane = null!;
    private ProcessRunner _runner = null!;
    private readonly long[] _batch = new long[8192];

    [GlobalSetup]
    public void Setup()
    {
        var s = new Stream<long>("s");
        // Only the sink's inbox is used; the writer exists so that the graph is valid.
        var declarations = new[]
        {
            new ProcessDeclaration("src", p =>
            {
                p.Output(s);
                p.OnStart(() => { });
            }),
            new ProcessDeclaration("sink", p => p.On(s, _ => { })),
        };
        GraphModel model = GraphModel.Build(new IStreamReference[] { s }, declarations, new Dictionary<Type, object>());
        _runner = new ProcessRunner(model.Processes[1], new RunContext(new RunOptions()));
        _lane = _runner.AddLane(model.Processes[1].Inputs[0], 1 << 20, 1);
        _inbox = _runner.Inbox;
    }

    [Benchmark(Description = "enqueue + take one batch")]
    public bool Hop()
    {
        _inbox.TryEnqueue(_lane, _batch, _batch.Length, 0, _runner);
        return _inbox.TryTake(out _);
    }
}

[MemoryDiagnoser]
public class Codecs
{
    private readonly long[] _longs = Enumerable.Range(0, 8192).Select(i => (long)i * i).ToArray();
    private readonly string[] _strings = Enumerable.Range(0, 8192).Select(i => $"item number {i}").ToArray();
    private readonly Reading[] _readings = Enumerable.Range(0, 8192).Select(i => new Reading(i % 16, i * 0.5, "kPa")).ToArray();
    private readonly ICodec<long> _binaryLong = BinaryCodec.For<long>();
    private readonly ICodec<string> _binaryString = BinaryCodec.For<string>();
    private readonly ICodec<Reading> _binaryRecord = BinaryCodec.For<Reading>();
    private readonly ICodec<Reading> _jsonRecord = new JsonCodec<Reading>();
    private readonly ArrayBufferWriter<byte> _buffer = new(1 << 20);
    private byte[] _longBytes = null!, _stringBytes = null!, _recordBytes = null!, _jsonBytes = null!;

    [GlobalSetup]
    public void Setup()
    {
        _longBytes = Encode(_binaryLong, _longs);
        _stringBytes = Encode(_binaryString, _strings);
        _recordBytes = Encode(_binaryRecord, _readings);
        _jsonBytes = Encode(_jsonRecord, _readings);
    }

    private byte[] Encode<T>(ICodec<T> codec, T[] items)
    {
        EncodeOnly(codec, items);
        return _buffer.WrittenSpan.ToArray();
    }

    private int EncodeOnly<T>(ICodec<T> codec, T[] items)
    {
        _buffer.ResetWrittenCount();
        codec.Encode(items, _buffer);
        return _buffer.WrittenCount;
    }

    [Benchmark] public int BinaryLongsEncode() => EncodeOnly(_binaryLong, _longs);
    [Benchmark] public int BinaryLongsDecode() => _binaryLong.Decode(_longBytes, 8192).Length;
    [Benchmark] public int BinaryStringsEncode() => EncodeOnly(_binaryString, _strings);
    [Benchmark] public int BinaryStringsDecode() => _binaryString.Decode(_stringBytes, 8192).Length;
    [Benchmark] public int BinaryRecordsEncode() => EncodeOnly(_binaryRecord, _readings);
    [Benchmark] public int BinaryRecordsDecode() => _binaryRecord.Decode(_recordBytes, 8192).Length;
    [Benchmark] public int JsonRecordsEncode() => EncodeOnly(_jsonRecord, _readings);
    [Benchmark] public int JsonRecordsDecode() => _jsonRecord.Decode(_jsonBytes, 8192).Length;
}

[MemoryDiagnoser]
public class Framing
{
    private readonly FrameBuffer _buffer = new();
    private readonly BatchCodec _codec = new BatchCodec<long>(BinaryCodec.For<long>());
    private readonly long[] _batch = new long[8192];

    [Benchmark(Description = "Data frame of 8192 longs into the send buffer")]
    public int DataFrame()
    {
        _buffer.Clear();
        int start = _buffer.StartFrame();
        _codec.Encode(_batch, _batch.Length, _buffer);
        Frame.WriteHeader(_buffer.FrameHeader(start), FrameKind.Data, 1, _batch.Length, _buffer.Length - start - Frame.HeaderSize);
        return _buffer.Length;
    }
}
