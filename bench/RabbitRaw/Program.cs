// The Tutorial workload as a user would write it on RabbitMQ.Client 7 with the guarantees the
// broker placement promises: durable queues, publisher confirms, manual acks, and a message
// acknowledged only after what it produced is confirmed. Every stage has its own connection, as
// separate programs would. Items per message: 1 (rabbitmq-raw) or --batch K (rabbitmq-raw-batched).
//
//   dotnet RabbitRaw.dll N [--batch K] [--uri amqp://guest:guest@127.0.0.1:5672/]
//   prints "db: N items, sum of roots S"
using System.Runtime.InteropServices;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

long count = long.Parse(args[0]);
int batch = 1;
string uri = "amqp://guest:guest@127.0.0.1:5672/";
for (int i = 1; i < args.Length; i++)
{
    if (args[i] == "--batch") batch = int.Parse(args[++i]);
    else if (args[i] == "--uri") uri = args[++i];
    else throw new ArgumentException($"unknown option {args[i]}");
}
string run = Guid.NewGuid().ToString("N")[..8];
var factory = new ConnectionFactory { Uri = new Uri(uri) };
string[] queues = { $"raw-{run}-numbers", $"raw-{run}-squares", $"raw-{run}-roots" };

await using (IConnection setup = await factory.CreateConnectionAsync())
await using (IChannel channel = await setup.CreateChannelAsync())
{
    foreach (string q in queues) await channel.QueueDeclareAsync(q, durable: true, exclusive: false, autoDelete: false);
}

var done = new TaskCompletionSource<double>(TaskCreationOptions.RunContinuationsAsynchronously);
var stages = new List<IAsyncDisposable>();
stages.Add(await Stage(queues[0], queues[1], items => { for (int i = 0; i < items.Length; i++) items[i] *= items[i]; return items; }));
stages.Add(await Stage(queues[1], queues[2], items => { for (int i = 0; i < items.Length; i++) items[i] = BitConverter.DoubleToInt64Bits(Math.Sqrt(items[i])); return items; }));
stages.Add(await Db(queues[2]));

await using (IConnection web = await factory.CreateConnectionAsync())
await using (IChannel channel = await web.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true)))
{
    for (long start = 0; start < count; start += batch)
    {
        var items = new long[Math.Min(batch, count - start)];
        for (int i = 0; i < items.Length; i++) items[i] = start + i;
        await channel.BasicPublishAsync("", queues[0], true, new BasicProperties { Persistent = false }, MemoryMarshal.AsBytes(items.AsSpan()).ToArray());
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

async Task<IAsyncDisposable> Stage(string from, string to, Func<long[], long[]> work)
{
    IConnection connection = await factory.CreateConnectionAsync();
    IChannel channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
    await channel.BasicQosAsync(0, 1000, false);
    var consumer = new AsyncEventingBasicConsumer(channel);
    consumer.ReceivedAsync += async (_, delivery) =>
    {
        long[] items = MemoryMarshal.Cast<byte, long>(delivery.Body.Span).ToArray();
        byte[] output = MemoryMarshal.AsBytes(work(items).AsSpan()).ToArray();
        // Acknowledge the input only once the broker has confirmed what it produced.
        await channel.BasicPublishAsync("", to, true, new BasicProperties { Persistent = false }, output);
        await channel.BasicAckAsync(delivery.DeliveryTag, false);
    };
    await channel.BasicConsumeAsync(from, autoAck: false, consumer);
    return new Owned(connection, channel);
}

async Task<IAsyncDisposable> Db(string from)
{
    IConnection connection = await factory.CreateConnectionAsync();
    IChannel channel = await connection.CreateChannelAsync();
    await channel.BasicQosAsync(0, 1000, false);
    var consumer = new AsyncEventingBasicConsumer(channel);
    long seen = 0;
    double sum = 0;
    consumer.ReceivedAsync += async (_, delivery) =>
    {
        ReadOnlySpan<long> bits = MemoryMarshal.Cast<byte, long>(delivery.Body.Span);
        foreach (long b in bits) sum += BitConverter.Int64BitsToDouble(b);
        seen += bits.Length;
        await channel.BasicAckAsync(delivery.DeliveryTag, false);
        if (seen == count) done.TrySetResult(sum);
    };
    await channel.BasicConsumeAsync(from, autoAck: false, consumer);
    return new Owned(connection, channel);
}

sealed class Owned(IConnection connection, IChannel channel) : IAsyncDisposable
{
    public async ValueTask DisposeAsync()
    {
        await channel.DisposeAsync();
        await connection.DisposeAsync();
    }
}
