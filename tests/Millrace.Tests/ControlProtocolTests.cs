using System.Text;
using Millrace.Control;
using Millrace.Engine;

namespace Millrace.Tests;

/// <summary>
/// The one control protocol of the processes and broker placements: every message survives the trip,
/// and bad bytes are an InvalidDataException naming what was wrong, never another exception or a hang.
/// </summary>
public class ControlProtocolTests
{
    private static readonly ProcessReport Full = new()
    {
        Index = 3, State = RunnerState.Blocked, Sent = long.MaxValue, Received = 6, ItemsIn = 7, Busy = 1.25, Pid = 4242, Skipped = 11, DeadLettered = 12,
        Outputs = new Dictionary<string, long> { ["squares"] = 9, ["ü€ \"q\""] = -1 },
        Queued = new Dictionary<string, long> { ["numbers"] = 10 },
        Capacity = new Dictionary<string, long> { ["numbers"] = 32768 },
    };

    /// <summary>One of each kind, with every field set to something a careless codec would get wrong.</summary>
    private static readonly ControlMessage[] All =
    {
        new Hello(7, 123456),
        new Ready(),
        new Poke { From = "host-1" },
        new StatusQuery(int.MaxValue),
        new StatusReport(5, new[] { Full, new ProcessReport { Index = 0, State = RunnerState.Ended } }),
        new BlockedQuery(9),
        new BlockedReport(9, "'a' waits to write stream 'x'\n(read by 'b', 5 of 5 items queued)"),
        new HaltMessage("db", "done \"quoted\"\n\u2028"),
        new HaltMessage("db", null),
        new FailureMessage("process1", "numbers", 1234567890123, "ü€", "boom", "InvalidOperationException", 2),
        new FailureMessage("process1", null, null, null, "boom", null),
        new StopMessage(Hard: true),
        new StopMessage(Hard: false),
        new ForceEnd(4),
        new StatsReport(new[] { Full }),
        new FinalReport(Array.Empty<ProcessReport>()),
        new CyclesClosed { From = "h" },
        new ReplicaMessage(ReplicaStep.Prepared, 2, "abcdef0123", 17, Ok: true, Lane: 1, Writer: 3),
        new ReplicaMessage(ReplicaStep.EndsSent, 0, "x"),
        new CheckpointRequest(long.MaxValue),
        new CheckpointStored(9_000_000_000, 11),
        new CheckpointRequest(7, Generation: 3),
        new CheckpointStored(8, 2, Generation: long.MaxValue),
        new Rollback(4, -1),
    };

    public static TheoryData<int> Kinds() => new(Enumerable.Range(0, All.Length));

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Every_kind_of_message_round_trips_with_every_field(int kind)
    {
        ControlMessage message = All[kind];
        byte[] json = ControlCodec.Write(message);
        ControlMessage back = ControlCodec.Read(json);

        Assert.Equal(message.GetType(), back.GetType());
        Assert.Equal(message.From, back.From);
        // Records with lists compare by reference: compare what they say, field by field, through a second trip.
        Assert.Equal(Encoding.UTF8.GetString(json), Encoding.UTF8.GetString(ControlCodec.Write(back)));
        switch (message)
        {
            case FailureMessage f:
                var g = (FailureMessage)back;
                Assert.Equal((f.Process, f.Stream, f.ItemIndex, f.Item, f.Message, f.ExceptionType, f.Group), (g.Process, g.Stream, g.ItemIndex, g.Item, g.Message, g.ExceptionType, g.Group));
                break;
            case StatusReport s:
                ProcessReport r = ((StatusReport)back).Processes[0];
                Assert.Equal((Full.Index, Full.State, Full.Sent, Full.Received, Full.ItemsIn, Full.Busy, Full.Pid), (r.Index, r.State, r.Sent, r.Received, r.ItemsIn, r.Busy, r.Pid));
                Assert.Equal(Full.Outputs, r.Outputs);
                Assert.Equal(Full.Queued, r.Queued);
                Assert.Equal(Full.Capacity, r.Capacity);
                Assert.Equal(s.Seq, ((StatusReport)back).Seq);
                break;
            case StatsReport or FinalReport:
                break;
            default:
                Assert.Equal(message, back);
                break;
        }
    }

