using Millrace.Codecs;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Millrace.RabbitMQ;

/// <summary>
/// One hosted process's link to the broker: a <see cref="Publisher"/> of its outputs (publisher
/// confirms), a <see cref="Consumer"/> of its input queues (bounded prefetch), and an
/// <see cref="Acknowledger"/> between them. A message taken is acknowledged only after the process
/// has handled its items and the broker has confirmed every message they produced (at-least-once:
/// a process killed at any point loses nothing).
/// </summary>
internal sealed class ProcessPort
{
    /// <summary>The longest any one call to the broker may take before its channel is given up and made again.</summary>
    private static readonly TimeSpan OperationTimeout = TimeSpan.FromSeconds(10);

    private readonly BrokerSession _session;
    private readonly RunContext _run;
    private readonly Publisher _publisher;
    private readonly Acknowledger _acknowledger;
    private readonly Consumer _consumer;
    private readonly object _lock = new();
    private readonly List<Outgoing> _heldEnds = new();
    private volatile bool _closed;
    private Task _ackLoop = Task.CompletedTask;

    public ProcessPort(ProcessRunner runner, int index, BrokerSession session, RunContext run, int maxInFlight, ushort prefetch)
    {
        Runner = runner;
        Index = index;
        _session = session;
        _run = run;
        _acknowledger = new Acknowledger(() => _publisher!.Accepted);
        _publisher = new Publisher(runner.Name, session, maxInFlight, OperationTimeout, _acknowledger.Confirmed, run.Poke);
        _consumer = new Consumer(this, session, _acknowledger, run, prefetch, OperationTimeout);
    }

    public ProcessRunner Runner { get; }
    public int Index { get; }
    public string Name => Runner.Name;

    /// <summary>This incarnation of the process (its message ids start with it).</summary>
    public string Instance => _publisher.Incarnation;

    /// <summary><see cref="Instance"/> as the bytes it is the hex of (the compact envelope's incarnation).</summary>
    public byte[] InstanceBytes => _publisher.IncarnationBytes;

    /// <summary>
    /// With checkpoints on, the run's generation this port belongs to (-1: checkpoints off): its messages say it,
    /// and messages of older generations are dropped.
    /// </summary>
    public long Generation { get; init; } = -1;

    /// <summary>A message of a newer generation arrived: the run went back to a checkpoint, and this host must too.</summary>
    public Action<long>? NewerGeneration { get; init; }

    /// <summary>The run's dead-letter exchange, where messages the process cannot read are moved.</summary>
    public required string DeadLetterExchange { get; init; }

    /// <summary>What the process does with a message it cannot read.</summary>
    public PoisonMessages PoisonMessages { get; init; }

    /// <summary>Moves a message the process could not read to the dead-letter queue: <paramref name="pending"/> is acknowledged once that is confirmed.</summary>
    public void SetAside(Outgoing message, PendingAck pending)
    {
        _publisher.Accept(message);
        _acknowledger.SetAside(pending);
    }

    /// <summary>Set for processes with inputs outside cycles: end marks go through the instances' agreement.</summary>
    public EndProtocol? Protocol { get; set; }

    public int EndsNeeded => _consumer.Inputs.Sum(i => i.Stream.Writers.Count);

    public void AddInput(Lane lane, string queue, StreamShape stream, BatchCodec codec) => _consumer.AddInput(lane, queue, stream, codec);

    public async Task StartAsync()
    {
        await _consumer.SetUpAsync();
        _publisher.Start();
        _ackLoop = Task.Run(() => _acknowledger.RunAsync(() => _consumer.Current, () => _closed, OperationTimeout));
    }

    /// <summary>Whether a new message fits within the bound; if not, <paramref name="writer"/> is woken once one is confirmed.</summary>
    public bool HasRoom(ProcessRunner writer) => _publisher.HasRoom(writer);

    /// <summary>Takes a message for publishing.</summary>
    public void Accept(Outgoing message) => _publisher.Accept(message);

    /// <summary>The broker refuses this process's messages (a reader's queue is full): the process is blocked, not busy.</summary>
    public bool Refusing => _publisher.Refusing;

    public string Fill => _publisher.Fill;

    /// <summary>For MILLRACE_DEBUG=1: where this process's messages are.</summary>
    public string Describe() =>
        $"{Name}: {_publisher.Describe()}, {_acknowledger.Describe()}, {_consumer.Describe()}, connection {_session.Generation}, state {Runner.Status.State}";

    /// <summary>
    /// An end mark of this process: with several instances only one sends them, after the others
    /// have their outputs confirmed (their items must not arrive after it).
    /// </summary>
    public void AcceptEnd(Outgoing message)
    {
        if (Protocol is not { } protocol)
        {
            Accept(message);
            return;
        }
        if (!protocol.SendsEnds) return;
        bool first;
        lock (_lock)
        {
            first = _heldEnds.Count == 0;
            _heldEnds.Add(message);
        }
        // Not on the process thread's context: that thread is about to end.
        if (first) _ = Task.Run(ReleaseEndsAsync);
    }

