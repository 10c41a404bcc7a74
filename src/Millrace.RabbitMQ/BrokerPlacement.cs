using System.Diagnostics;
using Millrace.Control;
using System.Reflection;
using Millrace.Codecs;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using RabbitMQ.Client;

[assembly: MillracePlacement<Millrace.RabbitMQ.BrokerPlacement>]

namespace Millrace.RabbitMQ;

/// <summary>
/// The broker placement: this program runs some processes of the graph (all, or those named in
/// <see cref="RunOptions.Processes"/>); the others run wherever the same program was started with
/// their names. Every stream is an exchange on the broker; every reader has a durable queue bound
/// to it. Found by name (<c>--placement broker</c>) through the assembly's <see cref="MillracePlacementAttribute"/>.
/// </summary>
internal sealed class BrokerPlacement : IPlacement
{
    public string Name => "broker";

    public bool CarriesCheckpoints => true;

    public Task<RunResult> RunAsync(PlacementContext context)
    {
        // Every stream goes through the broker: every item type must come back as written.
        context.RequireItemsCross(context.Graph.Streams);
        return RunAsync(context, context.Graph, context.Options, context.CancellationToken);
    }

    public const string DefaultBroker = "amqp://guest:guest@127.0.0.1:5672/";
    public const string BrokerVariable = "MILLRACE_BROKER";

    private static readonly TimeSpan ConnectFor = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan ReconnectFor = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan FinishFor = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan LingerFor = TimeSpan.FromMinutes(10);

    /// <summary>Checkpoints of generation g are numbered from g × this + 1.</summary>
    private const long GenerationNumbers = 1_000_000_000;

