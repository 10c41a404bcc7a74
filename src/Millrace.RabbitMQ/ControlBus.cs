using Millrace.Control;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Millrace.RabbitMQ;

/// <summary>
/// The run's control exchange (fanout): every host has a queue of its own on it. Halts, failures
/// and graceful stops reach every host; termination detection asks every host for its processes'
/// counts and ends quiet cycles wherever their processes are.
/// </summary>
internal sealed class ControlBus : IRunReporter, IStatusSource
{
    private readonly BrokerSession _session;
    private readonly string _exchange;
    private readonly string _host = Guid.NewGuid().ToString("N");
    private readonly RunContext _run;
    private readonly GraphShape _graph;
    private readonly RunHost _runHost;
    private readonly ProcessRunner?[] _runners;
    private readonly ProcessPort?[] _ports;
    private readonly bool _detectorHere;
    private readonly bool _cyclic;
    /// <summary>Stats and pokes waiting to be sent, at most: past it a new one is dropped (the next one says the same, newer).</summary>
    private const int MaxLossy = 1_000;

    /// <summary>Messages waiting to be sent, at most: past it the run fails by name (a halt, an error or a wave answer is never dropped).</summary>
    private const int MaxWaiting = 100_000;

    /// <summary>How long one message may wait for a broker that does not take it before the run fails by name.</summary>
    private static readonly TimeSpan SendFor = TimeSpan.FromSeconds(90);

    private readonly System.Threading.Channels.Channel<ControlMessage> _outbox = System.Threading.Channels.Channel.CreateUnbounded<ControlMessage>(
        new System.Threading.Channels.UnboundedChannelOptions { SingleReader = true });
    private int _waiting;
    private int _lossyWaiting;
    private readonly object _lock = new();
    private IChannel? _channel;
    private Task _sendLoop = Task.CompletedTask;
    private int _pokePending;
    private readonly TaskCompletionSource _cyclesClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The detecting host said every cycle is closed: hosts whose processes ended may leave.</summary>
    public Task CyclesClosed => _cyclesClosed.Task;

    public void AnnounceCyclesClosed() => Send(new CyclesClosed());
    private bool _stopFromElsewhere;

    // The wave being read: its number and the statuses received so far.
    private int _waveSeq;
    private ProcessStatus?[]? _wave;
    private string?[] _waveHosts = Array.Empty<string>();
    private TaskCompletionSource? _waveDone;

    public ControlBus(BrokerSession session, string prefix, RunHost host, ProcessPort?[] ports, bool detectorHere)
    {
        _ports = ports;
        _session = session;
        _exchange = Wire.ControlExchange(prefix);
        _run = host.Run;
        _runHost = host;
        _graph = host.Graph;
        _runners = host.Runners;
        _detectorHere = detectorHere;
        _cyclic = _graph.Cycles.Count > 0;
        _run.GracefulStopRequested += () =>
        {
            bool fromElsewhere;
            lock (_lock) fromElsewhere = _stopFromElsewhere;
            if (!fromElsewhere) Send(new StopMessage(Hard: false));
        };
    }

    public async Task StartAsync()
    {
        IConnection connection = await _session.ConnectionAsync();
        IChannel channel = await connection.CreateChannelAsync();
        // A queue of this host's own that outlives a lost connection (what is said meanwhile waits
        // in it), and goes two minutes after this host has gone.
        string name = $"{_exchange}.{_host}";
        QueueDeclareOk queue = await channel.QueueDeclareAsync(name, durable: false, exclusive: false, autoDelete: false,
            arguments: new Dictionary<string, object?> { ["x-expires"] = 120_000 });
        await channel.QueueBindAsync(queue.QueueName, _exchange, "");
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += (_, delivery) =>
        {
            ControlMessage? message = null;
            try
            {
                message = ControlCodec.Read(delivery.Body.Span);
            }
            catch (InvalidDataException e)
            {
                Notices.Say(_run.Options.Logger, $"ignored a control message that is not valid: {e.Message}");
            }
            if (message is not null) Handle(message);
            return Task.CompletedTask;
        };
        await channel.BasicConsumeAsync(queue.QueueName, autoAck: true, consumer);
        IChannel? previous;
        lock (_lock)
        {
            previous = _channel;
            _channel = channel;
        }
        previous?.Dispose();
        if (_sendLoop.IsCompleted) _sendLoop = Task.Run(SendLoopAsync);
    }

