using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using Millrace.Placements.Processes;

namespace Millrace.Tests;

/// <summary>The processes placement's control messages, written and read by hand: every field survives the trip.</summary>
public class ControlJsonTests
{
    [Fact]
    public void Every_field_round_trips()
    {
        var message = new ControlMessage
        {
            Type = "final", Group = 3, Pid = 4242, Seq = 7, Process = 2, Hard = true, Signature = "sig",
            Name = "process1", Reason = "done \"quoted\"\n", Stream = "numbers", ItemIndex = 1234567890123, Item = "ü€",
            Message = "boom", Exception = "InvalidOperationException", Text = "waits",
            Processes = new List<ProcessReport>
            {
                new() { Index = 0, State = RunnerState.Ended, Sent = 5, Received = 6, ItemsIn = 7, Outputs = new() { ["squares"] = 9 } },
                new() { Index = 1, State = RunnerState.Blocked },
            },
        };
        ControlMessage back = ControlJson.Read(ControlJson.Write(message));
        Assert.Equal(
            (message.Type, message.Group, message.Pid, message.Seq, message.Process, message.Hard, message.Signature, message.Name, message.Reason,
             message.Stream, message.ItemIndex, message.Item, message.Message, message.Exception, message.Text),
            (back.Type, back.Group, back.Pid, back.Seq, back.Process, back.Hard, back.Signature, back.Name, back.Reason,
             back.Stream, back.ItemIndex, back.Item, back.Message, back.Exception, back.Text));
        Assert.Equal(2, back.Processes!.Count);
        Assert.Equal((0, RunnerState.Ended, 5L, 6L, 7L), (back.Processes[0].Index, back.Processes[0].State, back.Processes[0].Sent, back.Processes[0].Received, back.Processes[0].ItemsIn));
        Assert.Equal(9, back.Processes[0].Outputs!["squares"]);
        Assert.Equal((1, RunnerState.Blocked, (Dictionary<string, long>?)null), (back.Processes[1].Index, back.Processes[1].State, back.Processes[1].Outputs));
    }

    [Fact]
    public void Defaults_are_left_out_and_a_bare_message_reads_back()
    {
        byte[] json = ControlJson.Write(new ControlMessage { Type = "ready" });
        Assert.Equal("{\"type\":\"ready\"}", System.Text.Encoding.UTF8.GetString(json));
        ControlMessage back = ControlJson.Read(json);
        Assert.Equal("ready", back.Type);
        Assert.Null(back.Processes);
        Assert.Null(back.ItemIndex);
    }

    [Fact]
    public void A_truncated_message_is_a_JSON_error_not_a_hang()
    {
        Assert.ThrowsAny<System.Text.Json.JsonException>(() => ControlJson.Read("{\"type\":\"sta"u8));
    }
}
