using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using Millrace.Codecs;
using RabbitMQ.Client;

namespace Millrace.Tests;

/// <summary>
/// Malformed messages published into a running graph's queue on the broker (docs/broker-placement.md, "Poison
/// messages"): with a policy that sets them aside they go to the run's dead-letter queue with their reasons and
/// the run completes with every good item; with stop the run fails and the message stays in its queue.
/// </summary>
public class PoisonMessageTests
{
    private const int Count = 1000;

    private sealed record Bad(string What, byte[] Body, string Type, Dictionary<string, object?> Headers);

    /// <summary>Each kind of message a reader cannot read, for a stream of longs in the run's codec.</summary>
    private static List<Bad> BadMessages(string codec)
    {
        var bad = new List<Bad>
        {
            new("end mark without a writer", [], "end", new()),
            new("a writer the graph does not have", Encoding.UTF8.GetBytes("[1]"), "data", new() { ["millrace-writer"] = "nobody", ["millrace-count"] = "1" }),
        };
        if (codec == "json")
        {
            bad.Add(new("invalid JSON", Encoding.UTF8.GetBytes("[1, 2,"), "data", new()));
            bad.Add(new("items of another type", Encoding.UTF8.GetBytes("[\"a\", \"b\"]"), "data", new()));
            bad.Add(new("an object, not a batch", Encoding.UTF8.GetBytes("{\"x\": 1}"), "data", new()));
            bad.Add(new("ids that do not match the items", Encoding.UTF8.GetBytes("[1, 2]"), "data", new() { ["millrace-ids"] = "5:3" }));
            bad.Add(new("a count the body does not have", Encoding.UTF8.GetBytes("[1]"), "data", new() { ["millrace-count"] = "7" }));
            bad.Add(new("not UTF-8", [0xff, 0xfe, 0x5b, 0x31, 0x5d], "data", new()));
        }
        else
        {
            var codecOfLongs = new BatchCodec<long>(BinaryCodec.For<long>());
            var buffer = new ArrayBufferWriter<byte>();
            codecOfLongs.Encode(new long[] { 1, 2, 3 }, 3, buffer);
            byte[] whole = buffer.WrittenSpan.ToArray();
            bad.Add(new("a truncated binary body", whole[..^3], "data", new() { ["millrace-count"] = "3" }));
            bad.Add(new("a binary body without its count", whole, "data", new()));
            bad.Add(new("a count beyond what the body holds", whole, "data", new() { ["millrace-count"] = "2000000000" }));
        }
        return bad;
    }

    private static Graph Doubling(TaskCompletionSource started, Task published, ConcurrentBag<long> results, ConcurrentBag<DeadLetter> deadLetters)
    {
        var graph = new Graph();
        Stream<long> numbers = graph.Stream<long>("numbers");
        Stream<long> doubled = graph.Stream<long>("doubled");
        long next = 0;
        graph.Source("source", numbers, async (o, ct) =>
        {
            if (next == Count / 2)
            {
                // Half the items are out: the test publishes its bad messages now, before the source ends.
                started.TrySetResult();
                await published.WaitAsync(ct);
            }
            if (next == Count) return false;
            o.Emit(next++);
            return true;
        });
        graph.Process("double", p =>
        {
            p.OnError(ErrorPolicy.DeadLetter(graph.DeadLetters));
            Output<long> o = p.Output(doubled);
            p.On(numbers, x => o.Emit(x == 777 ? throw new InvalidOperationException("777 is bad") : 2 * x));
        });
        graph.Sink("sink", doubled, results.Add);
        graph.Sink("dead", graph.DeadLetters, deadLetters.Add);
        return graph;
    }