    public Task ReconnectedAsync() => StartAsync();

    public void Send(ControlMessage message)
    {
        bool lossy = message is StatsReport or Control.Poke;
        if (lossy && Interlocked.Increment(ref _lossyWaiting) > MaxLossy)
        {
            Interlocked.Decrement(ref _lossyWaiting);
            return;
        }
        if (Interlocked.Increment(ref _waiting) > MaxWaiting)
        {
            Interlocked.Decrement(ref _waiting);
            if (lossy) Interlocked.Decrement(ref _lossyWaiting);
            else FailToSend(message, $"{MaxWaiting} control messages are waiting for the broker");
            return;
        }
        if (!_outbox.Writer.TryWrite(message with { From = _host }))
        {
            // Closed: the host is leaving; only a halt or an error said this late would matter, and it was logged here.
            Interlocked.Decrement(ref _waiting);
            if (lossy) Interlocked.Decrement(ref _lossyWaiting);
        }
    }

    /// <summary>A message that matters could not be sent: the other hosts will not hear it, so this run cannot be trusted to end right.</summary>
    private void FailToSend(ControlMessage message, string why)
    {
        string processes = string.Join(", ", _runners.Where(r => r is not null).Select(r => r!.Name));
        Notices.Say(_run.Options.Logger, $"could not send a {message.GetType().Name} to the other hosts: {why}.");
        _ = Task.Run(() => _run.Fail(new ProcessFailure(processes, null, null, null,
            $"The control exchange of the run could not carry a {message.GetType().Name} to the other hosts ({why}); they would not hear of it, so the run stops here.", null),
            fromElsewhere: message is FailureMessage));
    }

    private async Task SendLoopAsync()
    {
        await foreach (ControlMessage message in _outbox.Reader.ReadAllAsync())
        {
            Interlocked.Decrement(ref _waiting);
            if (message is StatsReport or Control.Poke) Interlocked.Decrement(ref _lossyWaiting);
            byte[] body = ControlCodec.Write(message);
            // Bounded, but longer than a reconnection may take.
            DateTime deadline = DateTime.UtcNow + SendFor;
            bool sent = false;
            while (DateTime.UtcNow < deadline)
            {
                IChannel? channel;
                lock (_lock) channel = _channel;
                try
                {
                    if (channel is { IsOpen: true })
                    {
                        await channel.BasicPublishAsync(_exchange, "", false, new BasicProperties { ContentType = "application/json" }, body)
                            .AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                        sent = true;
                        break;
                    }
                }
                catch (Exception e) when (ProcessPort.IsConnectionFailure(e) || e is TimeoutException)
                {
                }
                await Task.Delay(100);
            }
            if (!sent && message is not (StatsReport or Control.Poke)) FailToSend(message, $"the broker did not take it within {SendFor.TotalSeconds:0} s");
        }
    }

    public async Task CloseAsync()
    {
        _outbox.Writer.TryComplete();
        await Task.WhenAny(_sendLoop, Task.Delay(TimeSpan.FromSeconds(2)));
        IChannel? channel;
        lock (_lock) channel = _channel;
        if (channel is null) return;
        try
        {
            await channel.CloseAsync();
        }
        catch (Exception e) when (ProcessPort.IsConnectionFailure(e))
        {
        }
        channel.Dispose();
    }

    private void Handle(ControlMessage message)
    {
        bool mine = message.From == _host;
        switch (message)
        {
            case HaltMessage halt when !mine:
                _run.Halt(halt.Process, halt.Reason, fromElsewhere: true);
                break;
            case FailureMessage failure when !mine:
                _run.Fail(failure.ToFailure(), fromElsewhere: true);
                break;
            case StopMessage when !mine:
                lock (_lock) _stopFromElsewhere = true;
                _run.RequestStop();
                break;
            case StatusQuery query:
                Volatile.Write(ref _pokePending, 0);
                ReplyStatus(query.Seq);
                break;
            case StatusReport report when _detectorHere:
                TakeStatus(report);
                break;
            case ReplicaMessage replica:
                if (replica.Process >= 0 && replica.Process < _ports.Length) _ports[replica.Process]?.Protocol?.OnControl(replica);
                break;
            case StatsReport stats when !mine && message.From is { } from:
                lock (_remote) _remote[from] = stats.Processes;
                break;
            case Control.CyclesClosed:
                _run.TerminationDetected = true;
                _cyclesClosed.TrySetResult();
                break;
            case Control.Poke when _detectorHere:
                _run.PokeDetector();
                break;
            case CheckpointRequest or CheckpointStored or Rollback:
                Checkpoints?.Invoke(message);
                break;
            case ForceEnd forceEnd:
                if (forceEnd.Process >= 0 && forceEnd.Process < _runners.Length && _runners[forceEnd.Process] is { } runner)
                    runner.ForceEnd();
                break;
        }
    }