    private static async Task<RunResult> RunAsync(PlacementContext context, GraphShape graph, RunOptions options, CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        string[] names = graph.Processes.Select(p => p.Name).ToArray();
        string[] unknown = options.Broker.Processes.Where(n => !names.Contains(n)).ToArray();
        if (unknown.Length > 0)
            return Failed(string.Join(", ", unknown), stopwatch,
                $"--processes names {string.Join(", ", unknown.Select(n => $"'{n}'"))}, which the graph does not have. Its processes: {string.Join(", ", names)}.");
        int[] hosted = options.Broker.Processes.Count == 0
            ? Enumerable.Range(0, names.Length).ToArray()
            : Enumerable.Range(0, names.Length).Where(p => options.Broker.Processes.Contains(names[p])).ToArray();
        string hostedNames = string.Join(",", hosted.Select(p => names[p]));
        // A reader's queue is named RUN.STREAM.READER, and names may hold dots: two pairs must not come to one queue
        // (their messages would mix).
        var queueOf = new Dictionary<string, (string Stream, string Reader)>();
        foreach (StreamShape stream in graph.Streams)
        {
            foreach (string reader in stream.Readers)
            {
                string queue = Wire.Queue("RUN", stream.Name, reader);
                if (queueOf.TryGetValue(queue, out var other))
                    context.Refuse($"Stream '{other.Stream}' read by '{other.Reader}' and stream '{stream.Name}' read by '{reader}' would share one queue on " +
                                   $"the broker ('{queue}': a reader's queue is named after the stream and the reader, with a dot between); rename one of them.");
                queueOf[queue] = (stream.Name, reader);
            }
        }
        // With checkpoints on: refused before anything connects if they cannot hold this graph.
        if (context.TakesCheckpoints && graph.Cycles.Count > 0)
            context.Refuse($"Checkpoints (--checkpoint-interval) in the broker placement do not hold a graph with a cycle yet " +
                $"({string.Join("; ", graph.Cycles.Select(c => string.Join(" → ", c)))}): the broker counts a queue's room in messages, a loop's writers send " +
                "many small ones, and a checkpoint's marker waits behind all of them. Run it in the threads or processes placement, or without checkpoints.");
        CheckpointSupport? checkpoints = context.OpenCheckpoints();
        IDisposable? claimed = null;
        try
        {
            // One instance of each process with checkpoints: a second would look like the first started again.
            claimed = checkpoints?.Claim(hosted.Select(p => names[p]));
        }
        catch (InvalidOperationException e)
        {
            return Failed(hostedNames, stopwatch, e.Message);
        }
        using IDisposable? claim = claimed;
        string prefix = "millrace." + (options.RunId ?? DefaultRunId(Assembly.GetEntryAssembly()?.GetName().Name));
        string uri = options.Broker.Uri ?? Environment.GetEnvironmentVariable(BrokerVariable) ?? DefaultBroker;

        BrokerSession session;
        try
        {
            session = await BrokerSession.ConnectAsync(uri, $"millrace {prefix} {hostedNames}", ConnectFor, ReconnectFor, cancellationToken);
            session.Logger = options.Logger;
        }
        catch (BrokerUnreachableException e)
        {
            return Failed(hostedNames, stopwatch, e.Message);
        }

        await using (session)
        {
            try
            {
                await DeclareAsync(session, graph, prefix, QueueLimit(options), options.Broker.Queues);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                string reason = BrokerSession.Reason(e);
                return Failed(hostedNames, stopwatch, $"Could not set up the exchanges and queues of run '{prefix}' on the broker at {session.Where}: {reason}" +
                    (reason.Contains("inequivalent arg", StringComparison.Ordinal)
                        ? ". Its queues exist with other arguments: use the same --capacity, --batch and --broker-queues as the run that made them, or another --run-id."
                        : ""));
            }
            if (checkpoints is null) return (await RunHostedAsync(context, graph, options, session, prefix, hosted, stopwatch, null, cancellationToken)).Result;
            string[] mine = hosted.Select(p => names[p]).ToArray();
            for (int attempt = 0; ; attempt++)
            {
                // Each attempt builds the graph again: nothing of an earlier attempt's operators or handlers is left.
                if (attempt > 0) context = context.Rebuilt();
                var generation = RunGeneration.Join(checkpoints, mine, options.Logger);
                if (generation.EndedHere)
                {
                    // Its processes ended in this generation before this host stopped: they are not run twice; the host waits for the run's end.
                    RunGeneration.Ending ending = await generation.WaitForRunAsync(names, Task.Delay(Timeout.Infinite, cancellationToken), LingerFor);
                    if (ending == RunGeneration.Ending.WentBack && !cancellationToken.IsCancellationRequested) continue;
                    using RunHost nothing = context.Host([]);
                    if (ending != RunGeneration.Ending.Completed) nothing.Run.RequestStop();
                    return nothing.Result(stopwatch.Elapsed);
                }
                var (result, wentBack) = await RunHostedAsync(context, graph, options, session, prefix, hosted, stopwatch, generation, cancellationToken);
                if (!wentBack || cancellationToken.IsCancellationRequested) return result;
                Notices.Say(options.Logger, $"checkpoints: the run went back to a checkpoint (generation {generation.Number + 1} or later); starting {string.Join(", ", mine)} again from it");
            }
        }
    }

