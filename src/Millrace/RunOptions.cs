namespace Millrace;

/// <summary>How a graph runs: where its processes are placed and how big its queues are.</summary>
public sealed class RunOptions
{
    /// <summary>
    /// Where processes run: <c>threads</c> (the default: one OS process, a thread per process),
    /// <c>processes</c> (an OS process per process, on this machine; the program starts itself again
    /// for each, so everything before <see cref="Graph.RunAsync"/> should only build the graph) or
    /// <c>broker</c> (any number of machines talking through RabbitMQ; needs the Millrace.RabbitMQ
    /// library; see <see cref="Broker"/>), or a placement of your own (see <see cref="Placements.PlacementRegistry"/>).
    /// </summary>
    public string Placement { get; set; } = "threads";

    /// <summary>
    /// How many items each reader of a stream may have queued, at most (default 32768). A writer
    /// that finds the queue full waits: a fast writer is slowed, a slow reader loses nothing.
    /// Lower it when items are large (files, say): the bound is in items, not bytes.
    /// </summary>
    public int StreamCapacity { get; set; } = 32768;

    /// <summary>
    /// How many items travel together between processes, at most (default 8192; never more than
    /// <see cref="StreamCapacity"/>, nor more than fit in 64 KiB). Handlers still see one item at a
    /// time; a partial batch leaves as soon as its writer has nothing else to do.
    /// </summary>
    public int BatchSize { get; set; } = 8192;

