using Millrace.Engine;

namespace Millrace.Tests.Engine;

/// <summary>
/// Termination detection against processes the test plays itself (<see cref="ScriptedStatus"/>): a
/// source "src" feeds a ring of "a" and "b". The detector ends the ring only after two identical waves
/// in which nobody runs and every envelope sent was received; it calls a lasting standstill of blocked
/// writers a deadlock, but not a writer whose room is still on its way from another OS process.
/// </summary>
public class TerminationDetectorTests
{
    private const int Src = 0, A = 1, B = 2;

    private static GraphModel Ring()
    {
        var feed = new Stream<long>("feed");
        var ab = new Stream<long>("ab");
        var ba = new Stream<long>("ba");
        return GraphModel.Build(new IStreamReference[] { feed, ab, ba }, new[]
        {
            new ProcessDeclaration("src", p =>
            {
                p.Output(feed);
                p.OnStart(() => { });
            }),
            new ProcessDeclaration("a", p =>
            {
                p.On(feed, _ => { });
                p.On(ba, _ => { });
                p.Output(ab);
            }),
            new ProcessDeclaration("b", p =>
            {
                p.On(ab, _ => { });
                p.Output(ba);
            }),
        }, new Dictionary<Type, object>());
    }

    private static ProcessStatus Running(long sent, long received) => new(RunnerState.Running, sent, received);
    private static ProcessStatus Passive(long sent, long received) => new(RunnerState.Passive, sent, received);
    private static ProcessStatus Blocked(long sent, long received) => new(RunnerState.Blocked, sent, received);
    private static ProcessStatus Ended(long sent, long received) => new(RunnerState.Ended, sent, received);

    private static (RunContext Run, ScriptedStatus Processes, TerminationDetector Detector) Start()
    {
        GraphModel model = Ring();
        Cycle ring = Assert.Single(model.Cycles);
        Assert.Equal(new[] { A, B }, ring.Members);
        Assert.Equal(new[] { Src }, ring.Upstream);
        RunContext run = Fakes.Run();
        var processes = new ScriptedStatus();
        var detector = new TerminationDetector(run, processes, model);
        run.Detector = detector;
        detector.Start();
        return (run, processes, detector);
    }

    /// <summary>The detector is back waiting for a poke, having done nothing more: stopping it ends it before any further call.</summary>
    private static async Task AssertIdleThenStop(ScriptedStatus processes, TerminationDetector detector)
    {
        Task<object> next = processes.NextAsync();
        detector.Stop();
        Task first = await Task.WhenAny(detector.Completion, next).WaitAsync(Fakes.Limit);
        Assert.True(first == detector.Completion, $"After the waves the detector went on to {(next.IsCompletedSuccessfully ? next.Result : "nothing")}.");
        await detector.Completion;
    }

    [Fact]
    public async Task The_ring_ends_only_after_two_identical_quiet_waves_with_nothing_in_flight()
    {
        var (run, processes, detector) = Start();

        // Nobody runs and the two waves agree, but a's last batch to b is in flight: 12 sent, 11 received.
        detector.Poke();
        ProcessStatus[] inFlight = { Ended(3, 0), Passive(5, 7), Passive(4, 4) };
        await processes.AnswerAsync(inFlight);
        await processes.AnswerAsync(inFlight);

        // b took it (12 of 12) and the first wave looks final, but a sent again before the second: no verdict.
        detector.Poke();
        await processes.AnswerAsync(Ended(3, 0), Passive(5, 7), Passive(4, 5));
        await processes.AnswerAsync(Ended(3, 0), Passive(6, 7), Passive(4, 5));
        Assert.False(run.TerminationDetected);
        Assert.False(run.AllCyclesClosed.IsCompleted);

        // b took that one too: two identical waves, nobody running, 13 sent and 13 received. The ring ends.
        detector.Poke();
        ProcessStatus[] quiet = { Ended(3, 0), Passive(6, 7), Passive(4, 6) };
        await processes.AnswerAsync(quiet);
        await processes.AnswerAsync(quiet);
        Assert.Equal(new ScriptedStatus.Forced(A), await processes.NextAsync());
        Assert.Equal(new ScriptedStatus.Forced(B), await processes.NextAsync());
        await run.AllCyclesClosed.WaitAsync(Fakes.Limit);
        Assert.True(run.TerminationDetected);

        // The notices count as sent by the detector: a and b receive them and end; the detector leaves.
        detector.Poke();
        await processes.AnswerAsync(Ended(3, 0), Ended(6, 8), Ended(4, 7));
        await detector.Completion.WaitAsync(Fakes.Limit);
        Assert.Empty(processes.Drain());
        Assert.Empty(run.Errors);
        Assert.Equal(RunOutcome.Completed, run.Outcome);
    }

