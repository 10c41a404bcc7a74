using System.Runtime.CompilerServices;
using Millrace.Engine;

namespace Millrace.Tests.Engine;

/// <summary>
/// Item ids in a runner that has them (the broker placement's): an item delivered again is skipped,
/// and what a handler emits carries an id derived from its item's, even when an async handler emits
/// from another thread. In Debug builds this also runs the runner-thread asserts on their legitimate paths.
/// </summary>
public class ItemIdentityTests
{
    /// <summary>Always continues on the thread pool: a handler that awaited with ConfigureAwait(false) and went on elsewhere.</summary>
    private readonly struct ToThreadPool : INotifyCompletion
    {
        public ToThreadPool GetAwaiter() => this;
        public bool IsCompleted => false;
        public void OnCompleted(Action continuation) => ThreadPool.UnsafeQueueUserWorkItem(_ => continuation(), null);
        public void GetResult()
        {
        }
    }

    private sealed class Settled : Receipt
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public override void Handled() => Done.SetResult();
    }

    [Fact]
    public async Task A_repeat_is_skipped_and_items_emitted_off_thread_take_their_ids_from_the_item_handled()
    {
        RunContext run = Fakes.Run();
        var input = new Stream<long>("in");
        var output = new Stream<long>("out");
        var downstream = new FakeDestination();
        int hops = 0;
        var builder = new ProcessBuilder("tenfold");
        Output<long> o = builder.Output(output);
        builder.SkipRepeats(16);
        builder.On(input, async (x, _) =>
        {
            int before = Environment.CurrentManagedThreadId;
            await new ToThreadPool();
            if (Environment.CurrentManagedThreadId != before) Interlocked.Increment(ref hops);
            o.Emit(10 * x);
        });
        builder.Seal();
        var runner = new ProcessRunner(builder, run, identity: true);
        Lane lane = runner.AddLane(builder.Inputs[0], capacity: 16, writers: 1);
        Fakes.Wire(runner, o, batchSize: 16, maxPending: 8, downstream);
        Task running = Fakes.Start(runner);

        var first = new Settled { Ids = new ulong[] { 100, 101, 102 } };
        var again = new Settled { Ids = new ulong[] { 102, 103 } }; // 102 comes a second time
        runner.Deliver(lane, new long[] { 1, 2, 3 }, 3, 0, first);
        runner.Deliver(lane, new long[] { 3, 4 }, 2, 0, again);
        await first.Done.Task.Within(run);
        await again.Done.Task.Within(run);
        runner.DeliverEnd(lane, 0);
        await running.WaitAsync(Fakes.Limit);

        Assert.Empty(run.Errors);
        Assert.Equal(4, hops); // every emit ran on another thread than the handler began on
        // What each batch produced left before its receipt was handled: one batch each, the repeat skipped.
        Assert.Equal(new[] { new long[] { 10, 20, 30 }, new long[] { 40 } }, downstream.Batches);
        ulong salt = ItemIds.Hash("tenfold\nout");
        Assert.Equal(new[] { new[] { 100 + salt, 101 + salt, 102 + salt }, new[] { 103 + salt } }, downstream.Ids);
        Assert.Equal(1, downstream.Ends);
        Assert.Equal(4, runner.ItemsIn);
        Assert.Equal(5, lane.Position);
    }
}