    private static async Task<IChannel> ChannelAsync(IConnection connection) =>
        await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));

    /// <summary>Publishes each message once the broker takes it (or until <paramref name="until"/> ends); returns how many it took.</summary>
    private static async Task<int> PublishAsync(IChannel channel, string exchange, IEnumerable<Bad> messages, Task? until = null)
    {
        int published = 0;
        foreach (Bad bad in messages)
        {
            var properties = new BasicProperties { Type = bad.Type, Persistent = true, Headers = bad.Headers, MessageId = "bad-" + Guid.NewGuid().ToString("N") };
            // With confirms tracked, the call returns once the broker has the message; a full queue refuses it (then again, a while).
            for (DateTime deadline = DateTime.UtcNow.AddSeconds(60); ; await Task.Delay(20))
            {
                try
                {
                    await channel.BasicPublishAsync(exchange, "", false, properties, bad.Body);
                    published++;
                    break;
                }
                catch (global::RabbitMQ.Client.Exceptions.PublishException) when (DateTime.UtcNow < deadline)
                {
                    if (until is { IsCompleted: true }) return published;
                }
            }
        }
        return published;
    }

    [Theory]
    [InlineData("json")]
    [InlineData("binary")]
    public async Task Malformed_messages_go_to_the_dead_letter_queue_with_their_reasons_and_every_good_item_comes_through(string codec)
    {
        string runId = Broker.NewRunId();
        string prefix = "millrace." + runId;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var published = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var results = new ConcurrentBag<long>();
        var deadLetters = new ConcurrentBag<DeadLetter>();
        Graph graph = Doubling(started, published.Task, results, deadLetters);
        var options = new RunOptions { Placement = "broker", RunId = runId, Codec = codec, Quiet = true };
        options.Broker.Uri = Broker.Uri;
        Task<RunResult> run = graph.RunWithin(options, seconds: 120);

        List<Bad> bad = BadMessages(codec);
        var factory = new ConnectionFactory { Uri = new Uri(Broker.Uri) };
        await using IConnection connection = await factory.CreateConnectionAsync();
        await using IChannel channel = await ChannelAsync(connection);
        await Task.WhenAny(started.Task, run);
        Assert.False(run.IsCompleted, run.IsCompleted ? (await run).ToString() : "");
        await PublishAsync(channel, $"{prefix}.numbers", bad);
        published.SetResult();

        RunResult result = await run;
        Assert.True(result.Outcome == RunOutcome.Completed, result.ToString());
        // Every good item, doubled; the one the handler threw on is a dead letter of the graph.
        Assert.Equal(Enumerable.Range(0, Count).Where(i => i != 777).Select(i => 2L * i).Order(), results.Order());
        DeadLetter letter = Assert.Single(deadLetters);
        Assert.Equal(("double", "numbers", "777", "777 is bad"), (letter.Process, letter.Stream, letter.Item, letter.Message));
        Assert.Equal(1, result.Processes["double"].ItemsDeadLettered);

        // Every bad message is in the run's dead-letter queue, acknowledged in its own, with why.
        string deadLetterQueue = $"{prefix}:dead-letters";
        var moved = new List<(byte[] Body, IDictionary<string, object?> Headers, string? Type)>();
        while (await channel.BasicGetAsync(deadLetterQueue, autoAck: true) is { } message)
            moved.Add((message.Body.ToArray(), message.BasicProperties.Headers!, message.BasicProperties.Type));
        Assert.Equal(bad.Count, moved.Count);
        foreach (Bad expected in bad)
        {
            var match = moved.Where(m => m.Body.SequenceEqual(expected.Body) && m.Type == expected.Type &&
                                         expected.Headers.All(h => Text(m.Headers, h.Key) == h.Value?.ToString())).ToList();
            Assert.True(match.Count >= 1, $"'{expected.What}' is not in the dead-letter queue as it was published");
            var headers = match[0].Headers;
            Assert.Equal("double", Text(headers, "millrace-poison-process"));
            Assert.Equal("numbers", Text(headers, "millrace-poison-stream"));
            Assert.Equal($"{prefix}.numbers.double", Text(headers, "millrace-poison-queue"));
            Assert.StartsWith("bad-", Text(headers, "millrace-poison-message-id"));
            Assert.False(string.IsNullOrWhiteSpace(Text(headers, "millrace-poison-reason")));
            Assert.True(DateTimeOffset.TryParse(Text(headers, "millrace-poison-time"), out _));
        }
        QueueDeclareOk queue = await channel.QueueDeclarePassiveAsync($"{prefix}.numbers.double");
        Assert.Equal(0u, queue.MessageCount);
    }

    [Fact]
    public async Task With_broker_poison_stop_a_malformed_message_fails_the_run_and_stays_in_its_queue()
    {
        string runId = Broker.NewRunId();
        string prefix = "millrace." + runId;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var published = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Graph graph = Doubling(started, published.Task, new ConcurrentBag<long>(), new ConcurrentBag<DeadLetter>());
        RunOptions options = RunOptions.Parse(["--placement", "broker", "--run-id", runId, "--broker", Broker.Uri, "--broker-poison", "stop", "--quiet"]);
        Task<RunResult> run = graph.RunWithin(options, seconds: 120);

        var factory = new ConnectionFactory { Uri = new Uri(Broker.Uri) };
        await using IConnection connection = await factory.CreateConnectionAsync();
        await using IChannel channel = await ChannelAsync(connection);
        await Task.WhenAny(started.Task, run);
        Assert.False(run.IsCompleted, run.IsCompleted ? (await run).ToString() : "");
        await PublishAsync(channel, $"{prefix}.numbers", BadMessages("json").Where(b => b.What == "invalid JSON"));

        RunResult result = await run;
        published.SetResult();
        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains("could not be decoded", string.Join("\n", result.Errors.Select(e => e.Message)));
        Assert.Contains("stays in the queue, unacknowledged", string.Join("\n", result.Errors.Select(e => e.Message)));
        Assert.Contains("--broker-poison dead-letter", string.Join("\n", result.Errors.Select(e => e.Message)));
        // Still there, for a run started again (or a person) to deal with; nothing went to the dead-letter queue.
        var left = new List<string>();
        while (await channel.BasicGetAsync($"{prefix}.numbers.double", autoAck: true) is { } message) left.Add(Encoding.UTF8.GetString(message.Body.Span));
        Assert.Single(left, "[1, 2,");
        Assert.Equal(0u, (await channel.QueueDeclarePassiveAsync($"{prefix}:dead-letters")).MessageCount);
    }

    [Fact]
    public async Task A_flood_of_malformed_messages_beyond_the_policy_limit_stops_the_run()
    {
        string runId = Broker.NewRunId();
        string prefix = "millrace." + runId;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var published = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Graph graph = Doubling(started, published.Task, new ConcurrentBag<long>(), new ConcurrentBag<DeadLetter>());
        var options = new RunOptions { Placement = "broker", RunId = runId, Quiet = true };
        options.Broker.Uri = Broker.Uri;
        // The command line's policy keeps the code's limit (100 in a minute): 150 bad messages are a bug, not bad data.
        Task<RunResult> run = graph.RunWithin(options, seconds: 120);

        var factory = new ConnectionFactory { Uri = new Uri(Broker.Uri) };
        await using IConnection connection = await factory.CreateConnectionAsync();
        await using IChannel channel = await ChannelAsync(connection);
        await Task.WhenAny(started.Task, run);
        Assert.False(run.IsCompleted, run.IsCompleted ? (await run).ToString() : "");
        Bad invalid = BadMessages("json").Single(b => b.What == "invalid JSON");
        int sent = await PublishAsync(channel, $"{prefix}.numbers", Enumerable.Repeat(invalid, 150), run);
        Assert.True(sent > 100, $"only {sent} published");

        RunResult result = await run;
        published.SetResult();
        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains("more than 100 items or messages", string.Join("\n", result.Errors.Select(e => e.Message)));
        // Those moved before the limit are in the dead-letter queue; the rest stay in the stream's queue: none is lost.
        uint movedCount = (await channel.QueueDeclarePassiveAsync($"{prefix}:dead-letters")).MessageCount;
        uint left = (await channel.QueueDeclarePassiveAsync($"{prefix}.numbers.double")).MessageCount;
        Assert.True(movedCount <= 100 && movedCount + left >= sent, $"{movedCount} moved, {left} left of {sent}");
    }

    private static string? Text(IDictionary<string, object?> headers, string name) =>
        headers.TryGetValue(name, out object? value) ? value switch
        {
            byte[] bytes => Encoding.UTF8.GetString(bytes),
            null => null,
            _ => value.ToString(),
        } : null;
}
