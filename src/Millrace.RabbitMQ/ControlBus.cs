using System.Text.Json;
using System.Text.Json.Serialization;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Millrace.RabbitMQ;

/// <summary>What the hosts of one run tell each other on the control exchange.</summary>
internal sealed class ControlMessage
{
    public string Type { get; set; } = "";
    public string Host { get; set; } = "";
    public string? Process { get; set; }
    public string? Reason { get; set; }
    public string? Message { get; set; }
    public string? Stream { get; set; }
    public long? ItemIndex { get; set; }
    public string? Item { get; set; }
    public string? Exception { get; set; }
    public int Seq { get; set; }
    public int Index { get; set; }
    public List<int[]>? Indexes { get; set; }
    public List<long[]>? Counts { get; set; }
    public string? Instance { get; set; }
    public int Round { get; set; }
    public bool Ok { get; set; }
    public int Lane { get; set; }
    public int Writer { get; set; }
    public List<HostStats>? Stats { get; set; }
}

/// <summary>One process on one host, as that host reports it for the others' metrics and views (every half second).</summary>
internal sealed class HostStats
{
    public string Process { get; set; } = "";
    public long ItemsIn { get; set; }
    public long ItemsOut { get; set; }
    public double Busy { get; set; }
    public string State { get; set; } = "";
    public int Pid { get; set; }
    public Dictionary<string, long>? Outputs { get; set; }
    public List<HostQueue>? Queues { get; set; }
}

internal sealed class HostQueue
{
    public string Stream { get; set; } = "";
    public long Queued { get; set; }
    public long Capacity { get; set; }
}

