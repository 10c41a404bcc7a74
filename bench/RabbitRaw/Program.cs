// The Tutorial workload written directly on RabbitMQ.Client 7 the way a skilled user would, with the
// guarantees the broker placement promises: durable queues, persistent messages, publisher confirms,
// manual acks, and a message acknowledged only after what it produced is confirmed. Confirms are kept
// in flight (a bounded window, never awaited one by one) and acknowledged with `multiple`; each stage
// consumes on one channel and publishes on another of its own connection, as separate programs would.
// Items per message: 1 (rabbitmq-raw) or --batch K (rabbitmq-raw-batched).
//
//   dotnet RabbitRaw.dll N [--batch K] [--window W] [--prefetch P] [--await-each-confirm] [--transient]
//                         [--exchanges] [--max-length L] [--db-ack-every K] [--pad B] [--uri amqp://guest:guest@127.0.0.1:5672/]
//   prints "db: N items, sum of roots S"
//
// --await-each-confirm is the peer this harness used before (each publish awaits its confirm), kept to
// show what that costs; --transient sends non-persistent messages (an upper bound, not the same guarantee).
// To see what the broker placement's own choices cost the broker: --exchanges publishes to a fanout exchange per
// stream bound to its queue (as Millrace does, so that watchers can bind their own), --max-length L bounds each queue
// with reject-publish (Millrace's backpressure), --db-ack-every K acknowledges the sink's messages K at a time (default
// a quarter of the prefetch; 1 acknowledges each), --pad B puts B bytes before the items of every message (readers skip them:
// what a bigger message, such as Millrace's envelope, costs). --thread-per-stage hands each delivery to a thread of the
// stage's own, which does the work and publishes (or, the sink, acknowledges) from there, as Millrace's processes run on
// threads of their own: what that hand-off costs a hand-written client.
using System.Runtime.InteropServices;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

long count = long.Parse(args[0]);
int batch = 1;
int window = 1000;
ushort prefetch = 1000;
bool awaitEach = false;
bool persistent = true;
bool exchanges = false;
int limit = 0;
int dbAckEvery = 0;
int pad = 0;
bool threadPerStage = false;
string uri = "amqp://guest:guest@127.0.0.1:5672/";
for (int i = 1; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--batch": batch = int.Parse(args[++i]); break;
        case "--window": window = int.Parse(args[++i]); break;
        case "--prefetch": prefetch = ushort.Parse(args[++i]); break;
        case "--await-each-confirm": awaitEach = true; break;
        case "--transient": persistent = false; break;
        case "--exchanges": exchanges = true; break;
        case "--db-ack-every": dbAckEvery = int.Parse(args[++i]); break;
        case "--max-length": limit = int.Parse(args[++i]); break;
        case "--pad": pad = int.Parse(args[++i]); break;
        case "--thread-per-stage": threadPerStage = true; break;
        case "--uri": uri = args[++i]; break;
        default: throw new ArgumentException($"unknown option {args[i]}");
    }
}
string run = Guid.NewGuid().ToString("N")[..8];
var factory = new ConnectionFactory { Uri = new Uri(uri) };
string[] queues = { $"raw-{run}-numbers", $"raw-{run}-squares", $"raw-{run}-roots" };
var properties = new BasicProperties { Persistent = persistent };

await using (IConnection setup = await factory.CreateConnectionAsync())
await using (IChannel channel = await setup.CreateChannelAsync())
{
    foreach (string q in queues)
    {
        var arguments = limit > 0 ? new Dictionary<string, object?> { ["x-max-length"] = limit, ["x-overflow"] = "reject-publish" } : null;
        await channel.QueueDeclareAsync(q, durable: true, exclusive: false, autoDelete: false, arguments: arguments);
        if (exchanges)
        {
            await channel.ExchangeDeclareAsync(q, ExchangeType.Fanout, durable: true, autoDelete: false);
            await channel.QueueBindAsync(q, q, "");
        }
    }
}
string Exchange(string queue) => exchanges ? queue : "";
string Key(string queue) => exchanges ? "" : queue;

var done = new TaskCompletionSource<double>(TaskCreationOptions.RunContinuationsAsynchronously);
var stages = new List<IAsyncDisposable>();
stages.Add(await Stage(queues[0], queues[1], items => { for (int i = 0; i < items.Length; i++) items[i] *= items[i]; return items; }));
stages.Add(await Stage(queues[1], queues[2], items => { for (int i = 0; i < items.Length; i++) items[i] = BitConverter.DoubleToInt64Bits(Math.Sqrt(items[i])); return items; }));
stages.Add(await Db(queues[2]));