    private static async Task<(RunResult Result, bool WentBack)> RunHostedAsync(PlacementContext context, GraphShape graph, RunOptions options, BrokerSession session, string prefix,
        int[] hosted, Stopwatch stopwatch, RunGeneration? generation, CancellationToken cancellationToken)
    {
        string[] names = graph.Processes.Select(p => p.Name).ToArray();
        using RunHost host = context.Host(hosted, itemIds: true);
        // Drained only once what the processes published is confirmed (below): a hard stop before that is a stop at once.
        host.MarksProcessesEnded = false;
        RunContext run = host.Run;
        ProcessRunner?[] runners = host.Runners;
        ProcessRunner[] local = host.Local;

        // Items per message: the batch size; messages not yet confirmed per process, and taken but not
        // yet acknowledged per input: enough to keep the broker busy, bounded by the stream capacity.
        int window = Window(options);
        var ports = new ProcessPort?[graph.Processes.Count];
        foreach (int p in hosted)
            ports[p] = new ProcessPort(runners[p]!, p, session, run, window, Prefetch(graph, p, window))
            {
                Generation = generation?.Number ?? -1,
                DeadLetterExchange = Wire.DeadLetters(prefix),
                PoisonMessages = options.Broker.PoisonMessages,
                NewerGeneration = _ => generation!.GoBack(run),
            };
        // JSON unless asked otherwise: the documented wire format, so that programs in other languages can join.
        string codec = options.Codec == "auto" ? "json" : options.Codec;
        host.Wire(new BrokerLinks(graph, prefix, stream => host.CodecFor(stream, codec), ports));

        int detectorProcess = graph.Cycles.Count == 0 ? -1 : graph.Cycles.SelectMany(c => c).Min(graph.IndexOf);
        bool detectorHere = detectorProcess >= 0 && runners[detectorProcess] is not null;
        var control = new ControlBus(session, prefix, host, ports, detectorHere);
        run.Reporter = control;
        CheckpointLeader? leader = generation is null ? null : Checkpoints(host, graph, generation, control);
        var protocols = new List<EndProtocol>();
        foreach (int p in hosted)
        {
            // Processes with inputs, outside cycles, may run in several places (replicas); they agree when their inputs are over.
            if (graph.CycleOf(p) >= 0 || ports[p]!.EndsNeeded == 0) continue;
            ProcessPort port = ports[p]!;
            port.Protocol = new EndProtocol(port, run, port.EndsNeeded, control.Send) { OthersSeen = port.Unordered };
            protocols.Add(port.Protocol);
        }
        if (detectorHere) host.DetectTermination(control);

        Action<Exception> failed = e => run.Fail(new ProcessFailure(string.Join(", ", local.Select(r => r.Name)), null, null, null, e.Message, e));
        Action<long> lost = _ =>
        {
            foreach (int p in hosted) ports[p]!.ConnectionLost();
        };
        Func<Task> reconnected = async () =>
        {
            await DeclareAsync(session, graph, prefix, QueueLimit(options), options.Broker.Queues);
            await control.ReconnectedAsync();
            foreach (int p in hosted) await ports[p]!.ReconnectedAsync();
        };
        session.Failed += failed;
        session.Lost += lost;
        session.Reconnected += reconnected;
        // The session outlives this attempt (the run may go back and start again): it must not call into this one afterwards.
        void Unsubscribe()
        {
            session.Failed -= failed;
            session.Lost -= lost;
            session.Reconnected -= reconnected;
        }

        try
        {
            await control.StartAsync();
            if (generation is not null)
            {
                // After listening: a rollback said before this host listened is in the store (written before it was said).
                if (generation.Announce) control.Send(new Rollback(generation.Number, generation.Resume));
                if (generation.NewerInStore()) generation.GoBack(run);
            }
            if (protocols.Count > 0)
            {
                // Instances of a process (replicas) hear of each other before they take anything.
                foreach (EndProtocol protocol in protocols) protocol.Announce();
                await Task.Delay(250);
            }
            foreach (int p in hosted) await ports[p]!.StartAsync();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Unsubscribe();
            return (Failed(string.Join(", ", local.Select(r => r.Name)), stopwatch, $"Could not start consuming from the broker at {session.Where}: {BrokerSession.Reason(e)}"), false);
        }
        Task taking = leader?.RunAsync() ?? Task.CompletedTask;

        using IDisposable stops = host.ListenForStops(cancellationToken);
        // The meter and the views show the processes of this host.
        // A reader's queue here holds what the broker lets it take ahead: its prefetch of batches per writer.
        long held = PrefetchPerWriter(window) * options.EffectiveBatchSize;
        RunSample Local(double elapsed)
        {
            RunSample sample = host.Sample(elapsed);
            // The host that leads the checkpoints shows them (count, duration, size, age) in its meter and views.
            return sample with { Queues = sample.Queues.Select(q => q with { Capacity = Math.Max(q.Capacity, held) }).ToList(), Checkpoints = leader?.Sample() };
        }
        // The other hosts hear how this one's processes do twice a second: every host's meter and views show the whole run.
        var clock = Stopwatch.StartNew();
        using var stats = new Timer(_ => control.PublishStats(Local(clock.Elapsed.TotalSeconds)), null, TimeSpan.FromMilliseconds(500), TimeSpan.FromMilliseconds(500));
        await using RunWatch watch = await host.WatchAsync(elapsed => control.Combine(Local(elapsed)), Local);
        Task[] agreements = protocols.Select(p => p.RunAsync()).ToArray();
        using var debug = Environment.GetEnvironmentVariable("MILLRACE_DEBUG") == "1"
            ? new Timer(_ =>
            {
                foreach (int p in hosted) Console.Error.WriteLine($"[millrace debug] {ports[p]!.Describe()}");
            }, null, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2))
            : null;