    /// <summary>
    /// How long an emitted item may wait in a partial batch while its process stays busy (default 5 ms).
    /// A process that has nothing else to do sends its partial batches at once.
    /// </summary>
    public TimeSpan Linger { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>
    /// After a graceful stop (cancellation token, Ctrl+C, SIGTERM) sources stop and the rest of the graph
    /// drains; if it has not ended after this long (default 10 s), every process is stopped at once.
    /// </summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How often to take a checkpoint of the whole graph (<c>--checkpoint-interval SECONDS</c>): every
    /// process's declared state (<see cref="ProcessBuilder.State{T}(string, T)"/>), each source's position and
    /// the items on their way, stored in <see cref="StatePath"/>. A program started again with the same state
    /// folder resumes from the last complete checkpoint; in the processes placement, the coordinator also starts
    /// its children again from it when one dies (<see cref="ProcessesOptions.Restarts"/>). Not set: every
    /// <see cref="DefaultCheckpointInterval"/> when <see cref="StatePath"/> is given, else none; zero: none. Sources
    /// must be ones that can be rewound (enumerables, Lines) and lead to every process (docs/state-and-recovery.md).
    /// </summary>
    public TimeSpan? CheckpointInterval { get; set; }

    /// <summary>How often checkpoints are taken when <see cref="StatePath"/> is given and <see cref="CheckpointInterval"/> is not: 10 seconds.</summary>
    public static readonly TimeSpan DefaultCheckpointInterval = TimeSpan.FromSeconds(10);

    /// <summary>The interval checkpoints are taken at; zero when they are off.</summary>
    internal TimeSpan CheckpointEvery => CheckpointInterval ?? (StatePath is null ? TimeSpan.Zero : DefaultCheckpointInterval);

    /// <summary>
    /// Where checkpoints are kept (<c>--state</c>): a folder (the default, <c>millrace-state</c> in the current
    /// folder); with Millrace.Data, a SQLite file (<c>state.db</c>) or a PostgreSQL connection string
    /// (<c>Host=...;Username=...;Database=...</c>), where a database keeps the rows of each program apart by
    /// <see cref="RunId"/> (or the program's name). Giving it turns checkpoints on (<see cref="CheckpointInterval"/>).
    /// </summary>
    public string? StatePath { get; set; }

    /// <summary>
    /// Error policies that replace those the code of named processes set (<c>--on-error NAME=POLICY</c>, repeated; see
    /// <see cref="ErrorPolicy.Parse"/>): to skip bad items in production without a rebuild, or stop on the first while debugging.
    /// </summary>
    public IDictionary<string, ErrorPolicy> ErrorPolicies { get; } = new Dictionary<string, ErrorPolicy>(StringComparer.Ordinal);

    /// <summary>How long to wait for processes to stop after a halt, failure or hard stop (default 10 s).</summary>
    public TimeSpan StopTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How items cross OS process boundaries: <c>auto</c> (the default: the compact binary codec for
    /// primitives, strings and byte arrays, JSON for everything else), <c>json</c> (JSON for every
    /// type) or <c>binary</c> (binary wherever <see cref="BinaryCodec"/> supports the type, simple
    /// records included). Codecs registered with <see cref="Graph.UseCodec{T}(ICodec{T})"/> win.
    /// </summary>
    public string Codec { get; set; } = "auto";

    /// <summary>Options of the <c>processes</c> placement (an OS process per process, on this machine).</summary>
    public ProcessesOptions Processes { get; } = new();

    /// <summary>Options of the <c>broker</c> placement (hosts talking through RabbitMQ).</summary>
    public BrokerOptions Broker { get; } = new();

    /// <summary>
    /// The run's name: the <c>run</c> tag of its metrics and, in the <c>broker</c> placement, what every
    /// exchange and queue of the run starts with, so that several programs (or several runs of one)
    /// can share a virtual host (every host of one run must use the same). Default: a random name for
    /// metrics, the program's name in lower case on the broker. 1 to 100 letters, digits, '-' and '_' (no '.': on the
    /// broker, where names are joined with dots, two runs' names could meet). On the command line: <c>--run-id NAME</c>.
    /// </summary>
    public string? RunId { get; set; }

    /// <summary>
    /// Serve a live page of the run on 127.0.0.1 (<see cref="DashboardPort"/>): the graph drawn, each
    /// process's rate and each queue's depth, the bottleneck marked, errors listed. Needs the
    /// Millrace.Dashboard library. On the command line: <c>--dashboard</c>.
    /// </summary>
    public bool Dashboard { get; set; }

    /// <summary>The dashboard's port on 127.0.0.1 (0: any free port, printed when it starts). Default 5090. On the command line: <c>--dashboard-port PORT</c>.</summary>
    public int DashboardPort { get; set; } = 5090;

    /// <summary>
    /// No live terminal view. The view (the Millrace.Terminal library, when the program references
    /// it) is shown only when standard output is a terminal. On the command line: <c>--quiet</c>.
    /// </summary>
    public bool Quiet { get; set; }

    /// <summary>
    /// Where the run's structured log events go (Microsoft.Extensions.Logging): started, ended,
    /// process failures (with process, stream and item), halts, stops, and notices such as a broker
    /// reconnection. Null (the default): notices go to standard error, the rest is not said. In the
    /// processes placement the coordinator logs for its children.
    /// </summary>
    public Microsoft.Extensions.Logging.ILogger? Logger { get; set; }

    /// <summary>
    /// Views of the program's own (a health check, a test's probe): each is started when the run starts, reads it through
    /// <see cref="Monitoring.RunMonitor.Sample"/> while it lasts, and is stopped at its end with the final sample set. They
    /// run in the OS process that watches the run: the program started (in the processes placement, the coordinator, which
    /// sees every child's processes), and each host of the broker placement (its own processes). A run that goes back to a
    /// checkpoint (children started again, a new generation) starts them again for each attempt, after stopping them with
    /// that attempt's last sample: an observer must take <c>StartAsync</c> again after <c>StopAsync</c>.
    /// </summary>
    public IList<Monitoring.IRunObserver> Observers { get; } = new List<Monitoring.IRunObserver>();

    /// <summary>Whether Ctrl+C and SIGTERM stop the run gracefully (the second one at once). Default true.</summary>
    public bool HandleStopSignals { get; set; } = true;

    /// <summary>
    /// True in the program the user started; false in the OS processes the processes placement starts from the same program
    /// (they run <c>Main</c> again, with the same arguments, to build the same graph). Code that must run once per run — create
    /// or delete files, print a banner, reset a database — asks this first. (Each host of the broker placement is a program
    /// someone started: true there.)
    /// </summary>
    public static bool IsStarter => !Placements.Processes.ChildInfo.IsChild;

    /// <summary>Arguments <see cref="Parse"/> did not recognise, in order, for the program's own options.</summary>
    public IReadOnlyList<string> OtherArguments { get; private set; } = Array.Empty<string>();

    /// <summary>
    /// Reads Millrace's command-line options (<c>--placement NAME</c>, <c>--capacity N</c>, <c>--batch N</c>, <c>--codec NAME</c>, <c>--group A,B</c>,
    /// <c>--broker URI</c>, <c>--processes A,B</c>, <c>--broker-poison MODE</c>, <c>--broker-queues TYPE</c>, <c>--run-id NAME</c>, <c>--dashboard</c>, <c>--dashboard-port PORT</c>, <c>--quiet</c>,
    /// <c>--state PATH</c>, <c>--checkpoint-interval SECONDS</c>, <c>--restarts N</c>, <c>--restart-window SECONDS</c>, <c>--on-error NAME=POLICY</c>)
    /// from <paramref name="args"/>; everything else is left, in order, in <see cref="OtherArguments"/>.
    /// </summary>
    /// <exception cref="ArgumentException">An option is missing its value or has a bad one.</exception>
    public static RunOptions Parse(IEnumerable<string> args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var options = new RunOptions();
        var others = new List<string>();
        using IEnumerator<string> e = args.GetEnumerator();
        while (e.MoveNext())
        {
            string arg = e.Current;
            switch (arg)
            {
                case "--placement":
                    options.Placement = Value(e, arg);
                    break;
                case "--capacity":
                    options.StreamCapacity = PositiveInt(e, arg);
                    break;
                case "--batch":
                    options.BatchSize = PositiveInt(e, arg);
                    break;
                case "--codec":
                    options.Codec = Value(e, arg);
                    break;
                case "--restarts":
                {
                    string text = Value(e, arg);
                    if (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int restarts) || restarts > 1000)
                        throw new ArgumentException($"{arg} takes a number of restarts (0 to 1000); got '{text}'.");
                    options.Processes.Restarts = restarts;
                    break;
                }
                case "--restart-window":
                {
                    string text = Value(e, arg);
                    if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double seconds) || seconds <= 0 || seconds > 86_400 * 7)
                        throw new ArgumentException($"{arg} takes seconds (more than 0, up to a week); got '{text}'.");
                    options.Processes.RestartWindow = TimeSpan.FromSeconds(seconds);
                    break;
                }
                case "--group":
                    options.Processes.Groups.Add(Value(e, arg).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
                    break;
                case "--broker":
                    options.Broker.Uri = Value(e, arg);
                    break;
                case "--processes":
                    foreach (string name in Value(e, arg).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                        options.Broker.Processes.Add(name);
                    break;
                case "--broker-poison":
                {
                    string text = Value(e, arg);
                    options.Broker.PoisonMessages = text.Trim().ToLowerInvariant() switch
                    {
                        "policy" => PoisonMessages.FollowErrorPolicy,
                        "stop" => PoisonMessages.Stop,
                        "dead-letter" => PoisonMessages.DeadLetter,
                        _ => throw new ArgumentException($"{arg} takes policy, stop or dead-letter; got '{text}'."),
                    };
                    break;
                }
                case "--broker-queues":
                {
                    string text = Value(e, arg);
                    options.Broker.Queues = text.Trim().ToLowerInvariant() switch
                    {
                        "classic" => BrokerQueues.Classic,
                        "quorum" => BrokerQueues.Quorum,
                        _ => throw new ArgumentException($"{arg} takes classic or quorum; got '{text}'."),
                    };
                    break;
                }
                case "--run-id":
                    options.RunId = Value(e, arg);
                    break;
                case "--dashboard":
                    options.Dashboard = true;
                    break;
                case "--dashboard-port":
                    options.DashboardPort = Port(e, arg);
                    options.Dashboard = true;
                    break;
                case "--quiet":
                    options.Quiet = true;
                    break;
                case "--checkpoint-interval":
                {
                    string text = Value(e, arg);
                    if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double seconds) || seconds < 0 || seconds > 86_400)
                        throw new ArgumentException($"{arg} takes seconds (0 for none, up to 86400); got '{text}'.");
                    options.CheckpointInterval = TimeSpan.FromSeconds(seconds);
                    break;
                }
                case "--state":
                    options.StatePath = Value(e, arg);
                    break;
                case "--on-error":
                {
                    string text = Value(e, arg);
                    int equals = text.IndexOf('=');
                    if (equals <= 0) throw new ArgumentException($"{arg} takes PROCESS=POLICY (e.g. parse=skip); got '{text}'.");
                    options.ErrorPolicies[text[..equals].Trim()] = ErrorPolicy.Parse(text[(equals + 1)..]);
                    break;
                }
                default:
                    others.Add(arg);
                    break;
            }
        }
        options.OtherArguments = others;
        options.Check();
        return options;
    }

    internal void Check()
    {
        Placements.PlacementRegistry.Get(Placement); // throws, naming the known ones, if there is none of that name
        if (Codec is not ("auto" or "json" or "binary"))
            throw new ArgumentException($"Unknown codec '{Codec}'. Codecs: auto, json, binary.");
        if (StreamCapacity < 1) throw new ArgumentException($"StreamCapacity must be at least 1; got {StreamCapacity}.");
        if (BatchSize < 1) throw new ArgumentException($"BatchSize must be at least 1; got {BatchSize}.");
        if (Linger < TimeSpan.Zero) throw new ArgumentException($"Linger must not be negative; got {Linger}.");
        if (DrainTimeout < TimeSpan.Zero) throw new ArgumentException($"DrainTimeout must not be negative; got {DrainTimeout}.");
        if (DashboardPort is < 0 or > 65535) throw new ArgumentException($"DashboardPort must be 0 to 65535; got {DashboardPort}.");
        if (StopTimeout < TimeSpan.Zero) throw new ArgumentException($"StopTimeout must not be negative; got {StopTimeout}.");
        if (CheckpointInterval < TimeSpan.Zero) throw new ArgumentException($"CheckpointInterval must not be negative; got {CheckpointInterval}.");
        if (Processes.Restarts < 0) throw new ArgumentException($"Processes.Restarts must not be negative; got {Processes.Restarts}.");
        if (Processes.RestartWindow <= TimeSpan.Zero) throw new ArgumentException($"Processes.RestartWindow must be positive; got {Processes.RestartWindow}.");
        if (Placement != "broker" && Broker.Processes.Count > 0)
            throw new ArgumentException($"Broker.Processes (--processes) chooses what runs on each host in the broker placement; the {Placement} placement runs every process.");
        if (Placement != "processes" && Processes.Groups.Count > 0)
            throw new ArgumentException($"Processes.Groups (--group) puts processes together in the processes placement; the {Placement} placement does not use it.");
        // No '.': on the broker a run's names are "millrace.RUN.STREAM", and stream names may hold dots; with dots in run ids
        // too, run "x" with stream "y.s" and run "x.y" with stream "s" would share an exchange and queues.
        if (RunId is not null && (RunId.Length is 0 or > 100 || RunId.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))))
            throw new ArgumentException($"RunId (--run-id) must be 1 to 100 letters, digits, '-' or '_' (no '.': on the broker, " +
                $"where names are joined with dots, two runs' names could meet); got '{RunId}'.");
    }

    /// <summary>Items per batch as the run uses it: <see cref="BatchSize"/>, never more than <see cref="StreamCapacity"/>.</summary>
    public int EffectiveBatchSize => Math.Min(BatchSize, StreamCapacity);

    private static string Value(IEnumerator<string> e, string option)
    {
        if (!e.MoveNext() || e.Current.StartsWith("--", StringComparison.Ordinal))
            throw new ArgumentException($"Option {option} needs a value.");
        return e.Current;
    }

    private static int PositiveInt(IEnumerator<string> e, string option)
    {
        string text = Value(e, option);
        if (!int.TryParse(text, out int value) || value < 1)
            throw new ArgumentException($"Option {option} needs a whole number of at least 1; got '{text}'.");
        return value;
    }

    private static int Port(IEnumerator<string> e, string option)
    {
        string text = Value(e, option);
        if (!int.TryParse(text, out int value) || value is < 0 or > 65535)
            throw new ArgumentException($"Option {option} needs a port number from 0 to 65535; got '{text}'.");
        return value;
    }
}