/// <summary>
/// The run's control exchange (fanout): every host has a queue of its own on it. Halts, failures
/// and graceful stops reach every host; termination detection asks every host for its processes'
/// counts and ends quiet cycles wherever their processes are.
/// </summary>
internal sealed class ControlBus : IRunReporter, IStatusSource
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private readonly BrokerSession _session;
    private readonly string _exchange;
    private readonly string _host = Guid.NewGuid().ToString("N");
    private readonly RunContext _run;
    private readonly GraphModel _model;
    private readonly ProcessRunner?[] _runners;
    private readonly ProcessPort?[] _ports;
    private readonly bool _detectorHere;
    private readonly bool _cyclic;
    private readonly System.Threading.Channels.Channel<ControlMessage> _outbox =
        System.Threading.Channels.Channel.CreateBounded<ControlMessage>(new System.Threading.Channels.BoundedChannelOptions(10_000)
        {
            FullMode = System.Threading.Channels.BoundedChannelFullMode.DropOldest,
        });
    private readonly object _lock = new();
    private IChannel? _channel;
    private Task _sendLoop = Task.CompletedTask;
    private int _pokePending;
    private readonly TaskCompletionSource _cyclesClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The detecting host said every cycle is closed: hosts whose processes ended may leave.</summary>
    public Task CyclesClosed => _cyclesClosed.Task;

    public void AnnounceCyclesClosed() => Send(new ControlMessage { Type = "closed" });
    private bool _stopFromElsewhere;

    // The wave being read: its number and the statuses received so far.
    private int _waveSeq;
    private ProcessStatus?[]? _wave;
    private string?[] _waveHosts = Array.Empty<string>();
    private TaskCompletionSource? _waveDone;

    public ControlBus(BrokerSession session, string prefix, RunContext run, GraphModel model, ProcessRunner?[] runners, ProcessPort?[] ports, bool detectorHere)
    {
        _ports = ports;
        _session = session;
        _exchange = Wire.ControlExchange(prefix);
        _run = run;
        _model = model;
        _runners = runners;
        _detectorHere = detectorHere;
        _cyclic = model.Cycles.Count > 0;
        run.GracefulStopRequested += () =>
        {
            bool fromElsewhere;
            lock (_lock) fromElsewhere = _stopFromElsewhere;
            if (!fromElsewhere) Send(new ControlMessage { Type = "stop" });
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
                message = JsonSerializer.Deserialize<ControlMessage>(delivery.Body.Span, Json);
            }
            catch (JsonException e)
            {
                Log.Notice(_run.Options.Logger, "broker", $"ignored a control message that is not valid: {e.Message}");
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
        message.Host = _host;
        _outbox.Writer.TryWrite(message);
    }

    private async Task SendLoopAsync()
    {
        await foreach (ControlMessage message in _outbox.Reader.ReadAllAsync())
        {
            byte[] body = JsonSerializer.SerializeToUtf8Bytes(message, Json);
            // Bounded, but longer than a reconnection may take.
            DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
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
                        break;
                    }
                }
                catch (Exception e) when (ProcessPort.IsConnectionFailure(e) || e is TimeoutException)
                {
                }
                await Task.Delay(100);
            }
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
        bool mine = message.Host == _host;
        switch (message.Type)
        {
            case "halt" when !mine:
                _run.Halt(message.Process ?? "?", message.Reason, fromElsewhere: true);
                break;
            case "error" when !mine:
                _run.Fail(new ProcessFailure(message.Process ?? "?", message.Stream, message.ItemIndex, message.Item,
                    message.Message ?? "A process on another host failed.", null, message.Exception), fromElsewhere: true);
                break;
            case "stop" when !mine:
                lock (_lock) _stopFromElsewhere = true;
                _run.RequestStop();
                break;
            case "status?":
                Volatile.Write(ref _pokePending, 0);
                ReplyStatus(message.Seq);
                break;
            case "status" when _detectorHere:
                TakeStatus(message);
                break;
            case "member" or "end-seen" or "prepare" or "prepared" or "finish" or "resume" or "finished" or "ends-sent":
                if (message.Index >= 0 && message.Index < _ports.Length) _ports[message.Index]?.Protocol?.OnControl(message);
                break;
            case "stats" when !mine:
                if (message.Stats is { } stats) lock (_remote) _remote[message.Host] = stats;
                break;
            case "closed":
                _run.TerminationDetected = true;
                _cyclesClosed.TrySetResult();
                break;
            case "poke" when _detectorHere:
                _run.Detector?.Poke();
                break;
            case "force-end":
                if (message.Index >= 0 && message.Index < _runners.Length && _runners[message.Index] is { } runner)
                    runner.Inbox.EnqueueControl(new Envelope(EnvelopeKind.ForceEnd, null, null, 0, -1));
                break;
        }
    }

    private readonly Dictionary<string, List<HostStats>> _remote = new();

    /// <summary>Tells the other hosts how this host's processes are doing (their metrics and views show the whole run).</summary>
    public void PublishStats(RunSample local)
    {
        var stats = local.Processes.Select(p => new HostStats
        {
            Process = p.Name,
            ItemsIn = p.ItemsIn,
            ItemsOut = p.ItemsOut,
            Busy = p.BusySeconds,
            State = p.State,
            Pid = p.OsProcessId,
            Outputs = p.Outputs.ToDictionary(),
            Queues = local.Queues.Where(q => q.Reader == p.Name).Select(q => new HostQueue { Stream = q.Stream, Queued = q.Queued, Capacity = q.Capacity }).ToList(),
        }).ToList();
        Send(new ControlMessage { Type = "stats", Stats = stats });
    }

    /// <summary>
    /// The whole run as this host knows it: its own processes, and the others' as they last reported;
    /// instances of one process on several hosts (replicas) are added up.
    /// </summary>
    public RunSample Combine(RunSample local)
    {
        List<HostStats> remote;
        lock (_remote) remote = _remote.Values.SelectMany(v => v).ToList();
        if (remote.Count == 0) return local;
        var processes = local.Processes.Concat(remote.Select(r => new ProcessSample(r.Process, r.ItemsIn, r.ItemsOut, 0, r.Busy, r.State, r.Pid,
                r.Outputs ?? new Dictionary<string, long>())))
            .GroupBy(p => p.Name)
            // Replicas: counts add up; busy time is per instance (an average), so "1" still means "always busy".
            .Select(g => new ProcessSample(g.Key, g.Sum(p => p.ItemsIn), g.Sum(p => p.ItemsOut), local.Errors.Count(e => e.Process == g.Key),
                g.Sum(p => p.BusySeconds) / g.Count(), g.Any(p => p.State != "ended") ? g.First(p => p.State != "ended").State : "ended", g.First().OsProcessId,
                g.SelectMany(p => p.Outputs).GroupBy(kv => kv.Key).ToDictionary(o => o.Key, o => o.Sum(kv => kv.Value)))
            { Total = _model.Processes.FirstOrDefault(b => b.Name == g.Key)?.Source?.Total })
            .OrderBy(p => Array.FindIndex(_model.Processes.ToArray(), b => b.Name == p.Name))
            .ToList();
        var queues = local.Queues.Concat(remote.SelectMany(r => (r.Queues ?? []).Select(q => new QueueSample(q.Stream, r.Process, q.Queued, q.Capacity))))
            .GroupBy(q => (q.Stream, q.Reader))
            .Select(g => new QueueSample(g.Key.Stream, g.Key.Reader, g.Sum(q => q.Queued), g.Sum(q => q.Capacity)))
            .ToList();
        return local with { Processes = processes, Queues = queues };
    }

    private void ReplyStatus(int seq)
    {
        var indexes = new List<int[]>();
        var counts = new List<long[]>();
        for (int p = 0; p < _runners.Length; p++)
        {
            if (_runners[p] is not { } runner) continue;
            ProcessStatus status = runner.Status;
            // Waiting for the broker to confirm is not being stuck; being refused because a queue is full is.
            RunnerState state = status.State == RunnerState.Blocked && !_ports[p]!.Refusing ? RunnerState.Running : status.State;
            indexes.Add(new[] { p, (int)state });
            counts.Add(new[] { status.Sent, status.Received });
        }
        Send(new ControlMessage { Type = "status", Seq = seq, Indexes = indexes, Counts = counts });
    }

    private void TakeStatus(ControlMessage message)
    {
        if (message.Indexes is null || message.Counts is null || message.Indexes.Count != message.Counts.Count) return;
        TaskCompletionSource? done = null;
        lock (_lock)
        {
            if (message.Seq != _waveSeq || _wave is null) return;
            for (int i = 0; i < message.Indexes.Count; i++)
            {
                int p = message.Indexes[i][0];
                if (p < 0 || p >= _wave.Length) continue;
                if (_waveHosts[p] is { } other && other != message.Host)
                {
                    string name = _model.Processes[p].Name;
                    _ = Task.Run(() => _run.Fail(new ProcessFailure(name, null, null, null,
                        $"Process '{name}' runs on two hosts, but it is in a cycle (or the graph has cycles and it answers their termination detection): " +
                        "processes in graphs with cycles cannot have replicas. Start it in one place only.", null)));
                    return;
                }
                _waveHosts[p] = message.Host;
                _wave[p] = new ProcessStatus((RunnerState)message.Indexes[i][1], message.Counts[i][0], message.Counts[i][1]);
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
            _wave = new ProcessStatus?[_model.Processes.Count];
            _waveHosts = new string?[_model.Processes.Count];
            _waveDone = done;
        }
        Send(new ControlMessage { Type = "status?", Seq = seq });
        try
        {
            await done.Task.WaitAsync(TimeSpan.FromSeconds(2), cancellationToken);
        }
        catch (TimeoutException)
        {
            // Some process is not running anywhere yet (or its host is slow): the run is not quiet.
            // Look again in a while, even if nobody pokes: the missing host may be starting up.
            _ = Task.Delay(500, cancellationToken).ContinueWith(_ => _run.Detector?.Poke(), TaskScheduler.Default);
        }
        lock (_lock)
        {
            ProcessStatus[] statuses = _wave!.Select(s => s ?? new ProcessStatus(RunnerState.Running, 0, 0)).ToArray();
            _wave = null;
            return new WaveReading(statuses);
        }
    }

    public void ForceEnd(int process) => Send(new ControlMessage { Type = "force-end", Index = process });

    public ValueTask<string> DescribeBlockedAsync(CancellationToken cancellationToken) =>
        new(LocalStatusSource.DescribeBlocked(_runners.Where(r => r is not null)!) is { Length: > 0 } here ? here : "(processes on other hosts)");

    // ---------------------------------------------------------------- IRunReporter

    public void Poke()
    {
        // The detecting host's own processes poke its detector directly; others send one poke until the next wave.
        if (_cyclic && !_detectorHere && Interlocked.Exchange(ref _pokePending, 1) == 0) Send(new ControlMessage { Type = "poke" });
    }

    public void Halted(string process, string? reason) => Send(new ControlMessage { Type = "halt", Process = process, Reason = reason });

    public void Failed(ProcessFailure failure) => Send(new ControlMessage
    {
        Type = "error",
        Process = failure.Process,
        Stream = failure.Stream,
        ItemIndex = failure.ItemIndex,
        Item = failure.Item,
        Message = failure.Message,
        Exception = failure.ExceptionType,
    });
}
