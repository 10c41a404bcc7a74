using Millrace.RabbitMQ;
using Xunit;

namespace Millrace.Tests;

/// <summary>
/// The broker placement's acknowledger alone, without a broker: a message is acknowledged only when
/// everything the process had accepted for publishing by the time it was handled is confirmed, in the
/// order handled, every copy once; copies of an acknowledged message are acknowledged at once and
/// never handled again; tags of an older channel are never sent.
/// </summary>
public class AcknowledgerTests
{
    private sealed class FakePublisher
    {
        public long Accepted;
    }

    [Fact]
    public void A_handled_message_waits_for_the_confirms_of_what_it_produced()
    {
        var publisher = new FakePublisher();
        var acks = new Acknowledger(() => publisher.Accepted);
        Assert.Equal(Acknowledger.Taken.New, acks.Take("m1", false, 1, 1, out PendingAck? m1));
        publisher.Accepted = 3; // handling m1 produced three messages
        m1!.Handled();
        Assert.False(acks.NextAck(1, out _));
        acks.Confirmed(2);
        Assert.False(acks.NextAck(1, out _));
        acks.Confirmed(3);
        Assert.True(acks.NextAck(1, out ulong tag));
        Assert.Equal(1ul, tag);
        Assert.False(acks.NextAck(1, out _));
    }

    [Fact]
    public void Copies_are_acknowledged_together_and_a_late_copy_is_acknowledged_without_handling()
    {
        var publisher = new FakePublisher();
        var acks = new Acknowledger(() => publisher.Accepted);
        Assert.Equal(Acknowledger.Taken.New, acks.Take("m1", false, 1, 1, out PendingAck? m1));
        Assert.Equal(Acknowledger.Taken.Copy, acks.Take("m1", false, 2, 1, out PendingAck? copy));
        Assert.Null(copy);
        m1!.Handled();
        Assert.Equal(new ulong[] { 1, 2 }, Drain(acks, 1));
        Assert.Equal(Acknowledger.Taken.Done, acks.Take("m1", false, 7, 1, out _));
        Assert.Equal(new ulong[] { 7 }, Drain(acks, 1));
    }

    [Fact]
    public void Tags_of_an_older_channel_are_dropped_and_newer_ones_wait()
    {
        var publisher = new FakePublisher();
        var acks = new Acknowledger(() => publisher.Accepted);
        acks.Take("old", false, 5, 1, out PendingAck? old);
        acks.Take("new", false, 1, 2, out PendingAck? young);
        old!.Handled();
        young!.Handled();
        // Looking with epoch 1: the epoch-1 tag goes, the epoch-2 one is not sent on the old channel.
        Assert.Equal(new ulong[] { 5 }, Drain(acks, 1));
        Assert.False(acks.Sent);
        // The channel of epoch 2 is current: its tag goes now.
        Assert.Equal(new ulong[] { 1 }, Drain(acks, 2));
        // A channel of epoch 3 drops whatever was left of older channels.
        acks.Take("x", false, 9, 2, out PendingAck? x);
        x!.Handled();
        Assert.Empty(Drain(acks, 3));
        Assert.True(acks.Sent);
    }

    [Fact]
    public void End_marks_are_held_until_the_process_ends()
    {
        var publisher = new FakePublisher();
        var acks = new Acknowledger(() => publisher.Accepted);
        acks.Take("end", true, 1, 1, out PendingAck? end);
        acks.Take("data", false, 2, 1, out PendingAck? data);
        end!.Handled();
        Assert.False(acks.Quiet); // data is taken, not handled
        data!.Handled();
        Assert.True(acks.Quiet);
        Assert.Equal(new ulong[] { 2 }, Drain(acks, 1));
        Assert.Equal(0, acks.AcknowledgeEnds(acknowledge: false));
        Assert.Empty(Drain(acks, 1));
        Assert.Equal(0, acks.AcknowledgeEnds(acknowledge: true));
        Assert.Equal(new ulong[] { 1 }, Drain(acks, 1));
    }

    [Fact]
    public void A_message_given_back_is_returned_not_acknowledged_and_can_be_taken_again()
    {
        var publisher = new FakePublisher();
        var acks = new Acknowledger(() => publisher.Accepted);
        acks.Take("m", false, 3, 1, out PendingAck? m);
        acks.GiveBack(m!);
        Assert.True(acks.NextReturn(1, out ulong returned));
        Assert.Equal(3ul, returned);
        Assert.Empty(Drain(acks, 1));
        Assert.Equal(Acknowledger.Taken.New, acks.Take("m", false, 4, 1, out _));
    }