/// <summary>Options of the <c>processes</c> placement.</summary>
public sealed class ProcessesOptions
{
    /// <summary>
    /// Sets of processes that share one OS process (the others get one each). On the command line:
    /// <c>--group process1,process2</c>, repeatable.
    /// </summary>
    public IList<string[]> Groups { get; } = new List<string[]>();

    /// <summary>
    /// With checkpoints on: how many times the coordinator starts the children again from the last complete
    /// checkpoint after one of them died (killed, crashed), within <see cref="RestartWindow"/>; one more death
    /// fails the run with its cause. Default 3; 0 fails the run at the first death. On the command line:
    /// <c>--restarts N</c>. A process that fails with an exception is not restarted (it would fail again).
    /// </summary>
    public int Restarts { get; set; } = 3;

    /// <summary>The window <see cref="Restarts"/> counts in (default 5 minutes): restarts longer ago do not count. <c>--restart-window SECONDS</c>.</summary>
    public TimeSpan RestartWindow { get; set; } = TimeSpan.FromMinutes(5);
}

/// <summary>Options of the <c>broker</c> placement.</summary>
public sealed class BrokerOptions
{
    /// <summary>
    /// The RabbitMQ broker, as an AMQP URI (<c>amqp://user:password@host:5672/vhost</c>); the nodes of a cluster
    /// separated by commas (<c>amqp://u:p@a:5672/v,amqp://b:5672,amqp://c:5672</c>: user, password and virtual host from
    /// the first), tried in turn when connecting and again when a connection is lost. Default: the
    /// <c>MILLRACE_BROKER</c> environment variable, else <c>amqp://guest:guest@127.0.0.1:5672/</c>.
    /// On the command line: <c>--broker URI[,URI...]</c>.
    /// </summary>
    public string? Uri { get; set; }

