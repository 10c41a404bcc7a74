using Millrace.Engine;

namespace Millrace.Tests.Engine;

/// <summary>
/// An output's way out, with a real runner on its process thread and a fake reader: full batches leave
/// at once, partial ones on flush, and a full reader holds the process until its room returns.
/// </summary>
public class BatchSenderTests
{
    private static readonly Stream<long> S = new("s");

    [Fact]
    public async Task Full_batches_leave_at_once_and_a_partial_batch_when_the_process_flushes()
    {
        RunContext run = Fakes.Run();
        var reader = new FakeDestination();
        var seen = new List<int>(); // batches delivered, as the process saw it after each emit
        Output<long> output = null!;
        ProcessRunner writer = Fakes.Runner("writer", run, p =>
        {
            output = p.Output(S);
            p.OnStart(() =>
            {
                for (long i = 1; i <= 10; i++)
                {
                    output.Emit(i);
                    seen.Add(reader.Batches.Length);
                }
            });
        });
        Fakes.Wire(writer, output, batchSize: 4, maxPending: 8, reader);

        await Fakes.Start(writer).WaitAsync(Fakes.Limit);

        Assert.Empty(run.Errors);
        Assert.Equal(new[] { 0, 0, 0, 1, 1, 1, 1, 2, 2, 2 }, seen);
        // Items 9 and 10 left when the process flushed before ending its outputs; then the end mark.
        Assert.Equal(new[] { new long[] { 1, 2, 3, 4 }, new long[] { 5, 6, 7, 8 }, new long[] { 9, 10 } }, reader.Batches);
        Assert.Equal(1, reader.Ends);
        Assert.Equal(new ProcessStatus(RunnerState.Ended, 4, 0), writer.Status); // three batches and one end mark
    }

    [Fact]
    public async Task A_flush_sends_the_partial_batch_before_the_process_waits_for_input()
    {
        var pokes = new Pokes();
        RunContext run = Fakes.Run(pokes);
        var downstream = new FakeDestination();
        var input = new Stream<long>("in");
        Output<long> output = null!;
        ProcessRunner process = Fakes.Runner("double", run, p =>
        {
            output = p.Output(S);
            p.On(input, x => output.Emit(2 * x));
        }, out ProcessBuilder builder);
        Lane lane = process.AddLane(builder.Inputs[0], capacity: 16, writers: 1);
        Fakes.Wire(process, output, batchSize: 100, maxPending: 8, downstream);
        Task running = Fakes.Start(process);

        process.Deliver(lane, new long[] { 1, 2, 3 }, 3, writer: 0);
        await pokes.Until(() => process.Status is { State: RunnerState.Passive, Received: 1 }, "the process handled the batch and waits");

        // The inbox is empty: what was gathered left, though far from a full batch.
        Assert.Equal(new[] { new long[] { 2, 4, 6 } }, downstream.Batches);
        Assert.Equal(0, downstream.Ends);

        process.DeliverEnd(lane, writer: 0);
        await running.WaitAsync(Fakes.Limit);
        Assert.Equal(1, downstream.Ends);
        Assert.Empty(run.Errors);
    }

    /// <summary>
    /// maxPending 8: the start action finishes and the process waits for room after it. maxPending 1:
    /// the third full batch exceeds what may be held, and the emit itself waits (an emit storm inside one handler).
    /// </summary>
    [Theory]
    [InlineData(8, true)]
    [InlineData(1, false)]
    public async Task A_full_reader_holds_the_batches_and_the_process_until_room_returns_then_all_arrive_in_order(int maxPending, bool startActionDoneWhileBlocked)
    {
        var pokes = new Pokes();
        RunContext run = Fakes.Run(pokes);
        var reader = new FakeDestination();
        reader.Refuse();
        bool emittedAll = false;
        Output<long> output = null!;
        ProcessRunner writer = Fakes.Runner("writer", run, p =>
        {
            output = p.Output(S);
            p.OnStart(() =>
            {
                for (long i = 1; i <= 6; i++) output.Emit(i);
                Volatile.Write(ref emittedAll, true);
            });
        });
        BatchSender sender = Fakes.Wire(writer, output, batchSize: 2, maxPending, reader);

        Task running = Fakes.Start(writer);
        await pokes.Until(() => writer.Status.State == RunnerState.Blocked, "the writer is blocked");

        Assert.Empty(reader.Batches);
        Assert.True(sender.HasPending);
        Assert.Equal(startActionDoneWhileBlocked, Volatile.Read(ref emittedAll));
        Assert.False(running.IsCompleted);
        Assert.Equal(0, writer.Status.Sent);

        reader.MakeRoom();
        await running.WaitAsync(Fakes.Limit);

        Assert.Empty(run.Errors);
        Assert.True(emittedAll);
        Assert.Equal(new[] { new long[] { 1, 2 }, new long[] { 3, 4 }, new long[] { 5, 6 } }, reader.Batches);
        Assert.Equal(1, reader.Ends);
        Assert.False(sender.HasPending);
        Assert.Equal(new ProcessStatus(RunnerState.Ended, 4, 0), writer.Status);
    }