    /// <summary>
    /// Random interleavings of taking, copies, handling and confirms (confirm callbacks may also come
    /// late and out of order): every message is acknowledged exactly once per copy, in the order
    /// handled, and never before the confirms it needs.
    /// </summary>
    [Fact]
    public void Random_interleavings_keep_order_and_never_acknowledge_early()
    {
        int runs = Helpers.Iterations("MILLRACE_PROPERTY_RUNS", 300);
        for (int seed = 0; seed < runs; seed++)
        {
            var random = new Random(seed);
            var publisher = new FakePublisher();
            var acks = new Acknowledger(() => publisher.Accepted);
            long confirmed = 0;
            ulong nextTag = 1;
            var taken = new List<(string Id, PendingAck Pending)>();
            var tagsOf = new Dictionary<string, List<ulong>>();
            var requiredOf = new Dictionary<ulong, long>();
            var handledOrder = new List<string>();
            var ackedTags = new List<ulong>();
            int messages = random.Next(1, 60);
            int nextMessage = 0, nextHandled = 0;
            while (nextHandled < messages || ackedTags.Count < tagsOf.Values.Sum(t => t.Count))
            {
                switch (random.Next(6))
                {
                    case 0 when nextMessage < messages:
                    {
                        string id = $"m{nextMessage++}";
                        ulong tag = nextTag++;
                        Assert.Equal(Acknowledger.Taken.New, acks.Take(id, false, tag, 1, out PendingAck? p));
                        taken.Add((id, p!));
                        tagsOf[id] = new List<ulong> { tag };
                        break;
                    }
                    case 1 when taken.Count > nextHandled:
                    {
                        // A copy of a message still held.
                        var (id, _) = taken[random.Next(nextHandled, taken.Count)];
                        ulong tag = nextTag++;
                        Assert.Equal(Acknowledger.Taken.Copy, acks.Take(id, false, tag, 1, out _));
                        tagsOf[id].Add(tag);
                        break;
                    }
                    case 2 when taken.Count > nextHandled:
                    {
                        // The process handles the next message in order; it produced 0..3 messages.
                        publisher.Accepted += random.Next(4);
                        var (id, pending) = taken[nextHandled++];
                        foreach (ulong tag in tagsOf[id]) requiredOf[tag] = publisher.Accepted;
                        handledOrder.Add(id);
                        pending.Handled();
                        break;
                    }
                    case 3:
                    {
                        // The broker confirms some or all; callbacks can also repeat an older figure.
                        long upTo = random.Next(2) == 0 ? publisher.Accepted : random.NextInt64(0, publisher.Accepted + 1);
                        acks.Confirmed(upTo);
                        confirmed = Math.Max(confirmed, upTo);
                        break;
                    }
                    default:
                        while (acks.NextAck(1, out ulong tag))
                        {
                            Assert.True(requiredOf.TryGetValue(tag, out long required), $"seed {seed}: tag {tag} acknowledged before it was handled");
                            Assert.True(required <= confirmed, $"seed {seed}: tag {tag} acknowledged needing {required} with only {confirmed} confirmed");
                            ackedTags.Add(tag);
                        }
                        if (nextHandled == messages && nextMessage == messages) acks.Confirmed(confirmed = publisher.Accepted);
                        break;
                }
            }
            // Exactly once per copy, and in the order handled.
            Assert.Equal(ackedTags.Count, ackedTags.Distinct().Count());
            Assert.Equal(handledOrder.SelectMany(id => tagsOf[id]).Order(), ackedTags.Order());
            var firstAckOf = handledOrder.Select(id => ackedTags.IndexOf(tagsOf[id][0])).ToList();
            Assert.True(firstAckOf.SequenceEqual(firstAckOf.Order()), $"seed {seed}: acknowledged out of the order handled");
            Assert.True(acks.Quiet);
        }
    }

    private static List<ulong> Drain(Acknowledger acks, long epoch)
    {
        var tags = new List<ulong>();
        while (acks.NextAck(epoch, out ulong tag)) tags.Add(tag);
        return tags;
    }
}
