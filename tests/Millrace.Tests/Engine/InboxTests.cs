using Millrace.Engine;

namespace Millrace.Tests.Engine;

/// <summary>
/// The inbox and its lanes: bounded per input, first in first out, end marks counted once per
/// writer, and nothing lost or taken twice however many writers push at once.
/// </summary>
public class InboxTests
{
    private static readonly Stream<long> S = new("s");

    private static InputSpec Input(Stream<long> stream) => new InputSpec<long>(stream, _ => { }, null);

    /// <summary>A reader with one lane, and a writer whose output goes into it through the real local link.</summary>
    private static (ProcessRunner Reader, Lane Lane, ProcessRunner Writer, BatchSender Sender) Link(RunContext run, int capacity, int maxPending = 8)
    {
        ProcessRunner reader = Fakes.Runner("reader", run);
        Lane lane = reader.AddLane(Input(S), capacity, writers: 1);
        Output<long> output = null!;
        ProcessRunner writer = Fakes.Runner("writer", run, p => output = p.Output(S));
        BatchSender sender = Fakes.Wire(writer, output, batchSize: capacity, maxPending, new LocalDestination(reader, lane, 0, inSameCycle: false));
        return (reader, lane, writer, sender);
    }

    [Fact]
    public async Task A_full_lane_refuses_the_writer_until_the_reader_takes_a_batch_then_wakes_it()
    {
        RunContext run = Fakes.Run();
        var (reader, lane, writer, sender) = Link(run, capacity: 4);

        sender.Send(new long[] { 1, 2, 3 }, null, 3);
        Assert.False(writer.Blocked);
        Assert.Equal(3, lane.Queued);

        // 3 + 2 > 4: refused; the batch waits in the sender and the writer is blocked.
        sender.Send(new long[] { 4, 5 }, null, 2);
        Assert.True(writer.Blocked);
        Assert.True(sender.HasPending);
        Assert.Equal(3, lane.Queued);

        ValueTask drained = writer.DrainAsync();
        Assert.False(drained.IsCompleted);
        Assert.Equal(RunnerState.Blocked, writer.Status.State);

        Assert.True(reader.Inbox.TryTake(out Envelope first));
        Assert.Equal(new long[] { 1, 2, 3 }, Fakes.Items(first));

        // Taking the batch made room and woke the writer: its batch goes in.
        await drained.AsTask().WaitAsync(Fakes.Limit);
        Assert.False(writer.Blocked);
        Assert.False(sender.HasPending);
        Assert.Equal(2, lane.Queued);
        Assert.True(reader.Inbox.TryTake(out Envelope second));
        Assert.Equal(new long[] { 4, 5 }, Fakes.Items(second));
        Assert.Equal(0, lane.Queued);
        Assert.False(reader.Inbox.TryTake(out _));
    }

    [Fact]
    public void A_batch_larger_than_the_lane_enters_an_empty_lane_and_only_an_empty_one()
    {
        RunContext run = Fakes.Run();
        ProcessRunner reader = Fakes.Runner("reader", run);
        ProcessRunner writer = Fakes.Runner("writer", run);
        Lane lane = reader.AddLane(Input(S), capacity: 2, writers: 1);

        // Otherwise it could never be delivered at all.
        Assert.True(reader.Inbox.TryEnqueue(lane, new long[5], 5, 0, writer));
        Assert.Equal(5, lane.Queued);
        Assert.False(reader.Inbox.TryEnqueue(lane, new long[1], 1, 0, writer));
        Assert.True(reader.Inbox.TryTake(out _));
        Assert.True(reader.Inbox.TryEnqueue(lane, new long[1], 1, 0, writer));
    }

    [Fact]
    public void Envelopes_leave_in_arrival_order_within_and_across_lanes()
    {
        RunContext run = Fakes.Run();
        ProcessRunner reader = Fakes.Runner("reader", run);
        ProcessRunner writer = Fakes.Runner("writer", run);
        Lane a = reader.AddLane(Input(S), capacity: 100, writers: 1);
        Lane b = reader.AddLane(Input(new Stream<long>("t")), capacity: 100, writers: 2);
        Inbox inbox = reader.Inbox;

        Assert.True(inbox.TryEnqueue(a, new long[] { 1, 2 }, 2, 0, writer));
        inbox.EnqueueRemote(b, new long[] { 10 }, 1, 1);
        Assert.True(inbox.TryEnqueue(a, new long[] { 3 }, 1, 0, writer));
        inbox.EnqueueControl(new Envelope(EnvelopeKind.End, b, null, 0, 1));
        Assert.True(inbox.TryEnqueue(b, new long[] { 11, 12, 13 }, 3, 0, writer));
        Assert.True(inbox.TryEnqueue(a, new long[] { 4, 5, 6 }, 3, 0, writer));
        Assert.Equal(6, a.Queued);
        Assert.Equal(4, b.Queued);

        var taken = new List<string>();
        while (inbox.TryTake(out Envelope e))
            taken.Add(e.Kind == EnvelopeKind.Data ? $"{e.Lane!.StreamName}{e.Writer}:{string.Join(",", Fakes.Items(e))}" : $"end {e.Lane!.StreamName}{e.Writer}");

        Assert.Equal(new[] { "s0:1,2", "t1:10", "s0:3", "end t1", "t0:11,12,13", "s0:4,5,6" }, taken);
        Assert.Equal(0, a.Queued);
        Assert.Equal(0, b.Queued);
    }