await using (IConnection web = await factory.CreateConnectionAsync())
{
    if (awaitEach)
    {
        await using IChannel channel = await web.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        for (long start = 0; start < count; start += batch)
            await channel.BasicPublishAsync(Exchange(queues[0]), Key(queues[0]), true, properties, Items(start));
    }
    else
    {
        // A window of at most `window` unconfirmed messages: each publish takes a slot, each confirm gives slots back.
        await using IChannel channel = await web.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: false));
        var confirms = new Confirms(channel, window);
        for (long start = 0; start < count; start += batch)
        {
            await confirms.WaitForRoomAsync();
            ulong seq = await channel.GetNextPublishSequenceNumberAsync();
            confirms.Sent(seq, 0);
            await channel.BasicPublishAsync(Exchange(queues[0]), Key(queues[0]), true, properties, Items(start));
        }
        await confirms.AllConfirmedAsync();
    }
}

double sum = await done.Task.WaitAsync(TimeSpan.FromMinutes(30));
foreach (IAsyncDisposable s in stages) await s.DisposeAsync();
await using (IConnection cleanup = await factory.CreateConnectionAsync())
await using (IChannel channel = await cleanup.CreateChannelAsync())
{
    foreach (string q in queues) await channel.QueueDeleteAsync(q);
}
Console.WriteLine($"db: {count} items, sum of roots {sum:0.######}");
return 0;

byte[] Items(long start)
{
    var items = new long[Math.Min(batch, count - start)];
    for (int i = 0; i < items.Length; i++) items[i] = start + i;
    return Padded(MemoryMarshal.AsBytes(items.AsSpan()));
}

// `pad` bytes that readers skip, then the items (to see what a bigger message costs the broker).
byte[] Padded(ReadOnlySpan<byte> items)
{
    var body = new byte[pad + items.Length];
    items.CopyTo(body.AsSpan(pad));
    return body;
}

async Task<IAsyncDisposable> Stage(string from, string to, Func<long[], long[]> work)
{
    IConnection connection = await factory.CreateConnectionAsync();
    IChannel consume = await connection.CreateChannelAsync();
    await consume.BasicQosAsync(0, prefetch, false);
    var consumer = new AsyncEventingBasicConsumer(consume);
    if (awaitEach)
    {
        IChannel publish = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        consumer.ReceivedAsync += async (_, delivery) =>
        {
            long[] items = MemoryMarshal.Cast<byte, long>(delivery.Body.Span[pad..]).ToArray();
            await publish.BasicPublishAsync(Exchange(to), Key(to), true, properties, Padded(MemoryMarshal.AsBytes(work(items).AsSpan())));
            await consume.BasicAckAsync(delivery.DeliveryTag, false);
        };
        await consume.BasicConsumeAsync(from, autoAck: false, consumer);
        return new Owned(connection, consume, publish);
    }
    else
    {
        // Outputs are published without waiting; when the broker confirms them, the inputs that produced them are
        // acknowledged at once with `multiple` (prefetch bounds what is in flight).
        IChannel publish = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: false));
        var confirms = new Confirms(publish, int.MaxValue, tag => consume.BasicAckAsync(tag, multiple: true));
        if (threadPerStage)
        {
            var thread = new StageThread(from);
            consumer.ReceivedAsync += (_, delivery) =>
            {
                long[] items = MemoryMarshal.Cast<byte, long>(delivery.Body.Span[pad..]).ToArray();
                ulong tag = delivery.DeliveryTag;
                thread.Post(() =>
                {
                    byte[] output = Padded(MemoryMarshal.AsBytes(work(items).AsSpan()));
                    ulong seq = publish.GetNextPublishSequenceNumberAsync().AsTask().GetAwaiter().GetResult();
                    confirms.Sent(seq, tag);
                    ValueTask sent = publish.BasicPublishAsync(Exchange(to), Key(to), true, properties, output);
                    if (!sent.IsCompletedSuccessfully) sent.AsTask().GetAwaiter().GetResult();
                });
                return Task.CompletedTask;
            };
            await consume.BasicConsumeAsync(from, autoAck: false, consumer);
            return new Owned(connection, consume, publish);
        }
        consumer.ReceivedAsync += async (_, delivery) =>
        {
            long[] items = MemoryMarshal.Cast<byte, long>(delivery.Body.Span[pad..]).ToArray();
            byte[] output = Padded(MemoryMarshal.AsBytes(work(items).AsSpan()));
            ulong seq = await publish.GetNextPublishSequenceNumberAsync();
            confirms.Sent(seq, delivery.DeliveryTag);
            await publish.BasicPublishAsync(Exchange(to), Key(to), true, properties, output);
        };
        await consume.BasicConsumeAsync(from, autoAck: false, consumer);
        return new Owned(connection, consume, publish);
    }
}