    private async Task ReleaseEndsAsync()
    {
        // Bounded: an instance that died after agreeing cannot hold the end for ever.
        await Protocol!.WaitForOthersAsync();
        Outgoing[] ends;
        lock (_lock)
        {
            ends = _heldEnds.ToArray();
            _heldEnds.Clear();
        }
        foreach (Outgoing end in ends) Accept(end);
    }

    /// <summary>Stops taking messages (what was taken stays taken): the process's other instances are about to agree to end.</summary>
    /// <returns>False when what was sent before may still be on its way to the process (see <see cref="Consumer.PauseAsync"/>).</returns>
    public Task<bool> PauseConsumingAsync() => _consumer.PauseAsync();

    /// <summary>Replicas share this process's queues: messages are handed over as taken (each instance sees part of every writer's order).</summary>
    public void Unordered() => _consumer.Unordered();

    public Task ResumeConsumingAsync() => _consumer.ResumeAsync();

    /// <summary>Every input queue has no message waiting and no consumer.</summary>
    public Task<bool> QueuesQuietAsync() => _consumer.QueuesQuietAsync();

    /// <summary>Nothing taken is left to handle or acknowledge, and the process waits for input.</summary>
    public bool Idle => _acknowledger.Quiet && Runner.Status.State == RunnerState.Passive;

    /// <summary>All inputs of the process are over (its instances agreed): its lanes end behind what is queued.</summary>
    public void EndInputs()
    {
        foreach (var input in _consumer.Inputs)
            for (int w = 0; w < input.Stream.Writers.Count; w++)
            {
                bool counted;
                lock (_lock) counted = _endsHeldHere.Contains((input.Lane.Index, w));
                Runner.DeliverEnd(input.Lane, w, counted: counted);
            }
    }

    private readonly HashSet<(int Lane, int Writer)> _endsHeldHere = new();

    /// <summary>This instance took the end mark of writer <paramref name="writer"/> of a lane and holds it for the end protocol.</summary>
    public void EndHeld(int lane, int writer)
    {
        lock (_lock)
        {
            if (!_endsHeldHere.Add((lane, writer))) return;
        }
        Runner.CountHeldEnd();
    }

    /// <summary>The session lost its connection: calls under way on its channels end now.</summary>
    public void ConnectionLost()
    {
        _publisher.ConnectionLost();
        _acknowledger.Wake();
    }

    /// <summary>After a reconnection: consume again (the broker redelivers what was not acknowledged) and publish again.</summary>
    public async Task ReconnectedAsync()
    {
        await _consumer.SetUpAsync();
        _publisher.Wake();
        _acknowledger.Wake();
    }

    /// <summary>
    /// After the process ended normally: waits until the broker confirmed everything it published
    /// (its end marks included), then acknowledges what it took, end marks too. Bounded by <paramref name="timeout"/>.
    /// </summary>
    public async Task<bool> FinishAsync(bool ended, TimeSpan timeout)
    {
        DateTime deadline = DateTime.UtcNow + timeout;
        bool done = false;
        while (DateTime.UtcNow < deadline)
        {
            bool held;
            lock (_lock) held = _heldEnds.Count > 0;
            done = _publisher.AllConfirmed && !held;
            if (done) break;
            await Task.Delay(5);
        }
        if (done && ended)
        {
            // With other instances, the end marks held here are acknowledged only once the
            // process's own end marks are out (else they go back to the queues for a restart).
            bool acknowledgeEnds = Protocol is null || await Protocol.CompletedAsync();
            int left = _acknowledger.AcknowledgeEnds(acknowledgeEnds);
            if (left > 0)
                Notices.Say(_run.Options.Logger, $"process '{Name}' ended holding {left} messages it had not handled; they go back to its queues.");
        }
        // Let the acknowledgements leave.
        while (DateTime.UtcNow < deadline && !_acknowledger.Sent) await Task.Delay(5);
        return done;
    }

    public async Task CloseAsync()
    {
        _closed = true;
        _acknowledger.Wake();
        await Task.WhenAny(_ackLoop, Task.Delay(TimeSpan.FromSeconds(5)));
        await _publisher.CloseAsync();
        await _consumer.CloseAsync();
    }

    /// <summary>Closes a channel, if any, whatever state its connection is in.</summary>
    internal static async Task CloseChannelAsync(IChannel? channel)
    {
        if (channel is null) return;
        try
        {
            await channel.CloseAsync();
        }
        catch (Exception e) when (IsConnectionFailure(e))
        {
        }
        channel.Dispose();
    }

    public static bool IsConnectionFailure(Exception e) =>
        e is AlreadyClosedException or OperationInterruptedException or IOException or ObjectDisposedException or
            System.Net.Sockets.SocketException or OperationCanceledException or System.Threading.Channels.ChannelClosedException;
}
