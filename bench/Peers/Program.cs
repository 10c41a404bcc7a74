// The Tutorial workload (numbers 0..N-1 -> square -> square root -> sum) written the ways users
// write pipelines today, each stage a task, for bench/run.sh to measure beside Millrace:
//   channels          bounded System.Threading.Channels, one task per stage, item at a time
//   dataflow          TPL Dataflow TransformBlocks with bounded capacity, item at a time
//   akka-streams      Akka.NET Streams, each stage behind an async boundary (an actor per stage),
//                     item at a time
//   akka-streams-fused  Akka.NET Streams fused as Akka does by default: the whole graph in one actor
//   channels-batched  bounded channels carrying arrays of 1024 items (a hand-tuned upper limit)
//   ipc-pump          web, square and root as three OS processes (this program started again)
//                     pumping raw 8 KiB batches over Unix sockets to this one, which sums
//                     (a hand-tuned upper limit for the processes placement)
// Prints "db: N items, sum of roots S" like the Tutorial.
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using System.Threading.Tasks.Dataflow;
using Akka.Actor;
using Akka.Configuration;
using Akka.Streams;
using Akka.Streams.Dsl;

if (args.Length == 5 && args[0] == "ipc-stage") return IpcPump.Stage(args[1], args[2], args[3], long.Parse(args[4]));
if (args.Length != 2 || !long.TryParse(args[1], out long count))
{
    Console.Error.WriteLine("usage: Peers channels|dataflow|akka-streams|akka-streams-fused|channels-batched|ipc-pump N");
    return 2;
}
const int Capacity = 8192;
double sum = args[0] switch
{
    "channels" => await Channels(count),
    "dataflow" => await Dataflow(count),
    "akka-streams" => await AkkaStreams(count, asyncBoundaries: true),
    "akka-streams-fused" => await AkkaStreams(count, asyncBoundaries: false),
    "channels-batched" => await ChannelsBatched(count),
    "ipc-pump" => IpcPump.Run(count),
    _ => double.NaN,
};
if (double.IsNaN(sum))
{
    Console.Error.WriteLine($"unknown system '{args[0]}'");
    return 2;
}
Console.WriteLine($"db: {count} items, sum of roots {sum:0.######}");
return 0;

static async Task<double> Channels(long count)
{
    var options = new BoundedChannelOptions(Capacity) { SingleReader = true, SingleWriter = true };
    var numbers = Channel.CreateBounded<long>(options);
    var squares = Channel.CreateBounded<long>(options);
    var roots = Channel.CreateBounded<double>(options);
    var web = Task.Run(async () =>
    {
        for (long i = 0; i < count; i++) await numbers.Writer.WriteAsync(i);
        numbers.Writer.Complete();
    });
    var process1 = Task.Run(async () =>
    {
        await foreach (long x in numbers.Reader.ReadAllAsync()) await squares.Writer.WriteAsync(x * x);
        squares.Writer.Complete();
    });
    var process2 = Task.Run(async () =>
    {
        await foreach (long x in squares.Reader.ReadAllAsync()) await roots.Writer.WriteAsync(Math.Sqrt(x));
        roots.Writer.Complete();
    });
    double sum = 0;
    await foreach (double r in roots.Reader.ReadAllAsync()) sum += r;
    await Task.WhenAll(web, process1, process2);
    return sum;
}

static async Task<double> Dataflow(long count)
{
    var bounded = new ExecutionDataflowBlockOptions { BoundedCapacity = Capacity, SingleProducerConstrained = true };
    var process1 = new TransformBlock<long, long>(x => x * x, bounded);
    var process2 = new TransformBlock<long, double>(x => Math.Sqrt(x), bounded);
    double sum = 0;
    var db = new ActionBlock<double>(r => sum += r, bounded);
    var link = new DataflowLinkOptions { PropagateCompletion = true };
    process1.LinkTo(process2, link);
    process2.LinkTo(db, link);
    for (long i = 0; i < count; i++) await process1.SendAsync(i);
    process1.Complete();
    await db.Completion;
    return sum;
}

static async Task<double> AkkaStreams(long count, bool asyncBoundaries)
{
    Config config = ConfigurationFactory.ParseString("""
        akka.loglevel = WARNING
        akka.stdout-loglevel = WARNING
        """);
    ActorSystem system = ActorSystem.Create("peers", config);
    try
    {
        ActorMaterializer materializer = system.Materializer();
        Sink<double, Task<double>> db = Sink.Aggregate<double, double>(0, (total, r) => total + r);
        var web = Source.From(Numbers(count));
        Task<double> sum = asyncBoundaries
            ? web.Async().Select(x => x * x).Async().Select(x => Math.Sqrt(x)).Async().RunWith(db, materializer)
            : web.Select(x => x * x).Select(x => Math.Sqrt(x)).RunWith(db, materializer);
        return await sum;
    }
    finally
    {
        await system.Terminate();
    }

    static IEnumerable<long> Numbers(long count)
    {
        for (long i = 0; i < count; i++) yield return i;
    }
}

