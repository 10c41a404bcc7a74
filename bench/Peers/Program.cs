// The Tutorial workload (numbers 0..N-1 -> square -> square root -> sum) written the ways users
// write pipelines today, each stage a task, for bench/run.sh to measure beside Millrace:
//   channels          bounded System.Threading.Channels, one task per stage, item at a time
//   dataflow          TPL Dataflow TransformBlocks with bounded capacity, item at a time
//   channels-batched  bounded channels carrying arrays of 1024 items (a hand-tuned upper limit)
// Prints "db: N items, sum of roots S" like the Tutorial.
using System.Threading.Channels;
using System.Threading.Tasks.Dataflow;

if (args.Length != 2 || !long.TryParse(args[1], out long count))
{
    Console.Error.WriteLine("usage: Peers channels|dataflow|channels-batched N");
    return 2;
}
const int Capacity = 8192;
double sum = args[0] switch
{
    "channels" => await Channels(count),
    "dataflow" => await Dataflow(count),
    "channels-batched" => await ChannelsBatched(count),
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