    [Fact]
    public void A_writer_ends_a_lane_once_however_often_its_end_is_marked()
    {
        var lane = new Lane(0, Input(S), capacity: 4, writers: 2);

        Assert.False(lane.EndWriter(1));
        Assert.False(lane.EndWriter(1));
        Assert.Equal(1, lane.WritersOpen);
        Assert.False(lane.Ended);
        Assert.True(lane.EndWriter(0));
        Assert.True(lane.Ended);
        Assert.False(lane.EndWriter(0));
        Assert.Equal(0, lane.WritersOpen);
    }

    [Fact]
    public async Task A_running_process_counts_repeated_end_marks_and_a_termination_notice_once_per_writer()
    {
        var pokes = new Pokes();
        RunContext run = Fakes.Run(pokes);
        int endedCalls = 0, completedCalls = 0;
        var seen = new List<long>();
        ProcessRunner reader = Fakes.Runner("reader", run, p =>
        {
            p.On(S, seen.Add);
            p.OnEnded(S, () => endedCalls++);
            p.OnCompleted(() => completedCalls++);
        }, out ProcessBuilder builder);
        Lane lane = reader.AddLane(builder.Inputs[0], capacity: 8, writers: 2);
        lane.CycleWriters = new[] { 1 };
        Task running = Fakes.Start(reader);

        reader.Deliver(lane, new long[] { 7, 8 }, 2, writer: 0);
        reader.DeliverEnd(lane, writer: 1);
        reader.DeliverEnd(lane, writer: 1);
        reader.ForceEnd(); // ends writer 1, inside the cycle, again
        await pokes.Until(() => reader.Status is { State: RunnerState.Passive, Received: 4 }, "the reader handled all four envelopes");

        Assert.Equal(new long[] { 7, 8 }, seen);
        Assert.Equal(0, endedCalls);
        Assert.Equal(1, lane.WritersOpen);
        Assert.False(running.IsCompleted);

        reader.DeliverEnd(lane, writer: 0);
        await running.WaitAsync(Fakes.Limit);

        Assert.Equal(1, endedCalls);
        Assert.Equal(1, completedCalls);
        Assert.Equal(RunnerState.Ended, reader.Status.State);
        Assert.Empty(run.Errors);
    }

    /// <summary>
    /// Several writer threads push batches of random sizes through the real local link into one small
    /// lane while the reader takes them: the reader gets every item exactly once, each writer's in the
    /// order written, one end mark per writer, and the lane never holds more than its capacity.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Concurrent_writers_lose_and_duplicate_nothing(int seed)
    {
        const int writers = 4, itemsPerWriter = 3000, capacity = 16, maxBatch = 8;
        RunContext run = Fakes.Run();
        ProcessRunner reader = Fakes.Runner("reader", run);
        Lane lane = reader.AddLane(Input(S), capacity, writers);

        var threads = new List<Task>();
        for (int k = 0; k < writers; k++)
        {
            Output<long> output = null!;
            ProcessRunner writer = Fakes.Runner($"writer{k}", run, p => output = p.Output(S));
            BatchSender sender = Fakes.Wire(writer, output, maxBatch, maxPending: 2, new LocalDestination(reader, lane, k, inSameCycle: false));
            var random = new Random(seed * 100 + k);
            long first = k * 1_000_000L;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try
                {
                    int sent = 0;
                    while (sent < itemsPerWriter)
                    {
                        int count = Math.Min(random.Next(1, maxBatch + 1), itemsPerWriter - sent);
                        var batch = new long[count];
                        for (int i = 0; i < count; i++) batch[i] = first + sent + i;
                        sender.Send(batch, null, count);
                        if (writer.Blocked) writer.DrainBlocking();
                        sent += count;
                    }
                    if (writer.Blocked) writer.DrainBlocking();
                    sender.End();
                    done.SetResult();
                }
                catch (Exception e)
                {
                    done.SetException(e);
                }
            })
            { IsBackground = true, Name = $"test writer {k}" };
            thread.Start();
            threads.Add(done.Task);
        }

        var taken = new List<long>[writers];
        for (int k = 0; k < writers; k++) taken[k] = new List<long>();
        int ends = 0, maxQueued = 0;
        Task reading = Task.Run(async () =>
        {
            while (ends < writers)
            {
                maxQueued = Math.Max(maxQueued, Volatile.Read(ref lane.Queued));
                if (!reader.Inbox.TryTake(out Envelope e))
                {
                    await reader.Inbox.WaitAsync(run.HardToken);
                    continue;
                }
                if (e.Kind == EnvelopeKind.End)
                {
                    ends++;
                    lane.EndWriter(e.Writer);
                    continue;
                }
                Assert.Equal(EnvelopeKind.Data, e.Kind);
                Assert.InRange(e.Count, 1, maxBatch);
                taken[e.Writer].AddRange(Fakes.Items(e));
            }
        });

        try
        {
            await Task.WhenAll(threads.Append(reading)).WaitAsync(Fakes.Limit);
        }
        finally
        {
            run.StopAll(); // releases any thread still waiting, should the test fail
        }

        Assert.True(lane.Ended);
        Assert.False(reader.Inbox.TryTake(out _));
        Assert.Equal(0, lane.Queued);
        Assert.InRange(maxQueued, 0, capacity);
        for (int k = 0; k < writers; k++)
        {
            long first = k * 1_000_000L;
            // Exactly the items written (no loss, no repeat), and in the order written.
            Assert.Equal(Enumerable.Range(0, itemsPerWriter).Select(i => first + i), taken[k]);
        }
    }
}