    /// <summary>
    /// The processes this program runs (the rest run elsewhere: other hosts start the same program
    /// with their own list). Empty (the default): all of them. On the command line: <c>--processes process1,process2</c>.
    /// </summary>
    public IList<string> Processes { get; } = new List<string>();

    /// <summary>
    /// What a process does with a message of its input queues it cannot read (a poison message: invalid JSON, items of
    /// another type, a truncated binary body, an end mark without its writer): never handed to the process's code, it
    /// either stops the run (and stays in its queue, unacknowledged) or is moved to the run's dead-letter queue
    /// (<c>millrace.RUN:dead-letters</c>) with the reason in its headers, and acknowledged. Default
    /// <see cref="Millrace.PoisonMessages.FollowErrorPolicy"/>. On the command line: <c>--broker-poison policy|stop|dead-letter</c>.
    /// </summary>
    public PoisonMessages PoisonMessages { get; set; } = PoisonMessages.FollowErrorPolicy;

    /// <summary>
    /// The type of the queues the run declares on the broker (its streams' readers' queues and its dead-letter queue):
    /// <see cref="BrokerQueues.Classic"/> (the default: one node holds each queue) or <see cref="BrokerQueues.Quorum"/>
    /// (replicated on the nodes of a cluster, and a queue survives the loss of a minority of them: the choice for
    /// production). Every host of a run must use the same. On the command line: <c>--broker-queues classic|quorum</c>.
    /// </summary>
    public BrokerQueues Queues { get; set; } = BrokerQueues.Classic;
}

/// <summary>The type of the broker placement's queues (<see cref="BrokerOptions.Queues"/>).</summary>
public enum BrokerQueues
{
    /// <summary>RabbitMQ's classic queues: one node holds each; lost while that node is down.</summary>
    Classic,

    /// <summary>RabbitMQ's quorum queues: replicated (Raft) on the cluster's nodes; available while a majority of them runs.</summary>
    Quorum,
}

/// <summary>What a process in the broker placement does with a message it cannot read (<see cref="BrokerOptions.PoisonMessages"/>).</summary>
public enum PoisonMessages
{
    /// <summary>
    /// As the reading process's error policy says (<see cref="ProcessBuilder.OnError"/>): Stop stops the run; Skip and
    /// DeadLetter (after retries too: a message that cannot be read cannot be read again) move it to the dead-letter queue.
    /// It counts towards the policy's limit of failures.
    /// </summary>
    FollowErrorPolicy,

    /// <summary>The run stops with a clear error; the message stays in its queue, unacknowledged (a restart meets it again).</summary>
    Stop,

    /// <summary>Moved to the run's dead-letter queue whatever the process's error policy (within the policy's limit of failures).</summary>
    DeadLetter,
}