    [Fact]
    public void Defaults_are_left_out_and_a_bare_message_reads_back()
    {
        Assert.Equal("{\"type\":\"ready\"}", Encoding.UTF8.GetString(ControlCodec.Write(new Ready())));
        Assert.IsType<Ready>(ControlCodec.Read("{\"type\":\"ready\"}"u8));
        Assert.Equal(new StopMessage(false), ControlCodec.Read("{\"type\":\"stop\",\"unknown\":[1,{\"a\":2}]}"u8));
    }

    [Fact]
    public void Every_runner_state_is_written_and_read_by_its_name()
    {
        // Written by hand (no reflection); a state added to the enum and not here would fail.
        foreach (RunnerState state in Enum.GetValues<RunnerState>())
        {
            Assert.Equal(state.ToString(), state.Name());
            Assert.Equal(state.ToString().ToLowerInvariant(), state.LowerName());
            Assert.Equal(state, RunnerStates.Parse(state.Name()));
        }
        Assert.Null(RunnerStates.Parse("running"));
    }

    [Theory]
    [InlineData("{\"type\":\"sta", "")]
    [InlineData("{\"type\":\"hello\",\"group\":\"x\"}", "group")]
    [InlineData("{\"type\":\"whatever\"}", "'whatever' is not one this runtime knows")]
    [InlineData("{\"group\":1}", "no type")]
    [InlineData("{\"type\":\"halt\"}", "needs 'process'")]
    [InlineData("{\"type\":\"status\",\"seq\":1}", "needs 'processes'")]
    [InlineData("{\"type\":\"status\",\"processes\":[{\"state\":\"3\"}]}", "'3' is not a RunnerState")]
    [InlineData("{\"type\":\"status\",\"processes\":[{\"state\":\"Running, Ended\"}]}", "is not a RunnerState")]
    [InlineData("{\"type\":\"replica\",\"step\":\"Vote\",\"instance\":\"a\"}", "'Vote' is not a ReplicaStep")]
    [InlineData("[1,2]", "Expected an object")]
    [InlineData("{\"type\":\"stats\",\"processes\":{}}", "not an array")]
    [InlineData("{\"type\":\"stats\",\"processes\":[{\"outputs\":{\"a\":1.5}}]}", "")]
    [InlineData("{\"type\":\"force-end\",\"index\":99999999999}", "")]
    public void Bad_messages_are_an_InvalidDataException_naming_what_is_wrong(string json, string says)
    {
        var e = Assert.Throws<InvalidDataException>(() => ControlCodec.Read(Encoding.UTF8.GetBytes(json)));
        Assert.Contains("Not a valid control message", e.Message);
        Assert.Contains(says, e.Message);
    }

    /// <summary>
    /// Mutated and random bytes: every outcome is a message or an InvalidDataException. Iterations:
    /// MILLRACE_FUZZ_ITERATIONS (default 20,000; docs/testing.md).
    /// </summary>
    [Fact]
    public void Mutated_and_random_bytes_never_throw_anything_but_InvalidDataException()
    {
        int iterations = Helpers.Iterations("MILLRACE_FUZZ_ITERATIONS", 20_000);
        var random = new Random(20261202);
        byte[][] seeds = All.Select(ControlCodec.Write).ToArray();
        int parsed = 0, refused = 0;
        for (int i = 0; i < iterations; i++)
        {
            byte[] input = Fuzz.Mutate(seeds[random.Next(seeds.Length)], random);
            try
            {
                ControlMessage message = ControlCodec.Read(input);
                Assert.NotNull(message);
                parsed++;
            }
            catch (InvalidDataException)
            {
                refused++;
            }
        }
        // Both outcomes happen: the mutations are neither all harmless nor all fatal.
        Assert.True(parsed > 0 && refused > 0, $"parsed {parsed}, refused {refused}");
    }
}