        await host.RunProcessesAsync();
        leader?.Stop();
        await taking;
        if (generation is { HasGoneBack: true })
        {
            // The run went back: what this generation did here is void; its processes start again from the checkpoint.
            foreach (EndProtocol protocol in protocols) protocol.Leave();
            await host.StopDetectorAsync();
            foreach (int p in hosted) await ports[p]!.CloseAsync();
            await watch.EndAsync(run.Outcome);
            await control.CloseAsync();
            Unsubscribe();
            return (host.Result(stopwatch.Elapsed), true);
        }

        // In a graph with cycles, termination detection needs every process's counts, ended ones
        // included: a host whose processes ended stays (answering waves) until the cycles are closed.
        if (graph.Cycles.Count > 0 && run.Outcome == RunOutcome.Completed && run.Errors.Count == 0)
        {
            Task closed = detectorHere ? run.AllCyclesClosed : control.CyclesClosed;
            if (await Task.WhenAny(closed, run.HardStopped, Task.Delay(LingerFor)) == closed && detectorHere) control.AnnounceCyclesClosed();
        }

        // What the processes published must be confirmed, and what they took acknowledged, before this host leaves.
        bool completed = run.Outcome is RunOutcome.Completed or RunOutcome.Stopped && run.Errors.Count == 0 && !run.HardToken.IsCancellationRequested;
        // All at once: the instances of one process on other hosts wait for each other's outputs.
        bool[] finished = await Task.WhenAll(hosted.Select(p =>
            ports[p]!.FinishAsync(ended: completed && !runners[p]!.Stopping, completed ? FinishFor : TimeSpan.FromSeconds(2))));
        if (finished.All(f => f)) run.ProcessesEnded();
        for (int i = 0; i < hosted.Length; i++)
        {
            int p = hosted[i];
            if (!finished[i] && completed)
                run.Fail(new ProcessFailure(names[p], null, null, null,
                    $"Process '{names[p]}' ended, but the broker at {session.Where} did not confirm all it published within {FinishFor.TotalSeconds:0} s ({ports[p]!.Fill}).", null));
        }
        foreach (EndProtocol protocol in protocols) protocol.Leave();
        await Task.WhenAny(Task.WhenAll(agreements), Task.Delay(TimeSpan.FromSeconds(2)));
        stopwatch.Stop();
        await host.StopDetectorAsync();
        foreach (int p in hosted) await ports[p]!.CloseAsync();
        bool wentBack = false;
        if (generation is not null && completed && finished.All(f => f) && run.Outcome == RunOutcome.Completed && run.Errors.Count == 0)
        {
            // Checkpoints: until every process of the run has ended, one that dies takes the whole run back, these processes too.
            foreach (int p in hosted) generation.Store.MarkEnded(names[p], generation.Number);
            // Until every process ended, the run went back, or this host is asked to stop (Ctrl+C, SIGTERM: once is enough here).
            var asked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            run.GracefulStopRequested += () => asked.TrySetResult();
            RunGeneration.Ending ending = await generation.WaitForRunAsync(names, Task.WhenAny(run.HardStopped, asked.Task), LingerFor);
            wentBack = ending == RunGeneration.Ending.WentBack;
            if (ending == RunGeneration.Ending.TimedOut)
                Notices.Say(options.Logger, $"checkpoints: the processes here ended, but not every process of the run did within {LingerFor.TotalMinutes:0} minutes; leaving (the run's checkpoints stay in {generation.Store.Where})");
        }
        control.PublishStats(Local(clock.Elapsed.TotalSeconds)); // the last word: final counts
        await watch.EndAsync(run.Outcome);
        await control.CloseAsync();