    private readonly Dictionary<string, IReadOnlyList<ProcessReport>> _remote = new();

    /// <summary>Checkpoint requests, parts stored and rollbacks (with checkpoints on), on the bus's thread.</summary>
    public Action<ControlMessage>? Checkpoints { get; set; }

    /// <summary>Tells the other hosts how this host's processes are doing (their metrics and views show the whole run).</summary>
    public void PublishStats(RunSample local)
    {
        var reports = new List<ProcessReport>();
        foreach (ProcessSample p in local.Processes)
        {
            int index = IndexOf(p.Name);
            if (index < 0) continue;
            var queues = local.Queues.Where(q => q.Reader == p.Name).ToList();
            reports.Add(new ProcessReport
            {
                Index = index,
                State = Enum.TryParse(p.State, ignoreCase: true, out RunnerState state) ? state : RunnerState.Running,
                ItemsIn = p.ItemsIn,
                Outputs = p.Outputs.ToDictionary(),
                Busy = p.BusySeconds,
                Pid = p.OsProcessId,
                Skipped = p.ItemsSkipped,
                DeadLettered = p.ItemsDeadLettered,
                Queued = queues.ToDictionary(q => q.Stream, q => q.Queued),
                Capacity = queues.ToDictionary(q => q.Stream, q => q.Capacity),
            });
        }
        Send(new StatsReport(reports));
    }

    private int IndexOf(string process)
    {
        return _graph.IndexOf(process);
    }

    /// <summary>
    /// The whole run as this host knows it: its own processes, and the others' as they last reported;
    /// instances of one process on several hosts (replicas) are added up.
    /// </summary>
    public RunSample Combine(RunSample local)
    {
        List<ProcessReport> remote;
        lock (_remote) remote = _remote.Values.SelectMany(v => v).Where(r => r.Index >= 0 && r.Index < _graph.Processes.Count).ToList();
        if (remote.Count == 0) return local;
        string Name(ProcessReport r) => _graph.Processes[r.Index].Name;
        var processes = local.Processes.Concat(remote.Select(r => new ProcessSample(Name(r), r.ItemsIn, r.Outputs?.Values.Sum() ?? 0, 0, r.Busy,
                r.State.ToString().ToLowerInvariant(), r.Pid, r.Outputs ?? new Dictionary<string, long>()) { ItemsSkipped = r.Skipped, ItemsDeadLettered = r.DeadLettered }))
            .GroupBy(p => p.Name)
            // Replicas: counts add up; busy time is per instance (an average), so "1" still means "always busy".
            .Select(g => new ProcessSample(g.Key, g.Sum(p => p.ItemsIn), g.Sum(p => p.ItemsOut), local.Errors.Count(e => e.Process == g.Key),
                g.Sum(p => p.BusySeconds) / g.Count(), g.Any(p => p.State != "ended") ? g.First(p => p.State != "ended").State : "ended", g.First().OsProcessId,
                g.SelectMany(p => p.Outputs).GroupBy(kv => kv.Key).ToDictionary(o => o.Key, o => o.Sum(kv => kv.Value)))
            {
                Total = _graph.Processes[IndexOf(g.Key)].ItemCount,
                ItemsSkipped = g.Sum(p => p.ItemsSkipped),
                ItemsDeadLettered = g.Sum(p => p.ItemsDeadLettered),
            })
            .OrderBy(p => IndexOf(p.Name))
            .ToList();
        var queues = local.Queues.Concat(remote.SelectMany(r => (r.Queued ?? new Dictionary<string, long>()).Select(q =>
                new QueueSample(q.Key, Name(r), q.Value, r.Capacity?.GetValueOrDefault(q.Key) ?? 0))))
            .GroupBy(q => (q.Stream, q.Reader))
            .Select(g => new QueueSample(g.Key.Stream, g.Key.Reader, g.Sum(q => q.Queued), g.Sum(q => q.Capacity)))
            .ToList();
        return local with { Processes = processes, Queues = queues };
    }