    [Fact]
    public async Task A_running_process_ends_the_wave_at_once()
    {
        var (run, processes, detector) = Start();

        // Counts agree, but a is still running: no second wave, no verdict.
        detector.Poke();
        await processes.AnswerAsync(Ended(3, 0), Running(5, 7), Passive(4, 5));
        await AssertIdleThenStop(processes, detector);

        Assert.False(run.TerminationDetected);
        Assert.Empty(run.Errors);
    }

    [Fact]
    public async Task Quiet_waves_with_a_message_in_flight_give_no_verdict()
    {
        var (run, processes, detector) = Start();

        detector.Poke();
        ProcessStatus[] inFlight = { Ended(3, 0), Passive(5, 7), Passive(4, 4) };
        await processes.AnswerAsync(inFlight);
        await processes.AnswerAsync(inFlight);
        await AssertIdleThenStop(processes, detector);

        Assert.False(run.TerminationDetected);
        Assert.Empty(run.Errors);
    }

    [Fact]
    public async Task Every_live_process_blocked_for_good_is_reported_as_a_deadlock_instead_of_hanging()
    {
        var (run, processes, detector) = Start();

        // a and b each wait for room in the other's full queue; what fills the queues was sent, not yet received.
        detector.Poke();
        ProcessStatus[] stuck = { Ended(3, 0), Blocked(6, 3), Blocked(3, 6) };
        for (int wave = 0; wave < 2 + 4; wave++) await processes.AnswerAsync(stuck); // two waves, then four looks over a second

        Assert.IsType<ScriptedStatus.Described>(await processes.NextAsync());
        await detector.Completion.WaitAsync(Fakes.Limit);
        ProcessFailure failure = Assert.Single(run.Errors);
        Assert.StartsWith("Deadlock", failure.Message);
        Assert.Contains(processes.Blocked, failure.Message);
        Assert.Equal("a, b", failure.Process);
        Assert.Equal(RunOutcome.Failed, run.Outcome);
        Assert.False(run.TerminationDetected);
        Assert.Empty(processes.Drain());
    }

    [Fact]
    public async Task A_writer_whose_room_is_still_on_its_way_from_another_OS_process_is_no_deadlock()
    {
        var (run, processes, detector) = Start();

        // b took everything and gave its room back, but the room frame is still on its way to a, in
        // another OS process. Room is no counted message: the waves agree, and a shows as blocked.
        detector.Poke();
        ProcessStatus[] waiting = { Ended(3, 0), Blocked(6, 6), Passive(3, 3) };
        await processes.AnswerAsync(waiting);
        await processes.AnswerAsync(waiting);
        await processes.AnswerAsync(waiting); // first look of the confirmation: unchanged
        await processes.AnswerAsync(Ended(3, 0), Running(6, 6), Passive(3, 3)); // the frame arrived: a runs again

        // Back to waiting for a poke; the run goes on to end normally.
        detector.Poke();
        await processes.AnswerAsync(Ended(3, 0), Ended(8, 6), Ended(3, 5));
        await detector.Completion.WaitAsync(Fakes.Limit);

        Assert.Empty(processes.Drain());
        Assert.Empty(run.Errors);
        Assert.Equal(RunOutcome.Completed, run.Outcome);
    }

    [Fact]
    public async Task A_quiet_run_whose_cycle_cannot_end_is_reported_instead_of_hanging()
    {
        var (run, processes, detector) = Start();

        // Quiet, nothing in flight, yet the ring's upstream has not ended: no cycle can close.
        detector.Poke();
        ProcessStatus[] quiet = { Passive(3, 0), Passive(6, 7), Passive(4, 6) };
        await processes.AnswerAsync(quiet);
        await processes.AnswerAsync(quiet);
        await detector.Completion.WaitAsync(Fakes.Limit);

        ProcessFailure failure = Assert.Single(run.Errors);
        Assert.Contains("stalled", failure.Message);
        Assert.Empty(processes.Drain());
        Assert.False(run.TerminationDetected);
    }
}