async Task<IAsyncDisposable> Db(string from)
{
    IConnection connection = await factory.CreateConnectionAsync();
    IChannel channel = await connection.CreateChannelAsync();
    await channel.BasicQosAsync(0, prefetch, false);
    var consumer = new AsyncEventingBasicConsumer(channel);
    long seen = 0, messages = 0;
    double sum = 0;
    int ackEvery = dbAckEvery > 0 ? dbAckEvery : awaitEach ? 1 : Math.Max(1, prefetch / 4);
    if (threadPerStage)
    {
        var thread = new StageThread(from);
        consumer.ReceivedAsync += (_, delivery) =>
        {
            long[] bits = MemoryMarshal.Cast<byte, long>(delivery.Body.Span[pad..]).ToArray();
            ulong tag = delivery.DeliveryTag;
            thread.Post(() =>
            {
                foreach (long b in bits) sum += BitConverter.Int64BitsToDouble(b);
                seen += bits.Length;
                if (++messages % ackEvery == 0 || seen == count)
                {
                    ValueTask acked = channel.BasicAckAsync(tag, multiple: true);
                    if (!acked.IsCompletedSuccessfully) acked.AsTask().GetAwaiter().GetResult();
                }
                if (seen == count) done.TrySetResult(sum);
            });
            return Task.CompletedTask;
        };
        await channel.BasicConsumeAsync(from, autoAck: false, consumer);
        return new Owned(connection, channel, null);
    }
    consumer.ReceivedAsync += async (_, delivery) =>
    {
        ReadOnlySpan<long> bits = MemoryMarshal.Cast<byte, long>(delivery.Body.Span[pad..]);
        foreach (long b in bits) sum += BitConverter.Int64BitsToDouble(b);
        seen += bits.Length;
        if (++messages % ackEvery == 0 || seen == count) await channel.BasicAckAsync(delivery.DeliveryTag, multiple: !awaitEach);
        if (seen == count) done.TrySetResult(sum);
    };
    await channel.BasicConsumeAsync(from, autoAck: false, consumer);
    return new Owned(connection, channel, null);
}

/// <summary>
/// Publisher confirms kept in flight on one channel: what was sent (its publish sequence number and the delivery it
/// answers), a window of room, and on each confirm (one or `multiple`) the oldest run of confirmed messages let go —
/// the delivery tag of the last one acknowledged with `multiple`. A nack fails the program loudly.
/// </summary>
sealed class Confirms
{
    private readonly object _lock = new();
    private readonly Queue<(ulong Seq, ulong Tag)> _sent = new();
    private readonly SortedSet<ulong> _confirmedAhead = new();
    private readonly SemaphoreSlim _room;
    private readonly Func<ulong, ValueTask>? _acknowledge;
    private TaskCompletionSource? _drained;

    public Confirms(IChannel channel, int window, Func<ulong, ValueTask>? acknowledge = null)
    {
        _room = new SemaphoreSlim(Math.Min(window, int.MaxValue / 2));
        _acknowledge = acknowledge;
        channel.BasicAcksAsync += (_, e) => Confirmed(e.DeliveryTag, e.Multiple);
        channel.BasicNacksAsync += (_, e) =>
        {
            Console.Error.WriteLine($"the broker refused message {e.DeliveryTag}");
            Environment.Exit(1);
            return Task.CompletedTask;
        };
    }

    public Task WaitForRoomAsync() => _room.WaitAsync();

    public void Sent(ulong seq, ulong tag)
    {
        lock (_lock) _sent.Enqueue((seq, tag));
    }

    public Task AllConfirmedAsync()
    {
        lock (_lock)
        {
            if (_sent.Count == 0) return Task.CompletedTask;
            _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _drained.Task.WaitAsync(TimeSpan.FromMinutes(10));
        }
    }

    private async Task Confirmed(ulong seq, bool multiple)
    {
        ulong lastTag = 0;
        int released = 0;
        TaskCompletionSource? drained = null;
        lock (_lock)
        {
            if (!multiple) _confirmedAhead.Add(seq);
            while (_sent.Count > 0 && ((multiple && _sent.Peek().Seq <= seq) || _confirmedAhead.Remove(_sent.Peek().Seq)))
            {
                lastTag = _sent.Dequeue().Tag;
                released++;
            }
            if (_sent.Count == 0) drained = _drained;
        }
        if (released > 0)
        {
            _room.Release(released);
            if (_acknowledge is not null) await _acknowledge(lastTag);
        }
        drained?.TrySetResult();
    }
}

/// <summary>A thread of a stage's own: runs what is posted to it, in order, sleeping on a monitor while there is nothing.</summary>
sealed class StageThread
{
    private readonly Queue<Action> _work = new();

    public StageThread(string name) => new Thread(Run) { IsBackground = true, Name = "stage " + name }.Start();

    public void Post(Action work)
    {
        lock (_work)
        {
            _work.Enqueue(work);
            if (_work.Count == 1) Monitor.Pulse(_work);
        }
    }

    private void Run()
    {
        while (true)
        {
            Action work;
            lock (_work)
            {
                while (_work.Count == 0) Monitor.Wait(_work);
                work = _work.Dequeue();
            }
            work();
        }
    }
}

sealed class Owned(IConnection connection, IChannel first, IChannel? second) : IAsyncDisposable
{
    public async ValueTask DisposeAsync()
    {
        if (second is not null) await second.DisposeAsync();
        await first.DisposeAsync();
        await connection.DisposeAsync();
    }
}