static async Task<double> ChannelsBatched(long count)
{
    const int Batch = 1024;
    var options = new BoundedChannelOptions(Capacity / Batch) { SingleReader = true, SingleWriter = true };
    var numbers = Channel.CreateBounded<long[]>(options);
    var squares = Channel.CreateBounded<long[]>(options);
    var roots = Channel.CreateBounded<double[]>(options);
    var web = Task.Run(async () =>
    {
        for (long start = 0; start < count; start += Batch)
        {
            var batch = new long[Math.Min(Batch, count - start)];
            for (int i = 0; i < batch.Length; i++) batch[i] = start + i;
            await numbers.Writer.WriteAsync(batch);
        }
        numbers.Writer.Complete();
    });
    var process1 = Task.Run(async () =>
    {
        await foreach (long[] batch in numbers.Reader.ReadAllAsync())
        {
            var output = new long[batch.Length];
            for (int i = 0; i < batch.Length; i++) output[i] = batch[i] * batch[i];
            await squares.Writer.WriteAsync(output);
        }
        squares.Writer.Complete();
    });
    var process2 = Task.Run(async () =>
    {
        await foreach (long[] batch in squares.Reader.ReadAllAsync())
        {
            var output = new double[batch.Length];
            for (int i = 0; i < batch.Length; i++) output[i] = Math.Sqrt(batch[i]);
            await roots.Writer.WriteAsync(output);
        }
        roots.Writer.Complete();
    });
    double sum = 0;
    await foreach (double[] batch in roots.Reader.ReadAllAsync())
        foreach (double r in batch) sum += r;
    await Task.WhenAll(web, process1, process2);
    return sum;
}

/// <summary>Three OS processes and this one, raw 8 KiB batches over Unix sockets, no framework.</summary>
internal static class IpcPump
{
    private const int Batch = 1024; // 8 KiB of 8-byte items

    public static double Run(long count)
    {
        string dir = Directory.CreateTempSubdirectory("ipc-pump-").FullName;
        try
        {
            using Socket listener = Listen(Path.Combine(dir, "db.sock"));
            var stages = new[]
            {
                Start("root", Path.Combine(dir, "root.sock"), Path.Combine(dir, "db.sock"), count),
                Start("square", Path.Combine(dir, "square.sock"), Path.Combine(dir, "root.sock"), count),
                Start("web", "-", Path.Combine(dir, "square.sock"), count),
            };
            using Socket input = listener.Accept();
            var buffer = new double[Batch];
            double sum = 0;
            int n;
            while ((n = ReceiveBatch(input, MemoryMarshal.AsBytes(buffer.AsSpan()))) > 0)
                for (int i = 0; i < n; i++) sum += buffer[i];
            foreach (Process stage in stages) stage.WaitForExit();
            return sum;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    public static int Stage(string name, string inputPath, string outputPath, long count)
    {
        using Socket? listener = inputPath == "-" ? null : Listen(inputPath);
        using Socket output = Connect(outputPath);
        var longs = new long[Batch];
        if (name == "web")
        {
            for (long start = 0; start < count; start += Batch)
            {
                int n = (int)Math.Min(Batch, count - start);
                for (int i = 0; i < n; i++) longs[i] = start + i;
                SendBatch(output, MemoryMarshal.AsBytes(longs.AsSpan(0, n)));
            }
            return 0;
        }
        using Socket input = listener!.Accept();
        var doubles = new double[Batch];
        int got;
        while ((got = ReceiveBatch(input, MemoryMarshal.AsBytes(longs.AsSpan()))) > 0)
        {
            if (name == "square")
            {
                for (int i = 0; i < got; i++) longs[i] *= longs[i];
                SendBatch(output, MemoryMarshal.AsBytes(longs.AsSpan(0, got)));
            }
            else
            {
                for (int i = 0; i < got; i++) doubles[i] = Math.Sqrt(longs[i]);
                SendBatch(output, MemoryMarshal.AsBytes(doubles.AsSpan(0, got)));
            }
        }
        return 0;
    }

    private static Process Start(string name, string input, string output, long count)
    {
        var info = new ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") info.ArgumentList.Add(Environment.GetCommandLineArgs()[0]);
        foreach (string a in new[] { "ipc-stage", name, input, output, count.ToString() }) info.ArgumentList.Add(a);
        return Process.Start(info)!;
    }

    private static Socket Listen(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        socket.Listen(1);
        return socket;
    }

    private static Socket Connect(string path)
    {
        for (int attempt = 0; ; attempt++)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                socket.Connect(new UnixDomainSocketEndPoint(path));
                return socket;
            }
            catch (SocketException) when (attempt < 5000)
            {
                socket.Dispose();
                Thread.Sleep(2);
            }
        }
    }

    /// <summary>A batch on the wire: an int32 item count, then the items.</summary>
    private static void SendBatch(Socket socket, ReadOnlySpan<byte> items)
    {
        Span<byte> header = stackalloc byte[4];
        BitConverter.TryWriteBytes(header, items.Length / 8);
        SendAll(socket, header);
        SendAll(socket, items);
    }

    private static void SendAll(Socket socket, ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty) bytes = bytes[socket.Send(bytes)..];
    }

    /// <summary>Items received (0 at the end of the stream).</summary>
    private static int ReceiveBatch(Socket socket, Span<byte> into)
    {
        Span<byte> header = stackalloc byte[4];
        if (!ReceiveAll(socket, header)) return 0;
        int n = BitConverter.ToInt32(header);
        if (!ReceiveAll(socket, into[..(n * 8)])) throw new EndOfStreamException("The stream ended inside a batch.");
        return n;
    }

    private static bool ReceiveAll(Socket socket, Span<byte> into)
    {
        while (!into.IsEmpty)
        {
            int got = socket.Receive(into);
            if (got == 0) return false;
            into = into[got..];
        }
        return true;
    }
}