    private void ReplyStatus(int seq)
    {
        var reports = new List<ProcessReport>();
        for (int p = 0; p < _runners.Length; p++)
        {
            if (_runners[p] is not { } runner) continue;
            ProcessStatus status = runner.Status;
            // Waiting for the broker to confirm is not being stuck; being refused because a queue is full is.
            RunnerState state = status.State == RunnerState.Blocked && !_ports[p]!.Refusing ? RunnerState.Running : status.State;
            // Its inputs are over and its instances agree to end it: it will end its outputs without receiving anything.
            if (state == RunnerState.Passive && _ports[p]!.Protocol is { Agreeing: true }) state = RunnerState.Running;
            reports.Add(new ProcessReport { Index = p, State = state, Sent = status.Sent, Received = status.Received });
        }
        Send(new StatusReport(seq, reports));
    }

    private void TakeStatus(StatusReport message)
    {
        TaskCompletionSource? done = null;
        lock (_lock)
        {
            if (message.Seq != _waveSeq || _wave is null) return;
            foreach (ProcessReport report in message.Processes)
            {
                int p = report.Index;
                if (p < 0 || p >= _wave.Length) continue;
                if (_waveHosts[p] is { } other && other != message.From)
                {
                    string name = _graph.Processes[p].Name;
                    _ = Task.Run(() => _run.Fail(new ProcessFailure(name, null, null, null,
                        $"Process '{name}' runs on two hosts, but it is in a cycle (or the graph has cycles and it answers their termination detection): " +
                        "processes in graphs with cycles cannot have replicas. Start it in one place only.", null)));
                    return;
                }
                _waveHosts[p] = message.From;
                _wave[p] = new ProcessStatus(report.State, report.Sent, report.Received);
            }
            if (_wave.All(s => s.HasValue)) done = _waveDone;
        }
        done?.TrySetResult();
    }

    // ---------------------------------------------------------------- IStatusSource (on the detecting host)

    public async ValueTask<WaveReading> ReadAsync(CancellationToken cancellationToken)
    {
        TaskCompletionSource done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        int seq;
        lock (_lock)
        {
            seq = ++_waveSeq;
            _wave = new ProcessStatus?[_graph.Processes.Count];
            _waveHosts = new string?[_graph.Processes.Count];
            _waveDone = done;
        }
        Send(new StatusQuery(seq));
        try
        {
            await done.Task.WaitAsync(TimeSpan.FromSeconds(2), cancellationToken);
        }
        catch (TimeoutException)
        {
            // Some process is not running anywhere yet (or its host is slow): the run is not quiet.
            // Look again in a while, even if nobody pokes: the missing host may be starting up.
            _ = Task.Delay(500, cancellationToken).ContinueWith(_ => _run.PokeDetector(), TaskScheduler.Default);
        }
        lock (_lock)
        {
            ProcessStatus[] statuses = _wave!.Select(s => s ?? new ProcessStatus(RunnerState.Running, 0, 0)).ToArray();
            _wave = null;
            return new WaveReading(statuses);
        }
    }

    public void ForceEnd(int process) => Send(new ForceEnd(process));

    public ValueTask<string> DescribeBlockedAsync(CancellationToken cancellationToken) =>
        new(_runHost.DescribeBlocked() is { Length: > 0 } here ? here : "(processes on other hosts)");

    // ---------------------------------------------------------------- IRunReporter

    public void Poke()
    {
        // The detecting host's own processes poke its detector directly; others send one poke until the next wave.
        if (_cyclic && !_detectorHere && Interlocked.Exchange(ref _pokePending, 1) == 0) Send(new Poke());
    }

    public void Halted(string process, string? reason)
    {
        if (!_goingBack) Send(new HaltMessage(process, reason));
    }

    public void Failed(ProcessFailure failure)
    {
        if (!_goingBack) Send(FailureMessage.Of(failure));
    }

    private volatile bool _goingBack;

    /// <summary>The run goes back to a checkpoint: what this host's processes do while they stop (an error a stop causes) is not the other hosts' concern.</summary>
    public void GoingBack() => _goingBack = true;
}