    [Fact]
    public async Task Every_reader_of_a_stream_gets_every_batch_in_order_even_when_one_is_full()
    {
        var pokes = new Pokes();
        RunContext run = Fakes.Run(pokes);
        var free = new FakeDestination("free");
        var full = new FakeDestination("full");
        full.Refuse();
        Output<long> output = null!;
        ProcessRunner writer = Fakes.Runner("writer", run, p =>
        {
            output = p.Output(S);
            p.OnStart(() =>
            {
                for (long i = 1; i <= 4; i++) output.Emit(i);
            });
        });
        Fakes.Wire(writer, output, batchSize: 2, maxPending: 8, free, full);

        Task running = Fakes.Start(writer);
        await pokes.Until(() => writer.Status.State == RunnerState.Blocked, "the writer is blocked");

        // The first batch reached the reader with room; the second waits behind it for the full one.
        Assert.Equal(new[] { new long[] { 1, 2 } }, free.Batches);
        Assert.Empty(full.Batches);

        full.MakeRoom();
        await running.WaitAsync(Fakes.Limit);

        var expected = new[] { new long[] { 1, 2 }, new long[] { 3, 4 } };
        Assert.Equal(expected, free.Batches);
        Assert.Equal(expected, full.Batches);
        Assert.Equal((1, 1), (free.Ends, full.Ends));
        Assert.Empty(run.Errors);
    }

    [Fact]
    public void A_link_closed_by_termination_detection_refuses_further_batches_and_gets_no_end_mark()
    {
        RunContext run = Fakes.Run();
        var inCycle = new FakeDestination("in-cycle", inSameCycle: true);
        var outside = new FakeDestination("outside");
        Output<long> output = null!;
        ProcessRunner writer = Fakes.Runner("writer", run, p => output = p.Output(S));
        BatchSender sender = Fakes.Wire(writer, output, batchSize: 2, maxPending: 8, outside, inCycle);

        sender.CloseCycleLinks();
        Assert.True(inCycle.Closed);
        Assert.False(outside.Closed);
        var e = Assert.Throws<InvalidOperationException>(() => sender.Send(new long[] { 1 }, null, 1));
        Assert.Contains("in-cycle", e.Message);

        sender.End();
        Assert.Equal((0, 1), (inCycle.Ends, outside.Ends));
    }

    /// <summary>
    /// Destinations that copy the items out (sockets, the broker) let the writer fill the same arrays again; the copies are
    /// exact, a reader that keeps its arrays gets fresh ones, and items of a reference type are not kept reachable.
    /// </summary>
    [Fact]
    public async Task Arrays_are_reused_only_when_every_destination_copies_and_hold_no_items_after()
    {
        var strings = new Stream<string>("strings");
        async Task<(CopyingDestination<string> Copying, FakeStrings? Keeping)> Run(bool withKeeper)
        {
            RunContext run = Fakes.Run();
            var copying = new CopyingDestination<string>();
            var keeping = withKeeper ? new FakeStrings() : null;
            Output<string> output = null!;
            ProcessRunner writer = Fakes.Runner("writer", run, p =>
            {
                output = p.Output(strings);
                p.OnStart(() =>
                {
                    for (int i = 1; i <= 10; i++) output.Emit("item " + i);
                });
            });
            Fakes.Wire(writer, output, batchSize: 4, maxPending: 8, keeping is null ? new Destination[] { copying } : new Destination[] { copying, keeping });
            await Fakes.Start(writer).WaitAsync(Fakes.Limit);
            Assert.Empty(run.Errors);
            return (copying, keeping);
        }

        var expected = new[] { new[] { "item 1", "item 2", "item 3", "item 4" }, new[] { "item 5", "item 6", "item 7", "item 8" }, new[] { "item 9", "item 10" } };

        var (alone, _) = await Run(withKeeper: false);
        Assert.Equal(expected, alone.Copies);
        Assert.Single(alone.Arrays.Distinct()); // one array, filled three times
        Assert.All(alone.Arrays[0], x => Assert.Null(x)); // cleared once copied: no item kept reachable

        var (copying, keeping) = await Run(withKeeper: true);
        Assert.Equal(expected, copying.Copies);
        Assert.Equal(expected, keeping!.Batches);
        Assert.Equal(3, copying.Arrays.Distinct().Count()); // a reader keeps them: never reused
    }

    private sealed class CopyingDestination<T> : Destination
    {
        public CopyingDestination() : base("copying", 0, false)
        {
        }

        public List<T[]> Copies { get; } = new();
        public List<T[]> Arrays { get; } = new();

        public override bool KeepsArrays => false;

        public override bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer)
        {
            Copies.Add(((T[])items)[..count]);
            Arrays.Add((T[])items);
            return true;
        }

        public override void SendEnd()
        {
        }

        public override string Fill => "room";
    }

    private sealed class FakeStrings : Destination
    {
        public FakeStrings() : base("keeping", 0, false)
        {
        }

        private readonly List<string[]> _arrays = new();
        private readonly List<int> _counts = new();

        // Read at the end: what the kept arrays hold then (a reused array would show later items).
        public string[][] Batches => _arrays.Select((a, i) => a[.._counts[i]]).ToArray();

        public override bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer)
        {
            _arrays.Add((string[])items);
            _counts.Add(count);
            return true;
        }

        public override void SendEnd()
        {
        }

        public override string Fill => "room";
    }
}
