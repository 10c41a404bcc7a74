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

    /// <param name="Enveloped">The body starts with an envelope (content_encoding millrace-envelope).</param>
    private sealed record Bad(string What, byte[] Body, string Type, Dictionary<string, object?> Headers, bool Enveloped = false);

    /// <summary>A data message in a compact envelope (MRE2), as Millrace writes them, with the items' JSON after it.</summary>
    /// <param name="lastRun">When given, the last id range's length as written (one byte): ids that do not match the count.</param>
    private static byte[] Compact(string writer, byte[] incarnation, long place, int count, ulong[]? ids, string json, byte? lastRun = null)
    {
        var buffer = new ArrayBufferWriter<byte>();
        Millrace.RabbitMQ.Wire.WriteCompactEnvelope(buffer, Millrace.RabbitMQ.MessageKind.Data, Encoding.UTF8.GetBytes(writer), incarnation, place, -1, -1, count, ids);
        byte[] envelope = buffer.WrittenSpan.ToArray();
        if (lastRun is { } run) envelope[^1] = run; // the envelope ends with its last range's length (one byte when below 128)
        return [.. envelope, .. Encoding.UTF8.GetBytes(json)];
    }

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
            bad.Add(new("a compact envelope cut short", [.. "MRE2"u8, 0, 4], "data", new(), Enveloped: true));
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

    /// <summary>source → numbers → double (dead letters in code; throws on 777 when asked) → sink; dead letters → dead.</summary>
    private static Graph Doubling(TaskCompletionSource started, Task published, ConcurrentBag<long> results, ConcurrentBag<DeadLetter> deadLetters, bool throwOn777)
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
            p.On(numbers, x => o.Emit(x == 777 && throwOn777 ? throw new InvalidOperationException("777 is bad") : 2 * x));
        });
        graph.Sink("sink", doubled, results.Add);
        graph.Sink("dead", graph.DeadLetters, deadLetters.Add);
        return graph;
    }

    /// <summary>A run of <see cref="Doubling"/> on the broker, half its items out, waiting for bad messages; and a channel of the test's own.</summary>
    private sealed class Running : IAsyncDisposable
    {
        private readonly TaskCompletionSource _published = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private IConnection? _connection;

        public string Prefix { get; } = "millrace." + Broker.NewRunId();
        public ConcurrentBag<long> Results { get; } = new();
        public ConcurrentBag<DeadLetter> DeadLetters { get; } = new();
        public Task<RunResult> Run { get; private set; } = null!;
        public IChannel Channel { get; private set; } = null!;

        public static Task<Running> StartAsync(params string[] args) => StartAsync(true, args);

        public static async Task<Running> StartAsync(bool throwOn777, params string[] args)
        {
            var running = new Running();
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Graph graph = Doubling(started, running._published.Task, running.Results, running.DeadLetters, throwOn777);
            RunOptions options = RunOptions.Parse(["--placement", "broker", "--run-id", running.Prefix["millrace.".Length..], "--broker", Broker.Uri, "--quiet", .. args]);
            running.Run = graph.RunWithin(options, seconds: 120);
            running._connection = await new ConnectionFactory { Uri = new Uri(Broker.Uri) }.CreateConnectionAsync();
            running.Channel = await running._connection.CreateChannelAsync(
                new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
            await Task.WhenAny(started.Task, running.Run);
            Assert.False(running.Run.IsCompleted, running.Run.IsCompleted ? (await running.Run).ToString() : "");
            return running;
        }

        /// <summary>Publishes the messages to the stream the process reads (until the run ends), then lets the source go on.</summary>
        public async Task<int> PublishAsync(IEnumerable<Bad> messages)
        {
            int sent = await PoisonMessageTests.PublishAsync(Channel, $"{Prefix}.numbers", messages, Run);
            _published.TrySetResult();
            return sent;
        }

        public async Task<uint> CountAsync(string queue) => (await Channel.QueueDeclarePassiveAsync(queue)).MessageCount;

        public async ValueTask DisposeAsync()
        {
            _published.TrySetResult();
            if (Channel is not null) await Channel.DisposeAsync();
            if (_connection is not null) await _connection.DisposeAsync();
        }
    }

    private static string Errors(RunResult result) => string.Join("\n", result.Errors.Select(e => e.Message));

    /// <summary>Publishes each message once the broker takes it (or until <paramref name="until"/> ends); returns how many it took.</summary>
    private static async Task<int> PublishAsync(IChannel channel, string exchange, IEnumerable<Bad> messages, Task? until = null)
    {
        int published = 0;
        foreach (Bad bad in messages)
        {
            var properties = new BasicProperties { Type = bad.Type, Persistent = true, Headers = bad.Headers, MessageId = "bad-" + Guid.NewGuid().ToString("N") };
            if (bad.Enveloped) properties.ContentEncoding = Millrace.RabbitMQ.Wire.EnvelopeEncoding;
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

    /// <summary>Messages of the writer 'source' as another incarnation would write them: place 0 and 2 good, place 1 bad, published 0, 2, 1.</summary>
    private static List<Bad> OutOfOrder(out Bad poison)
    {
        Dictionary<string, object?> Headers(int place) => new() { ["millrace-writer"] = "source", ["millrace-seq"] = $"other:{place}" };
        poison = new Bad("invalid JSON in its writer's order", Encoding.UTF8.GetBytes("[1,"), "data", Headers(1));
        return
        [
            new("first", Encoding.UTF8.GetBytes("[100000]"), "data", Headers(0)),
            new("third, early", Encoding.UTF8.GetBytes("[100002]"), "data", Headers(2)),
            poison,
        ];
    }

    /// <summary>
    /// The same in compact envelopes, from a third incarnation of 'source': the bad one's ids name three items for its one,
    /// which only decoding its items finds out; it keeps its place, and the one after it is not held back.
    /// </summary>
    private static List<Bad> OutOfOrderCompact(out Bad poison)
    {
        byte[] incarnation = [1, 2, 3, 4, 5, 6, 7, 8];
        poison = new Bad("ids that do not match the items, in a compact envelope, in its writer's order",
            Compact("source", incarnation, 1, 1, [9], "[100005]", lastRun: 3), "data", new(), Enveloped: true);
        return
        [
            new("first", Compact("source", incarnation, 0, 1, [7], "[100004]"), "data", new(), Enveloped: true),
            new("third, early", Compact("source", incarnation, 2, 1, [12], "[100006]"), "data", new(), Enveloped: true),
            poison,
        ];
    }

    [Theory]
    [InlineData("json", "dead-letter")]
    [InlineData("binary", "dead-letter")]
    [InlineData("json", "skip")]
    [InlineData("json", "stop, but --broker-poison dead-letter")]
    public async Task Malformed_messages_go_to_the_dead_letter_queue_with_their_reasons_and_every_good_item_comes_through(string codec, string policy)
    {
        List<Bad> bad = BadMessages(codec);
        string[] args = policy switch
        {
            "skip" => ["--on-error", "double=skip"],
            "dead-letter" => [],
            _ => ["--on-error", "double=stop", "--broker-poison", "dead-letter"],
        };
        bool throws = policy != "stop, but --broker-poison dead-letter";
        await using Running running = await Running.StartAsync(throws, ["--codec", codec, .. args]);
        string prefix = running.Prefix;
        IChannel channel = running.Channel;
        var expected = Enumerable.Range(0, Count).Where(i => i != 777 || !throws).Select(i => 2L * i).ToList();
        var toPublish = new List<Bad>(bad);
        if (codec == "json")
        {
            // A bad message in the middle of a writer's order: the writer's later messages do not wait for it for ever.
            toPublish.AddRange(OutOfOrder(out Bad poison));
            bad.Add(poison);
            expected.AddRange([200000, 200004]);
            toPublish.AddRange(OutOfOrderCompact(out Bad compactPoison));
            bad.Add(compactPoison);
            expected.AddRange([200008, 200012]);
        }
        Assert.Equal(toPublish.Count, await running.PublishAsync(toPublish));

        RunResult result = await running.Run;
        var results = running.Results;
        var deadLetters = running.DeadLetters;
        Assert.True(result.Outcome == RunOutcome.Completed, result.ToString());
        // Every good item, doubled; the one the handler threw on follows the policy.
        Assert.Equal(expected.Order(), results.Order());
        if (policy == "dead-letter")
        {
            DeadLetter letter = Assert.Single(deadLetters);
            Assert.Equal(("double", "numbers", "777", "777 is bad"), (letter.Process, letter.Stream, letter.Item, letter.Message));
            Assert.Equal(1, result.Processes["double"].ItemsDeadLettered);
        }
        else
        {
            Assert.Empty(deadLetters);
            Assert.Equal(policy == "skip" ? 1 : 0, result.Processes["double"].ItemsSkipped);
        }

        // Every bad message is in the run's dead-letter queue, acknowledged in its own, with why.
        string deadLetterQueue = $"{prefix}:dead-letters";
        var moved = new List<(byte[] Body, IDictionary<string, object?> Headers, string? Type)>();
        while (await channel.BasicGetAsync(deadLetterQueue, autoAck: true) is { } message)
            moved.Add((message.Body.ToArray(), message.BasicProperties.Headers!, message.BasicProperties.Type));
        Assert.Equal(bad.Count, moved.Count);
        foreach (Bad sent in bad)
        {
            // Not the client library's own header: with confirms tracked it writes the publish's sequence number into the headers
            // (into this test's own dictionary, again on each retry of a refused publish), a number no reader keeps.
            var match = moved.Where(m => m.Body.SequenceEqual(sent.Body) && m.Type == sent.Type &&
                                         sent.Headers.Where(h => h.Key != "x-dotnet-pub-seq-no").All(h => Text(m.Headers, h.Key) == h.Value?.ToString())).ToList();
            Assert.True(match.Count >= 1, $"'{sent.What}' is not in the dead-letter queue as it was published; there: " +
                string.Join("; ", moved.Select(m => $"{m.Type} {Convert.ToHexString(m.Body)} [{string.Join(",", m.Headers.Where(h => !h.Key.StartsWith("millrace-poison", StringComparison.Ordinal)).Select(h => $"{h.Key}={Text(m.Headers, h.Key)}"))}] {Text(m.Headers, "millrace-poison-reason")}")));
            var headers = match[0].Headers;
            Assert.Equal("double", Text(headers, "millrace-poison-process"));
            Assert.Equal("numbers", Text(headers, "millrace-poison-stream"));
            Assert.Equal($"{prefix}.numbers.double", Text(headers, "millrace-poison-queue"));
            Assert.StartsWith("bad-", Text(headers, "millrace-poison-message-id"));
            Assert.False(string.IsNullOrWhiteSpace(Text(headers, "millrace-poison-reason")));
            Assert.True(DateTimeOffset.TryParse(Text(headers, "millrace-poison-time"), out _));
        }
        Assert.Equal(0u, await running.CountAsync($"{prefix}.numbers.double"));
    }

    [Theory]
    [InlineData("--broker-poison", "stop")]
    [InlineData("--on-error", "double=stop")]
    [InlineData("--on-error", "double=retry:2")]
    public async Task With_a_stop_policy_or_broker_poison_stop_a_malformed_message_fails_the_run_and_stays_in_its_queue(string option, string value)
    {
        await using Running running = await Running.StartAsync(false, option, value);
        string prefix = running.Prefix;
        IChannel channel = running.Channel;
        await running.PublishAsync(BadMessages("json").Where(b => b.What == "invalid JSON"));

        RunResult result = await running.Run;
        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains("could not be decoded", Errors(result));
        Assert.Contains("stays in the queue, unacknowledged", Errors(result));
        Assert.Contains("--broker-poison dead-letter", Errors(result));
        // Still there, for a run started again (or a person) to deal with; nothing went to the dead-letter queue.
        var left = new List<string>();
        while (await channel.BasicGetAsync($"{prefix}.numbers.double", autoAck: true) is { } message) left.Add(Encoding.UTF8.GetString(message.Body.Span));
        Assert.Single(left, "[1, 2,");
        Assert.Equal(0u, await running.CountAsync($"{prefix}:dead-letters"));
    }

    [Fact]
    public async Task A_flood_of_malformed_messages_beyond_the_policy_limit_stops_the_run()
    {
        // The code's policy (dead-letter) keeps its limit of 100 failures a minute: 150 bad messages are a bug, not bad data.
        await using Running running = await Running.StartAsync();
        string prefix = running.Prefix;
        Bad invalid = BadMessages("json").Single(b => b.What == "invalid JSON");
        int sent = await running.PublishAsync(Enumerable.Repeat(invalid, 150));
        Assert.True(sent > 100, $"only {sent} published");

        RunResult result = await running.Run;
        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains("more than 100 items or messages", Errors(result));
        // Those moved before the limit are in the dead-letter queue; the rest stay in the stream's queue: none is lost.
        uint movedCount = await running.CountAsync($"{prefix}:dead-letters");
        uint left = await running.CountAsync($"{prefix}.numbers.double");
        Assert.True(movedCount <= 100 && movedCount + left >= sent, $"{movedCount} moved, {left} left of {sent}");
    }

    [Theory]
    [InlineData("full")]
    [InlineData("deleted")]
    public async Task A_full_or_deleted_dead_letter_queue_stops_the_run_and_the_message_stays_in_its_queue(string what)
    {
        await using Running running = await Running.StartAsync();
        string deadLetters = $"{running.Prefix}:dead-letters";
        if (what == "deleted")
        {
            await running.Channel.QueueDeleteAsync(deadLetters);
        }
        else
        {
            // A policy caps the queue at one message (the lower of its own limit and the policy's counts).
            var (exit, _, err) = await ExampleProgram.RunFileAsync("rabbitmqctl", ["set_policy", "-p", Broker.VirtualHost, "--apply-to", "queues",
                running.Prefix + "-cap", "^" + System.Text.RegularExpressions.Regex.Escape(deadLetters) + "$", "{\"max-length\":1,\"overflow\":\"reject-publish\"}"], seconds: 60);
            Assert.True(exit == 0, err);
        }
        try
        {
            List<Bad> bad = BadMessages("json").Where(b => b.What is "invalid JSON" or "items of another type").ToList();
            await running.PublishAsync(bad);
            RunResult result = await running.Run;
            Assert.Equal(RunOutcome.Failed, result.Outcome);
            Assert.Contains("could not move message", Errors(result));
            Assert.Contains(what == "full" ? "the broker refused it (the queue is at its length limit)" : "no queue is bound to its exchange", Errors(result));
            // The message that could not be moved is still in its stream's queue: nothing is lost. (The broker puts back what a
            // closed channel held unacknowledged on its own time, after the run's connection is gone: waited for, not assumed.)
            var left = new List<string>();
            uint moved = 0;
            await Waits.Until(async () =>
            {
                while (await running.Channel.BasicGetAsync($"{running.Prefix}.numbers.double", autoAck: true) is { } message)
                    left.Add(Encoding.UTF8.GetString(message.Body.Span));
                moved = what == "full" ? await running.CountAsync(deadLetters) : 0;
                return moved + (uint)bad.Count(b => left.Contains(Encoding.UTF8.GetString(b.Body))) >= bad.Count;
            }, "every bad message moved or back in its queue", seconds: 30).ContinueWith(_ => { });
            Assert.True(bad.Count == moved + bad.Count(b => left.Contains(Encoding.UTF8.GetString(b.Body))),
                $"{moved} moved; left in the queue: [{string.Join(" | ", left)}]; errors: {Errors(result)}");
            Assert.True(what != "full" || moved == 1, $"{moved} moved");
        }
        finally
        {
            if (what == "full")
                await ExampleProgram.RunFileAsync("rabbitmqctl", ["clear_policy", "-p", Broker.VirtualHost, running.Prefix + "-cap"], seconds: 60);
        }
    }

    [Fact]
    public async Task The_dead_letter_queue_is_listed_and_replayed_by_a_plain_AMQP_client()
    {
        List<Bad> bad = BadMessages("json").Where(b => b.What is "invalid JSON" or "items of another type").ToList();
        await using Running running = await Running.StartAsync();
        await running.PublishAsync(bad);
        RunResult result = await running.Run;
        Assert.True(result.Outcome == RunOutcome.Completed, result.ToString());
        string runId = running.Prefix["millrace.".Length..];
        string script = Path.Combine(AppContext.BaseDirectory, "python", "dead_letters.py");

        // Listing leaves them where they are.
        var (exit, output, err) = await ExampleProgram.RunFileAsync("/usr/bin/python3", [script, "list", Broker.Uri, runId], seconds: 60);
        Assert.True(exit == 0, err);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Contains(lines, l => l.StartsWith("double <- numbers: could not be decoded", StringComparison.Ordinal) && l.Contains("b'[1, 2,'"));
        Assert.Contains(lines, l => l.Contains("could not be converted to System.Int64") && l.Contains("b'[\"a\", \"b\"]'"));
        Assert.Equal($"2 messages in {running.Prefix}:dead-letters", lines[^1]);
        Assert.Equal(2u, await running.CountAsync($"{running.Prefix}:dead-letters"));

        // Replaying puts them back in the reader's queue, as they were, and empties the dead-letter queue.
        (exit, output, err) = await ExampleProgram.RunFileAsync("/usr/bin/python3", [script, "replay", Broker.Uri, runId], seconds: 60);
        Assert.True(exit == 0, err);
        Assert.Contains("2 messages replayed", output);
        Assert.Equal(0u, await running.CountAsync($"{running.Prefix}:dead-letters"));
        var back = new List<string>();
        while (await running.Channel.BasicGetAsync($"{running.Prefix}.numbers.double", autoAck: true) is { } message)
        {
            back.Add(Encoding.UTF8.GetString(message.Body.Span));
            Assert.StartsWith("replay-", message.BasicProperties.MessageId);
            Assert.DoesNotContain(message.BasicProperties.Headers ?? new Dictionary<string, object?>(), h => h.Key.StartsWith("millrace-poison-", StringComparison.Ordinal));
        }
        Assert.Equal(bad.Select(b => Encoding.UTF8.GetString(b.Body)).Order(), back.Order());
    }

    private static string? Text(IDictionary<string, object?> headers, string name) =>
        headers.TryGetValue(name, out object? value) ? value switch
        {
            byte[] bytes => Encoding.UTF8.GetString(bytes),
            null => null,
            _ => value.ToString(),
        } : null;
}