        Unsubscribe();
        // The duration includes connecting to the broker and waiting for its confirms.
        return (host.Result(stopwatch.Elapsed), wentBack);
    }

    /// <summary>
    /// Checkpoints of this host's processes: their parts go to the store; the host that runs the graph's first source
    /// leads (numbers the checkpoints, asks every source for markers through the control exchange, counts the parts).
    /// </summary>
    private static CheckpointLeader? Checkpoints(RunHost host, GraphShape graph, RunGeneration generation, ControlBus control)
    {
        CheckpointSupport store = generation.Store;
        long number = generation.Number;
        generation.GoingBack = control.GoingBack;
        int first = Enumerable.Range(0, graph.Processes.Count).First(p => graph.Processes[p].IsSource);
        string[] names = graph.Processes.Select(p => p.Name).ToArray();
        CheckpointLeader? leader = host.Runners[first] is null ? null : store.Lead(host, graph.Processes.Count,
            checkpoint =>
            {
                CheckpointSupport.RequestMarkers(host, checkpoint);
                control.Send(new CheckpointRequest(checkpoint, number));
            },
            // A process that ended stores no more parts: checkpoints stop.
            () => host.Local.FirstOrDefault(r => r.Status.State == RunnerState.Ended)?.Name ?? names.FirstOrDefault(p => store.EndedIn(p) == number),
            generation.Resume,
            () => !generation.HasGoneBack && !generation.NewerInStore(),
            // Numbers of this generation's own: a part a host of an older generation stores late never lands in one of them.
            numberFrom: number * GenerationNumbers + 1);
        store.Attach(host, generation.Resume, (checkpoint, process) =>
        {
            if (leader is not null) leader.Stored(checkpoint);
            else control.Send(new CheckpointStored(checkpoint, graph.IndexOf(process), number));
        });
        control.Checkpoints = message =>
        {
            switch (message)
            {
                case CheckpointRequest request when request.Generation == number:
                    CheckpointSupport.RequestMarkers(host, request.Checkpoint);
                    break;
                case CheckpointStored stored when leader is not null && stored.Generation == number:
                    leader.Stored(stored.Checkpoint);
                    break;
                case Rollback rollback when rollback.Generation > number:
                    generation.GoBack(host.Run);
                    break;
            }
        };
        return leader;
    }

    /// <summary>Every exchange and queue of the run, declared by every host (idempotent), before anything is published.</summary>
    private static async Task DeclareAsync(BrokerSession session, GraphShape graph, string prefix, int queueLimit, BrokerQueues type)
    {
        // Bounded: a queue at its limit refuses more (the writer waits and tries again), it never drops.
        var arguments = new Dictionary<string, object?> { ["x-max-length"] = queueLimit, ["x-overflow"] = "reject-publish" };
        var deadLetterArguments = new Dictionary<string, object?> { ["x-max-length"] = DeadLetterLimit, ["x-overflow"] = "reject-publish" };
        if (type == BrokerQueues.Quorum)
        {
            // Replicated on the cluster's nodes (Raft): a queue and what it holds survive the loss of a minority of them.
            arguments["x-queue-type"] = "quorum";
            deadLetterArguments["x-queue-type"] = "quorum";
        }
        await using IChannel channel = await session.CreateChannelAsync();
        await channel.ExchangeDeclareAsync(Wire.ControlExchange(prefix), ExchangeType.Fanout, durable: true, autoDelete: false);
        // The run's dead-letter queue: messages its processes could not read. Bounded too: a full one holds back the process
        // that moves a message there (shown as a full queue) until someone takes messages from it; none is dropped.
        string deadLetters = Wire.DeadLetters(prefix);
        await channel.ExchangeDeclareAsync(deadLetters, ExchangeType.Fanout, durable: true, autoDelete: false);
        await channel.QueueDeclareAsync(deadLetters, durable: true, exclusive: false, autoDelete: false, arguments: deadLetterArguments);
        await channel.QueueBindAsync(deadLetters, deadLetters, "");
        foreach (StreamShape stream in graph.Streams)
        {
            string exchange = Wire.Exchange(prefix, stream.Name);
            await channel.ExchangeDeclareAsync(exchange, ExchangeType.Fanout, durable: true, autoDelete: false);
            foreach (string reader in stream.Readers)
            {
                string queue = Wire.Queue(prefix, stream.Name, reader);
                await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments: arguments);
                await channel.QueueBindAsync(queue, exchange, "");
            }
        }
        await channel.CloseAsync();
    }

    /// <summary>
    /// Messages a process may have unconfirmed, and take unacknowledged per input: four times the
    /// stream capacity in full batches (16 to <see cref="MaxWindow"/>), which keeps the round trips of confirms and
    /// acknowledgements from starving the pipeline.
    /// </summary>
    /// <summary>
    /// The largest window: deeper, the broker spends more CPU per message (measured on RabbitMQ 3.10 at one item per message:
    /// 36 s of broker CPU for 100,000 items with 2000, 28 s with 1000, 21 s with 512 and with 256), and no faster.
    /// </summary>
    internal const int MaxWindow = 512;

    /// <summary>The run's name on the broker when none is given: the program's name in lower case, a '-' for any dot (as run ids have none).</summary>
    internal static string DefaultRunId(string? program) =>
        string.Concat((program ?? "run").ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '-'));

    private static int Window(RunOptions options) => Math.Clamp(4 * options.StreamCapacity / options.EffectiveBatchSize, 16, MaxWindow);

    /// <summary>
    /// Messages a process may take from one input queue and not yet acknowledged, per writer of the stream: twice the
    /// window and two more. Messages that came before their turn (published after one the broker refused, which comes
    /// again later) wait unacknowledged, so the one they wait for must always find room: a writer has at most the window
    /// of batches ahead of its oldest unconfirmed message, and one checkpoint marker (checkpoints are one at a time, and
    /// one cannot complete while its marker waits here); after its channel to the broker is lost it publishes what was not
    /// confirmed again, and a copy of a message held here is acknowledged with it, so once more that many.
    /// </summary>
    private static ushort Prefetch(GraphShape graph, int process, int window)
    {
        int writers = graph.Processes[process].Inputs.Select(s => graph.Stream(s).Writers.Count).DefaultIfEmpty(1).Max();
        return (ushort)Math.Min(ushort.MaxValue, PrefetchPerWriter(window) * Math.Max(1, writers));
    }

    private static long PrefetchPerWriter(int window) => 2L * (window + 1);

    /// <summary>Messages the run's dead-letter queue holds at most.</summary>
    internal const int DeadLetterLimit = 100_000;

    /// <summary>
    /// Messages a reader's queue holds at most, ready for it: twice the window. A quorum queue's limit is soft: publishers hear
    /// it is full only after the fact, and what they had on the way still gets in (at most a writer's window) — so it is
    /// declared with one window, and holds at most two as a classic queue does (the placement contract's bound, on a cluster).
    /// </summary>
    private static int QueueLimit(RunOptions options) => (options.Broker.Queues == BrokerQueues.Quorum ? 1 : 2) * Window(options);

    private static RunResult Failed(string processes, Stopwatch stopwatch, string message) =>
        RunResult.Failed(new ProcessFailure(processes, null, null, null, message, null), stopwatch.Elapsed);
}
