// The CPU the RabbitMQ node on 127.0.0.1:5672 spends per message, by what the message carries: publishes N persistent
// one-item messages with confirms (a window of 1,000) to a durable queue of its own, then consumes them (prefetch
// 1,000, acknowledged with multiple), reading the broker's Erlang VM's CPU time (/proc) around each part.
//
//   dotnet run --project bench/BrokerCost -c Release -- [N] [--uri amqp://guest:guest@127.0.0.1:5672/]
//   prints, per shape: µs of broker CPU per message to publish and to consume, and messages/s
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

int n = args.Length > 0 && int.TryParse(args[0], out int given) ? given : 50_000;
string uri = args.SkipWhile(a => a != "--uri").Skip(1).FirstOrDefault() ?? "amqp://guest:guest@127.0.0.1:5672/";
var shapes = new (string Name, Func<int, BasicProperties> Properties)[]
{
    ("nothing but persistent", _ => new BasicProperties { Persistent = true }),
    ("message id", i => new BasicProperties { Persistent = true, MessageId = $"0123456789abcdef-{i}" }),
    ("one header", i => new BasicProperties { Persistent = true, Headers = new Dictionary<string, object?> { ["millrace"] = $"process1;1;{i}:1;0123456789abcdef:{i}" } }),
    ("four headers", i => new BasicProperties { Persistent = true, Headers = Four(i) }),
    ("id, type, content type, four headers", i => new BasicProperties
        { Persistent = true, MessageId = $"0123456789abcdef-{i}", Type = "data", ContentType = "application/json", Headers = Four(i) }),
    ("content encoding (the envelope's)", _ => new BasicProperties { Persistent = true, ContentEncoding = "millrace-envelope" }),
};
var factory = new ConnectionFactory { Uri = new Uri(uri) };
await using IConnection connection = await factory.CreateConnectionAsync();
Console.WriteLine($"{n:N0} one-item messages per shape; broker CPU per message (µs) and messages/s");
foreach (var (name, properties) in shapes)
{
    var (publish, publishRate, consume, consumeRate) = await MeasureAsync(connection, n, properties);
    Console.WriteLine($"{name,-40} publish {publish,6:0.0} µs ({publishRate,7:N0}/s)   consume {consume,6:0.0} µs ({consumeRate,7:N0}/s)");
}
return 0;

static Dictionary<string, object?> Four(int i) => new()
{
    ["millrace-writer"] = "process1", ["millrace-count"] = "1", ["millrace-ids"] = $"{i}:1", ["millrace-seq"] = $"0123456789abcdef:{i}",
};

static async Task<(double, double, double, double)> MeasureAsync(IConnection connection, int n, Func<int, BasicProperties> properties)
{
    await using IChannel publish = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: false));
    string queue = "broker-cost-" + Guid.NewGuid().ToString("N")[..8];
    await publish.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false);
    var room = new SemaphoreSlim(1000);
    var confirmed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    ulong settled = 0;
    publish.BasicAcksAsync += (_, e) =>
    {
        ulong upTo = e.Multiple ? e.DeliveryTag : Math.Max(settled, e.DeliveryTag);
        int released = (int)(upTo - settled);
        settled = upTo;
        if (released > 0) room.Release(released);
        if (settled >= (ulong)n) confirmed.TrySetResult();
        return Task.CompletedTask;
    };
    byte[] body = "[12345]"u8.ToArray();
    double cpu0 = BrokerCpu(), clock0 = Environment.TickCount64;
    for (int i = 0; i < n; i++)
    {
        await room.WaitAsync();
        await publish.BasicPublishAsync("", queue, false, properties(i), body);
    }
    await confirmed.Task.WaitAsync(TimeSpan.FromMinutes(10));
    double cpu1 = BrokerCpu(), clock1 = Environment.TickCount64;

    await using IChannel consume = await connection.CreateChannelAsync();
    await consume.BasicQosAsync(0, 1000, false);
    var consumer = new AsyncEventingBasicConsumer(consume);
    int got = 0;
    var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    consumer.ReceivedAsync += async (_, delivery) =>
    {
        if (++got % 100 == 0 || got == n) await consume.BasicAckAsync(delivery.DeliveryTag, multiple: true);
        if (got == n) drained.TrySetResult();
    };
    await consume.BasicConsumeAsync(queue, autoAck: false, consumer);
    await drained.Task.WaitAsync(TimeSpan.FromMinutes(10));
    double cpu2 = BrokerCpu(), clock2 = Environment.TickCount64;
    await publish.QueueDeleteAsync(queue);
    return (1e6 * (cpu1 - cpu0) / n, n / ((clock1 - clock0) / 1000), 1e6 * (cpu2 - cpu1) / n, n / ((clock2 - clock1) / 1000));
}

static double BrokerCpu() =>
    global::BrokerCpu.Seconds() ?? throw new InvalidOperationException("No RabbitMQ node (beam.smp) runs on this machine: bash scripts/rabbitmq.sh start");
