// Scenarios for the placement-equivalence suite: each builds one graph, runs it in the placement
// given by --placement, and prints what happened in lines the tests compare. Output printed by a
// process (in OnCompleted) comes from wherever that process runs; output printed after RunAsync
// comes from the program that started the run.
//
//   dotnet Millrace.Scenarios.dll SCENARIO [--placement NAME]
using Millrace;

if (args.Length == 0)
{
    Console.Error.WriteLine("usage: Millrace.Scenarios SCENARIO [--placement NAME]; scenarios: " + string.Join(", ", Scenarios.All.Keys));
    return 2;
}
// Holds the lock of a state store until killed: a lock must be let go when its OS process dies.
//   dotnet Millrace.Scenarios.dll hold-state-lock LOCATION NAME
if (args[0] == "hold-state-lock")
{
    Millrace.State.IStateStore store = Millrace.State.StateStores.Open(args[1], args[2]);
    using IDisposable held = store.Lock("store", TimeSpan.FromSeconds(30));
    Console.WriteLine("locked");
    await Task.Delay(Timeout.Infinite);
}
if (!Scenarios.All.TryGetValue(args[0], out var build))
{
    Console.Error.WriteLine($"unknown scenario '{args[0]}'; scenarios: {string.Join(", ", Scenarios.All.Keys)}");
    return 2;
}
// A child that cannot start: it ends before its run does (as a missing dependency or a crash in start-up code would).
if (args[0] == "child-exits" && Environment.GetEnvironmentVariable("MILLRACE_CHILD") == "1") return 3;
RunOptions options = RunOptions.Parse(args.Skip(1));
if (args[0] == "slow-drain") options.DrainTimeout = TimeSpan.FromMinutes(10);
// A run that would wait ten minutes for the final report of a child that cannot send one.
if (args[0] == "endless") options.StopTimeout = TimeSpan.FromMinutes(10);
var graph = new Graph();
build(graph);
if (args[0] == "generated" && options.Placement == "processes")
    foreach (List<string> side in GeneratedGraphs.Sides) options.Processes.Groups.Add(side.ToArray());
using MetricsWatcher? metrics = args[0] == "metrics" ? new MetricsWatcher() : null;
RunResult result = await graph.RunAsync(options);
metrics?.Report(options);
Console.WriteLine($"outcome: {result.Outcome}");
if (result.HaltedBy is not null) Console.WriteLine($"halted by: {result.HaltedBy} ({result.HaltReason})");
if (result.TerminationDetected) Console.WriteLine("termination detected");
foreach (ProcessFailure e in result.Errors)
    Console.WriteLine($"error: process={e.Process} stream={e.Stream} item={e.ItemIndex} value={e.Item} exception={e.ExceptionType} message={e.Message}");
foreach (var (name, stats) in result.Processes.Where(p => p.Value.ItemsSkipped + p.Value.ItemsDeadLettered > 0).OrderBy(p => p.Key, StringComparer.Ordinal))
    Console.WriteLine($"process {name}: {stats.ItemsSkipped} skipped, {stats.ItemsDeadLettered} dead-lettered");
foreach (var (name, stats) in result.Streams.OrderBy(s => s.Key, StringComparer.Ordinal))
    Console.WriteLine($"stream {name}: {stats.ItemsWritten} written");
return result.Succeeded ? 0 : 1;

static class Scenarios
{
    public static readonly Dictionary<string, Action<Graph>> All = new()
    {
        ["order"] = Order,
        ["two-inputs"] = TwoInputs,
        ["merge"] = Merge,
        ["fail"] = Fail,
        ["halt"] = Halt,
        ["ring"] = Ring,
        ["growing-cycle"] = GrowingCycle,
        ["corrupt"] = Corrupt,
        ["deadlock"] = Deadlock,
        ["unstable-graph"] = UnstableGraph,
        ["fan-out"] = FanOut,
        ["cycle-with-watcher"] = CycleWithWatcher,
        ["operators"] = OperatorPipeline,
        ["metrics"] = Metrics,
        ["bounded"] = Bounded,
        ["exclusive"] = Exclusive,
        ["values"] = Values,
        ["slow-drain"] = SlowDrain,
        ["child-exits"] = ChildExits,
        ["typed-joins"] = TypedJoins,
        ["echo"] = Echo,
        ["echo-fed"] = EchoFed,
        ["generated"] = GeneratedGraphs.Build,
        ["async-source-bad-string"] = AsyncSourceBadString,
        ["endless"] = Endless,
        ["checkpointed"] = Checkpointed,
        ["checkpointed-operators"] = CheckpointedOperators,
        ["checkpointed-lines"] = CheckpointedLines,
        ["checkpointed-cycle"] = CheckpointedCycle,
        ["checkpointed-timer"] = CheckpointedTimer,
        ["checkpointed-early-end"] = CheckpointedEarlyEnd,
        ["errors-skip"] = g => Errors(g, "skip"),
        ["errors-dead-letter"] = g => Errors(g, "dead-letter"),
        ["errors-retry"] = g => Errors(g, "retry"),
        ["errors-limit"] = g => Errors(g, "limit"),
        ["starter"] = Starter,
    };

    /// <summary>RunOptions.IsStarter where each process runs, and in Main before the run (printed once per OS process that builds the graph).</summary>
    private static void Starter(Graph graph)
    {
        Console.WriteLine($"main: starter {RunOptions.IsStarter}");
        Stream<int> numbers = graph.Stream<int>("numbers");
        graph.Source("source", numbers, [1, 2, 3]);
        graph.Process("sink", p =>
        {
            p.On(numbers, _ => { });
            p.OnCompleted(() => Console.WriteLine($"sink: starter {RunOptions.IsStarter}"));
        });
    }

    /// <summary>
    /// IoTPy's echo: a feedback loop that starts from a stream's initial item, watched by a process that
    /// also reads a stream from outside the loop (which ends long before the loop does).
    /// </summary>
    private static void Echo(Graph graph) => EchoLoop(graph, fed: false);

    /// <summary>The same loop started by a process outside it (it reads a source and ends before the loop does).</summary>
    private static void EchoFed(Graph graph) => EchoLoop(graph, fed: true);

    private static void EchoLoop(Graph graph, bool fed)
    {
        var s = fed ? graph.Stream<long>("echo") : graph.Stream<long>("echo", [1]);
        var t = graph.Stream<long>("echo-next");
        if (fed)
        {
            var seeds = graph.Stream<long>("seeds");
            graph.Source("seeds", seeds, [1L, 2L]);
            graph.Map("feed", seeds, s, x => x);
        }
        graph.Map("echo-next", s, t, x => x * 3);
        graph.Filter("echo-back", t, s, x => x < 1000);
        var other = graph.Stream<long>("other");
        graph.Source("other", other, Range(10));
        graph.Process("printer", p =>
        {
            var echo = new List<long>();
            long otherSum = 0;
            p.On(t, echo.Add);
            p.On(other, x => otherSum += x);
            p.OnCompleted(() => Console.WriteLine($"echo: {string.Join(",", echo.Order())}; other: {otherSum}"));
        });
    }

    /// <summary>
    /// An asynchronous function source that emits a string that is not valid UTF-16 between two waits:
    /// in the processes placement the codec refuses it while the source waits, which must fail the run
    /// with the codec's message (not crash the OS process).
    /// </summary>
    private static void AsyncSourceBadString(Graph graph)
    {
        var words = graph.Stream<string>("words");
        graph.Source("words", words, async (Output<string> o, CancellationToken ct) =>
        {
            o.Emit("fine");
            await Task.Yield();
            o.Emit("cut \ud83d");
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
            return false;
        });
        graph.Sink("print", words, w => Console.WriteLine($"word: {w.Length}"));
    }

    /// <summary>
    /// Processes that keep their state in p.State: a running sum (a stateful map) and a sink that counts and
    /// sums two inputs (two links, so the items on their way at a checkpoint are kept). Paced to last a few
    /// seconds; the chaos test kills it and starts it again from its checkpoints.
    /// </summary>
    /// <summary>
    /// A short source that ends at once beside a long one: its reader ends early, and the sink reads both (one of
    /// its inputs ends long before the other). Checkpoints go on after they end; resumed, they end again at once.
    /// </summary>
    private static void CheckpointedEarlyEnd(Graph graph)
    {
        long n = long.TryParse(Environment.GetEnvironmentVariable("MILLRACE_CHECKPOINT_ITEMS"), out long items) ? items : 2_000_000;
        var numbers = graph.Stream<long>("numbers");
        var slow = graph.Stream<long>("slow");
        var side = graph.Stream<long>("side");
        graph.Source("numbers", numbers, Range(n));
        graph.Source("side", side, Range(1000));
        graph.Map("pace", numbers, slow, x =>
        {
            if (x % 1000 == 0) Thread.Sleep(1);
            return x % 997;
        });
        graph.Process("side-sum", p =>
        {
            ProcessState<long> sum = p.State("sum", 0L);
            p.On(side, x => sum.Value += x * x);
            p.OnCompleted(() => Console.WriteLine($"totals: side squares {sum.Value}"));
        });
        graph.Process("db", p =>
        {
            ProcessState<long> count = p.State("count", 0L);
            ProcessState<long> total = p.State("total", 0L);
            ProcessState<long> sideCount = p.State("side-count", 0L);
            p.On(slow, x => { count.Value++; total.Value += x; });
            p.On(side, _ => sideCount.Value++);
            p.OnCompleted(() => Console.WriteLine($"db: {count.Value} items totalling {total.Value}, {sideCount.Value} from the side"));
        });
    }

    /// <summary>
    /// 10,000 numbers through a parser that throws on one in 1,000 (x % 1000 == 7) and, the first time only, on another
    /// (x % 1000 == 3: a transient fault), under an error policy: skip, dead-letter, retry (then dead-letter), or a limit of 5
    /// failures. db sums what got through; the dead letters are printed in order, content and all.
    /// </summary>
    private static void Errors(Graph graph, string policy)
    {
        var numbers = graph.Stream<long>("numbers");
        var parsed = graph.Stream<long>("parsed");
        graph.Source("numbers", numbers, Range(10_000));
        graph.Process("parse", p =>
        {
            p.OnError(policy switch
            {
                "skip" => ErrorPolicy.Skip,
                "dead-letter" => ErrorPolicy.DeadLetter(graph.DeadLetters),
                "retry" => ErrorPolicy.Retry(2, TimeSpan.FromMilliseconds(1), then: ErrorPolicy.DeadLetter(graph.DeadLetters)),
                _ => ErrorPolicy.Skip with { MaxFailures = 5 },
            });
            var failedOnce = new HashSet<long>();
            Output<long> o = p.Output(parsed);
            p.On(numbers, x =>
            {
                if (x % 1000 == 7) throw new FormatException($"'{x}' is not a number I like");
                if (x % 1000 == 3 && failedOnce.Add(x)) throw new TimeoutException($"the parser of {x} timed out");
                o.Emit(x * 2);
            });
        });
        graph.Process("db", p =>
        {
            long count = 0, sum = 0;
            p.On(parsed, x => { count++; sum += x; });
            p.OnCompleted(() => Console.WriteLine($"db: {count} items summing to {sum}"));
        });
        if (policy is "dead-letter" or "retry")
        {
            graph.Process("dead", p =>
            {
                var letters = new List<DeadLetter>();
                p.On(graph.DeadLetters, d => letters.Add(d));
                p.OnCompleted(() =>
                {
                    foreach (DeadLetter d in letters)
                        Console.WriteLine($"dead: {d.Process} {d.Stream} #{d.ItemIndex} item={d.Item} {d.ExceptionType}: {d.Message}");
                });
            });
        }
    }

    /// <summary>A timer (3,000 ticks, one a millisecond) into a running total: resumed, it goes on after the last tick it emitted.</summary>
    private static void CheckpointedTimer(Graph graph)
    {
        var ticks = graph.Stream<long>("ticks");
        var doubled = graph.Stream<long>("doubled");
        graph.Timer("tick", ticks, TimeSpan.FromMilliseconds(1), count: 3000);
        graph.Map("double", ticks, doubled, x => x * 2);
        graph.Process("db", p =>
        {
            ProcessState<long> count = p.State("count", 0L);
            ProcessState<long> total = p.State("total", 0L);
            ProcessState<long> last = p.State("last", -1L);
            ProcessState<long> outOfOrder = p.State("out-of-order", 0L);
            p.On(doubled, x =>
            {
                if (x != last.Value + 2) outOfOrder.Value++;
                last.Value = x;
                count.Value++;
                total.Value += x;
            });
            p.OnCompleted(() => Console.WriteLine($"db: {count.Value} ticks totalling {total.Value}, {outOfOrder.Value} out of order"));
        });
    }

    private static void Checkpointed(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        var sums = graph.Stream<long>("sums");
        var evens = graph.Stream<long>("evens");
        graph.Source("numbers", numbers, Range(2_000_000));
        graph.Process("running", p =>
        {
            ProcessState<long> sum = p.State("sum", 0L);
            Output<long> o = p.Output(sums);
            p.On(numbers, x =>
            {
                sum.Value += x;
                o.Emit(sum.Value % 1000);
                if (x % 1000 == 0) Thread.Sleep(1);
            });
        });
        graph.Filter("even", numbers, evens, x => x % 2 == 0);
        graph.Process("db", p =>
        {
            ProcessState<long> count = p.State("count", 0L);
            ProcessState<long> total = p.State("total", 0L);
            ProcessState<long> evenCount = p.State("even-count", 0L);
            ProcessState<long> evenSum = p.State("even-sum", 0L);
            p.On(sums, x => { count.Value++; total.Value += x; });
            p.On(evens, x => { evenCount.Value++; evenSum.Value += x; });
            p.OnCompleted(() => Console.WriteLine($"db: {count.Value} sums totalling {total.Value}, {evenCount.Value} evens summing to {evenSum.Value}"));
        });
        // MILLRACE_CHECKPOINT_TABLE=DATABASE|TABLE: every hundredth even number becomes a row whose key names the OS
        // process that made it (not state: another in every start), so a row of an abandoned attempt would stay beside its
        // replacement: with exactly-once commits the table ends with one row per number.
        if (Environment.GetEnvironmentVariable("MILLRACE_CHECKPOINT_TABLE") is { } target)
        {
            string[] parts = target.Split('|');
            var rows = graph.Stream<string>("rows");
            string attempt = Guid.NewGuid().ToString("N")[..8];
            graph.Process("tag", p =>
            {
                Output<string> o = p.Output(rows);
                p.On(evens, x => { if (x % 100 == 0) o.Emit($"{x}:{attempt}"); });
            });
            Millrace.Data.TableSinks.ToTable(graph, "table", rows, parts[0], parts[1], r => r,
                new Millrace.Data.Column<string>("value", "BIGINT", r => long.Parse(r.Split(':')[0], System.Globalization.CultureInfo.InvariantCulture)));
        }
    }

    /// <summary>
    /// Built-in operators that hold items or totals between items, one after another: a timed batch, count
    /// windows, an ordered ParallelMap, a running total (MapWithState), processing-time windows, event-time
    /// windows, a zip, and a JSON-lines file (MILLRACE_CHECKPOINT_OUT) and a SinkWithState at the end. The
    /// totals printed do not depend on timing; the chaos test kills it and resumes it from its checkpoints.
    /// </summary>
    private static void CheckpointedOperators(Graph graph)
    {
        long n = long.TryParse(Environment.GetEnvironmentVariable("MILLRACE_CHECKPOINT_ITEMS"), out long items) ? items : 1_000_000;
        var numbers = graph.Stream<long>("numbers");
        var paced = graph.Stream<long>("paced");
        var batches = graph.Stream<long[]>("batches");
        var single = graph.Stream<long>("items");
        var windowSums = graph.Stream<long>("window-sums");
        var doubled = graph.Stream<long>("doubled");
        var running = graph.Stream<long>("running");
        var timed = graph.Stream<(int Count, long Sum)>("timed");
        var hundreds = graph.Stream<(long Start, int Count)>("hundreds");
        var pairs = graph.Stream<long>("pairs");
        graph.Source("numbers", numbers, Range(n));
        graph.Map("pace", numbers, paced, x =>
        {
            if (x % 400 == 0) Thread.Sleep(1);
            return x;
        });
        graph.Batch("batch", paced, batches, 100, TimeSpan.FromMilliseconds(20));
        graph.FlatMap("unbatch", batches, single, b => b);
        graph.Window("window", single, windowSums, 10, 10, w => w.Sum());
        graph.ParallelMap("double", windowSums, doubled, x => x * 2, workers: 2);
        graph.MapWithState("running", doubled, running, 0L, (x, total) => (total + x, total + x));
        graph.TimedWindow("timed", running, timed, TimeSpan.FromMilliseconds(20), w => (w.Count, w.Aggregate(0L, (a, b) => unchecked(a + b))));
        graph.EventTimeWindow("hundreds", single, hundreds, x => x, 100, 100, (start, w) => (start, w.Count));
        graph.Zip("pair", windowSums, doubled, pairs, (a, b) => b - 2 * a);
        if (Environment.GetEnvironmentVariable("MILLRACE_CHECKPOINT_OUT") is { } file) graph.ToJsonLines("file", doubled, file);
        graph.SinkWithState("db", hundreds, (Windows: 0L, Items: 0L), (h, s) => (s.Windows + 1, s.Items + h.Count),
            s => Console.WriteLine($"db: {s.Windows} event-time windows holding {s.Items} items"));
        graph.SinkWithState("totals", timed, (Count: 0L, Sum: 0L), (t, s) => (s.Count + t.Count, unchecked(s.Sum + t.Sum)),
            s => Console.WriteLine($"totals: {s.Count} running totals summing to {s.Sum}"));
        graph.SinkWithState("pairs", pairs, (Count: 0L, Sum: 0L), (x, s) => (s.Count + 1, s.Sum + x), s => Console.WriteLine($"pairs: {s.Count} differences summing to {s.Sum}"));
    }

    /// <summary>A file's lines (MILLRACE_LINES_FILE, numbers) summed with state: a source that resumes by passing over the lines it had emitted.</summary>
    private static void CheckpointedLines(Graph graph)
    {
        var lines = graph.Stream<string>("lines");
        var numbers = graph.Stream<long>("numbers");
        graph.Lines("lines", lines, Environment.GetEnvironmentVariable("MILLRACE_LINES_FILE") ?? throw new InvalidOperationException("MILLRACE_LINES_FILE is not set."));
        graph.Map("parse", lines, numbers, line =>
        {
            long x = long.Parse(line, System.Globalization.CultureInfo.InvariantCulture);
            if (x % 500 == 0) Thread.Sleep(1);
            return x;
        });
        graph.SinkWithState("db", numbers, (Count: 0L, Sum: 0L), (x, s) => (s.Count + 1, s.Sum + x),
            s => Console.WriteLine($"db: {s.Count} lines summing to {s.Sum}"));
    }

    /// <summary>
    /// A cycle fed by a source: every fifth number goes around the loop once or twice (one added each time) before
    /// it leaves for the sink, so items are on their way around the loop when a checkpoint is taken (lightly
    /// enough that the loop's bounded queues never fill: a loop that emits more than it takes can deadlock).
    /// </summary>
    private static void CheckpointedCycle(Graph graph)
    {
        long n = long.TryParse(Environment.GetEnvironmentVariable("MILLRACE_CHECKPOINT_ITEMS"), out long items) ? items : 500_000;
        var numbers = graph.Stream<long>("numbers");
        var around = graph.Stream<(long Value, int Left)>("around");
        var back = graph.Stream<(long Value, int Left)>("back");
        var done = graph.Stream<long>("done");
        graph.Source("numbers", numbers, Range(n));
        graph.Process("step", p =>
        {
            Output<(long Value, int Left)> o = p.Output(around);
            p.On(numbers, x =>
            {
                o.Emit((x, x % 10 == 0 ? 2 : x % 10 == 5 ? 1 : 0));
                if (x % 200 == 0) Thread.Sleep(1);
            });
            p.On(back, o.Emit);
        });
        graph.Process("turn", p =>
        {
            Output<(long Value, int Left)> b = p.Output(back);
            Output<long> d = p.Output(done);
            p.On(around, v =>
            {
                if (v.Left > 0) b.Emit((v.Value + 1, v.Left - 1));
                else d.Emit(v.Value);
            });
        });
        graph.SinkWithState("db", done, (Count: 0L, Sum: 0L), (x, s) => (s.Count + 1, s.Sum + x),
            s => Console.WriteLine($"db: {s.Count} numbers summing to {s.Sum}"));
    }

    /// <summary>An endless source into a sink that says when it has its first item.</summary>
    private static void Endless(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        graph.Source("numbers", numbers, Range(long.MaxValue));
        graph.Process("sink", p =>
        {
            bool first = true;
            p.On(numbers, _ =>
            {
                if (!first) return;
                first = false;
                Console.WriteLine("sink: first item");
            });
        });
    }

    public sealed record Quote(long Time, decimal Price);

    public sealed record Trade(long Time, int Size);

    /// <summary>
    /// Joins over inputs of different types and IoTPy's semantics (typed Mix and Separate, typed TimedZip,
    /// Blend with functions, a feedback loop from a stream's initial items, the WithState family, Map
    /// dropping nulls), every result printed by one process: the same lines in every placement.
    /// </summary>
    private static void TypedJoins(Graph graph)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        var numbers = graph.Stream<long>("numbers");
        var words = graph.Stream<string>("words");
        var mixed = graph.Stream<Mixed<long, string>>("mixed");
        var numbersBack = graph.Stream<long>("numbers-back");
        var wordsBack = graph.Stream<string>("words-back");
        graph.Source("n", numbers, Range(200));
        graph.Source("w", words, Range(100).Select(i => "w" + i.ToString(inv)));
        graph.Mix("mix", numbers, words, mixed);
        graph.Separate("separate", mixed, numbersBack, wordsBack);

        var quotes = graph.Stream<Quote>("quotes");
        var trades = graph.Stream<Trade>("trades");
        var rows = graph.Stream<TimedRow<Quote, Trade>>("rows");
        graph.Source("q", quotes, Range(50).Select(i => new Quote(i * 2, 100m + i / 4m)));
        graph.Source("t", trades, Range(40).Select(i => new Trade(i * 3, (int)i)));
        graph.TimedZip("join", quotes, trades, rows, x => x.Time, x => x.Time);

        var sizes = graph.Stream<double>("sizes");
        graph.Blend("sizes", numbersBack, wordsBack, sizes, x => x / 2.0, w => w.Length);

        var s = graph.Stream<long>("echo", [1]);
        var t = graph.Stream<long>("echo-next");
        graph.Map("echo-next", s, t, x => x * 3);
        graph.Filter("echo-back", t, s, x => x < 1000);

        var rising = graph.Stream<long>("rising");
        var deltas = graph.Stream<long>("deltas");
        var odd = graph.Stream<string?>("odd");
        var noisy = graph.Stream<long>("noisy");
        graph.Source("noisy", noisy, Range(60).Select(i => (i * 37) % 61));
        graph.FilterWithState("rising", noisy, rising, -1L, (x, max) => (x > max, Math.Max(x, max)));
        graph.WindowWithState("deltas", noisy, deltas, 5, 5, 0L, (w, last) => (w.Sum() - last, w.Sum()));
        graph.Map("odd", noisy, odd, x => x % 2 == 1 ? "#" + x.ToString(inv) : null, dropNulls: true);
        graph.SinkWithState("total", noisy, 0L, (x, sum) => sum + x, sum => Console.WriteLine($"total: {sum}"));

        graph.Process("printer", p =>
        {
            var mixedSeen = new List<Mixed<long, string>>();
            var rowsSeen = new List<string>();
            double sizeSum = 0;
            long sizeCount = 0;
            var echo = new List<long>();
            var risingSeen = new List<long>();
            var deltasSeen = new List<long>();
            var oddSeen = new List<string?>();
            p.On(mixed, mixedSeen.Add);
            p.On(rows, r => rowsSeen.Add(string.Create(inv,
                $"{r.Time}:{(r.HasFirst ? r.First.Price.ToString(inv) : "-")}|{(r.HasSecond ? r.Second.Size.ToString(inv) : "-")}")));
            p.On(sizes, x => { sizeSum += x; sizeCount++; });
            p.On(t, echo.Add);
            p.On(rising, risingSeen.Add);
            p.On(deltas, deltasSeen.Add);
            p.On(odd, oddSeen.Add);
            p.OnCompleted(() =>
            {
                var firsts = mixedSeen.Where(m => m.Index == 0).Select(m => m.First).ToList();
                var seconds = mixedSeen.Where(m => m.Index == 1).Select(m => m.Second).ToList();
                Console.WriteLine($"mixed: {firsts.Count} numbers in order {firsts.SequenceEqual(Range(200))}, {seconds.Count} words in order {seconds.SequenceEqual(Range(100).Select(i => "w" + i.ToString(inv)))}");
                Console.WriteLine($"rows: {rowsSeen.Count}, {string.Join(" ", rowsSeen.Take(4))} ... {rowsSeen[^1]}");
                Console.WriteLine(string.Create(inv, $"sizes: {sizeCount} items, sum {sizeSum}"));
                Console.WriteLine($"echo: {string.Join(",", echo)}");
                Console.WriteLine($"rising: {string.Join(",", risingSeen)}");
                Console.WriteLine($"deltas: {string.Join(",", deltasSeen)}");
                Console.WriteLine($"odd: {oddSeen.Count}, first {oddSeen[0]}, nulls {oddSeen.Count(x => x is null)}");
            });
        });
    }

    /// <summary>
    /// An endless source and a sink that takes a tenth of a second per item: draining what its queue holds
    /// would take minutes (the drain timeout is ten minutes here), so only a hard stop ends it soon.
    /// The source says when it has stopped.
    /// </summary>
    private static void SlowDrain(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        graph.Source("forever", numbers, Stopping());
        graph.Process("slow", p =>
        {
            long taken = 0;
            p.On(numbers, _ =>
            {
                if (++taken == 1) Console.WriteLine("slow: first item");
                Thread.Sleep(100);
            });
            p.Finally(() => Console.WriteLine($"slow: took {taken}"));
        });

        static IEnumerable<long> Stopping()
        {
            try
            {
                for (long i = 0; ; i++) yield return i;
            }
            finally
            {
                Console.WriteLine("forever: stopped");
            }
        }
    }

    /// <summary>Three processes; in the processes placement the child of group 1 exits with code 3 before its run starts.</summary>
    private static void ChildExits(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        var squares = graph.Stream<long>("squares");
        graph.Source("numbers", numbers, Range(1000));
        graph.Map("square", numbers, squares, x => x * x);
        graph.Sink("sum", squares, _ => { });
    }

    /// <summary>
    /// A probe of the promise that the handlers of one process never run at once: two inputs from
    /// endless sources, a timer (p.Every), a start and a final action all count how many of them are
    /// inside at a time. It halts itself once it has seen enough of each (the timer included).
    /// </summary>
    private static void Exclusive(Graph graph)
    {
        var a = graph.Stream<long>("a");
        var b = graph.Stream<string>("b");
        graph.Source("source-a", a, Range(long.MaxValue));
        graph.Source("source-b", b, Range(long.MaxValue).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        graph.Process("probe", p =>
        {
            int inside = 0;
            long overlaps = 0, fromA = 0, fromB = 0, ticks = 0, starts = 0;
            void Enter()
            {
                if (Interlocked.Increment(ref inside) != 1) Interlocked.Increment(ref overlaps);
                Thread.SpinWait(20); // widen the window a second caller would have to overlap
            }
            void Leave()
            {
                if (fromA >= 20_000 && fromB >= 20_000 && ticks >= 5) p.Halt("seen enough");
                Interlocked.Decrement(ref inside);
            }
            p.OnStart(() => { Enter(); starts++; Leave(); });
            p.On(a, _ => { Enter(); fromA++; Leave(); });
            p.On(b, _ => { Enter(); fromB++; Leave(); });
            p.Every(TimeSpan.FromMilliseconds(1), () => { Enter(); ticks++; Leave(); });
            // Halt skips OnCompleted; Finally runs however the process ends.
            p.Finally(() => Console.WriteLine(
                $"probe: overlaps {overlaps}, start {starts}, a {(fromA >= 20_000 ? "enough" : fromA)}, b {(fromB >= 20_000 ? "enough" : fromB)}, ticks {(ticks >= 5 ? "enough" : ticks)}"));
        });
    }

    /// <summary>
    /// Items that are not integers and ASCII, through two processes (across OS processes and the broker
    /// elsewhere): doubles that text could round, subnormals, negative zero, extremes; strings with
    /// accents, scripts, emoji, controls, quotes; dates with offsets and ticks; decimals. The sink prints
    /// each exactly (a double by its bits), so that the threads placement's lines can be compared.
    /// </summary>
    private static void Values(Graph graph)
    {
        var made = graph.Stream<Odd>("made");
        var passed = graph.Stream<Odd>("passed");
        graph.Source("maker", made, OddValues());
        graph.Map("relay", made, passed, o => o with { Index = o.Index + 1000 });
        graph.Process("printer", p =>
        {
            var lines = new List<string>();
            p.On(passed, o => lines.Add(
                $"{o.Index} {BitConverter.DoubleToInt64Bits(o.Number):X16} {o.Money.ToString(System.Globalization.CultureInfo.InvariantCulture)} " +
                $"{string.Join(",", o.Text.Take(40).Select(c => ((int)c).ToString("X4")))} {o.Text.Length} {o.At.UtcTicks} {o.At.Offset.TotalMinutes} " +
                $"{string.Join(";", o.Tags)} {o.Flag?.ToString() ?? "null"}"));
            p.OnCompleted(() =>
            {
                Console.WriteLine($"printer: {lines.Count} values");
                foreach (string line in lines) Console.WriteLine("value: " + line);
            });
        });

        static IEnumerable<Odd> OddValues()
        {
            double[] numbers =
            [
                0.1 + 0.2, 1.0 / 3, -0.0, 0.0, double.Epsilon, 2.2250738585072009E-308, double.MaxValue, double.MinValue,
                123456789.123456789, -1.5e-300, Math.PI, Math.E, 9007199254740993, 0.30000000000000004,
                double.NaN, double.PositiveInfinity, double.NegativeInfinity,
            ];
            string[] texts =
            [
                "", "plain", "café", "Grüße", "日本語", "😀 emoji 👩‍👩‍👧", "line\nbreak\ttab", "quote \" and \\ backslash", "\u0001\u001f controls",
                "\u00e9 vs e\u0301", new string('x', 70_000) + "end", "\U00010000 outside the basic plane", "<script>&amp;</script>", "Ωmega ∑ ∞",
            ];
            decimal[] money = [0m, 0.1m, -79228162514264337593543950335m, 79228162514264337593543950335m, 1.0000000000000000000000000001m, 12.50m];
            DateTimeOffset[] times =
            [
                new DateTimeOffset(2026, 12, 2, 13, 0, 0, 123, TimeSpan.FromHours(5.5)).AddTicks(4567),
                DateTimeOffset.MinValue, DateTimeOffset.MaxValue, new DateTimeOffset(1970, 1, 1, 0, 0, 0, TimeSpan.Zero),
                new DateTimeOffset(2024, 2, 29, 23, 59, 59, TimeSpan.FromHours(-14)),
            ];
            int index = 0;
            foreach (double number in numbers)
            foreach (string text in texts)
            {
                yield return new Odd(index, number, money[index % money.Length], text, times[index % times.Length],
                    Enumerable.Range(0, index % 4).Select(i => $"t{i}é").ToArray(), (index % 3) switch { 0 => null, 1 => true, _ => false });
                index++;
            }
        }
    }

    public sealed record Odd(int Index, double Number, decimal Money, string Text, DateTimeOffset At, string[] Tags, bool? Flag);

    /// <summary>The Tutorial's shape with a paced source (about a second in every placement), watched through the "Millrace" meter.</summary>
    private static void Metrics(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        var squares = graph.Stream<long>("squares");
        var roots = graph.Stream<double>("roots");
        graph.Source("web", numbers, Paced());
        graph.Map("process1", numbers, squares, x => x * x);
        graph.Map("process2", squares, roots, x => Math.Sqrt(x));
        graph.Process("db", p =>
        {
            double sum = 0;
            p.On(roots, r => sum += r);
            p.OnCompleted(() => Console.WriteLine($"db: sum of roots {sum}"));
        });

        static IEnumerable<long> Paced()
        {
            for (long i = 0; i < 200_000; i++)
            {
                if (i % 2000 == 0) Thread.Sleep(10);
                yield return i;
            }
        }
    }

    /// <summary>Several operators in a row, their results printed by one process: the same lines in every placement.</summary>
    private static void OperatorPipeline(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        var squares = graph.Stream<long>("squares");
        var evens = graph.Stream<long>("evens");
        var doubled = graph.Stream<long>("doubled");
        var sums = graph.Stream<long>("sums");
        var pairs = graph.Stream<string>("pairs");
        var tagged = graph.Stream<Tagged<long>>("tagged");
        var back0 = graph.Stream<long>("back0");
        var back1 = graph.Stream<long>("back1");
        var batches = graph.Stream<long[]>("batches");
        graph.Source("source", numbers, Range(100));
        graph.Map("square", numbers, squares, x => x * x);
        graph.Filter("even", squares, evens, x => x % 2 == 0);
        graph.FlatMap("twice", evens, doubled, x => new[] { x, x });
        graph.Window("sum4", doubled, sums, 4, 4, w => w.Sum());
        graph.Zip("pair", numbers, sums, pairs, (n, s) => $"{n}:{s}");
        graph.Mix("mix", new[] { evens, squares }, tagged);
        graph.Separate("separate", tagged, new[] { back0, back1 });
        graph.Batch("batch", back0, batches, 7);
        var cubes = graph.Stream<long>("cubes");
        var perThousand = graph.Stream<string>("per-thousand");
        graph.ParallelMap("cube", numbers, cubes, x => x * x * x, workers: 2);
        graph.EventTimeWindow("per-1000", squares, perThousand, x => x, size: 1000, step: 1000, (start, xs) => $"{start}:{xs.Count}");
        graph.Process("printer", p =>
        {
            var seen = new List<string>();
            long back1Sum = 0, back1Count = 0;
            var sizes = new List<int>();
            long batchSum = 0;
            p.On(pairs, seen.Add);
            p.On(back1, x => { back1Sum += x; back1Count++; });
            p.On(batches, b => { sizes.Add(b.Length); batchSum += b.Sum(); });
            var cubeList = new List<long>();
            var thousands = new List<string>();
            p.On(cubes, cubeList.Add);
            p.On(perThousand, thousands.Add);
            p.OnCompleted(() =>
            {
                Console.WriteLine($"pairs: {seen.Count}, first {string.Join(" ", seen.Take(3))}, last {seen[^1]}");
                Console.WriteLine($"squares again: {back1Count} items, sum {back1Sum}");
                Console.WriteLine($"batches: {string.Join(",", sizes)}, sum {batchSum}");
                Console.WriteLine($"cubes: {cubeList.Count}, in order {cubeList.SequenceEqual(cubeList.Order())}, sum {cubeList.Sum()}");
                Console.WriteLine($"squares per thousand: {string.Join(" ", thousands.Take(4))} ... {thousands[^1]} ({thousands.Count} windows)");
            });
        });
    }

    /// <summary>
    /// Two processes in a row that each emit two items per item, into a sink that skips repeats:
    /// every item must keep an id of its own (nothing is skipped where nothing was delivered twice).
    /// </summary>
    private static void FanOut(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        var doubled = graph.Stream<long>("doubled");
        var quadrupled = graph.Stream<long>("quadrupled");
        graph.Source("source", numbers, Range(1000));
        void Split(string name, Stream<long> input, Stream<long> output) => graph.Process(name, p =>
        {
            var o = p.Output(output);
            p.On(input, x =>
            {
                o.Emit(x * 2);
                o.Emit(x * 2 + 1);
            });
        });
        Split("split1", numbers, doubled);
        Split("split2", doubled, quadrupled);
        graph.Process("sink", p =>
        {
            p.SkipRepeats();
            long n = 0, sum = 0;
            p.On(quadrupled, x =>
            {
                n++;
                sum += x;
            });
            p.OnCompleted(() => Console.WriteLine($"sink: {n} items, sum {sum}"));
        });
    }

    /// <summary>A ring whose first stream is also read by a watcher outside it: the watcher must end too.</summary>
    private static void CycleWithWatcher(Graph graph)
    {
        var s1 = graph.Stream<long>("s1");
        var s2 = graph.Stream<long>("s2");
        var done = graph.Stream<long>("done");
        graph.Source("launcher", s1, Enumerable.Range(0, 50).Select(i => (long)(i % 7)));
        Passer(graph, "p1", s1, s2, done);
        Passer(graph, "p2", s2, s1, done);
        Tally(graph, done);
        graph.Process("watcher", p =>
        {
            long n = 0;
            p.On(s2, _ => n++);
            p.OnCompleted(() => Console.WriteLine($"watcher: {n} items"));
        });
    }

    /// <summary>
    /// A graph that comes out differently in every OS process (an extra process when started as a
    /// child): wrong on purpose, for the processes placement's check.
    /// </summary>
    private static void UnstableGraph(Graph graph)
    {
        var numbers = graph.Stream<int>("numbers");
        graph.Source("src", numbers, Enumerable.Range(0, 10));
        graph.Process("sink", p => p.On(numbers, _ => { }));
        if (Environment.GetEnvironmentVariable("MILLRACE_CHILD") is not null)
            graph.Process("only-in-children", p => p.OnStart(() => { }));
    }

    /// <summary>Two processes that each emit four items per item they take, in a cycle: their queues fill up.</summary>
    private static void Deadlock(Graph graph)
    {
        var toA = graph.Stream<int>("to_a");
        var toB = graph.Stream<int>("to_b");
        graph.Process("a", p =>
        {
            var output = p.Output(toB);
            p.OnStart(() => output.Emit(1));
            p.On(toA, x =>
            {
                for (int i = 0; i < 4; i++) output.Emit(x);
            });
        });
        graph.Process("b", p =>
        {
            var output = p.Output(toA);
            p.On(toB, x =>
            {
                for (int i = 0; i < 4; i++) output.Emit(x);
            });
        });
    }

    /// <summary>
    /// A user codec that garbles reading 1013 on the way out: the reader's OS process cannot decode
    /// that batch (only where items cross a boundary; in threads placement nothing is encoded).
    /// </summary>
    private static void Corrupt(Graph graph)
    {
        graph.UseCodec(new FragileCodec());
        var readings = graph.Stream<Reading>("readings");
        graph.Source("sensor", readings, Enumerable.Range(0, 5000).Select(i => new Reading(i)));
        graph.Process("store", p =>
        {
            long n = 0;
            p.On(readings, _ => n++);
            p.OnCompleted(() => Console.WriteLine($"store: {n} readings"));
        });
    }

    /// <summary>100,000 numbers, doubled, read by a fast and a slow reader: both see all, in order.</summary>
    private static void Order(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        var doubled = graph.Stream<long>("doubled");
        graph.Source("src", numbers, Range(100_000));
        graph.Process("double", p =>
        {
            var output = p.Output(doubled);
            p.On(numbers, x => output.Emit(2 * x));
        });
        foreach (string reader in new[] { "fast", "slow" })
        {
            graph.Process(reader, p =>
            {
                long expected = 0, sum = 0;
                bool inOrder = true;
                p.On(doubled, x =>
                {
                    inOrder &= x == 2 * expected;
                    expected++;
                    sum += x;
                    if (reader == "slow" && expected % 20_000 == 0) Thread.Sleep(5);
                });
                p.OnCompleted(() => Console.WriteLine($"{reader}: {expected} items, in order: {inOrder}, sum {sum}"));
            });
        }
    }

    /// <summary>A process with a quick input and a slow one completes only after both ended.</summary>
    private static void TwoInputs(Graph graph)
    {
        var quick = graph.Stream<int>("quick");
        var slow = graph.Stream<int>("slow");
        graph.Source("quick-src", quick, Enumerable.Range(0, 10));
        graph.Source("slow-src", slow, Slowly(30));
        graph.Process("both", p =>
        {
            int a = 0, b = 0;
            p.On(quick, _ => a++);
            p.On(slow, _ => b++);
            p.OnCompleted(() => Console.WriteLine($"both: completed after {a} + {b}"));
        });
    }

    /// <summary>Two writers of one stream: each writer's items stay in order.</summary>
    private static void Merge(Graph graph)
    {
        var merged = graph.Stream<string>("merged");
        graph.Source("a", merged, Enumerable.Range(0, 5000).Select(i => $"a{i}"));
        graph.Source("b", merged, Enumerable.Range(0, 5000).Select(i => $"b{i}"));
        graph.Process("sink", p =>
        {
            var next = new Dictionary<char, int> { ['a'] = 0, ['b'] = 0 };
            bool inOrder = true;
            p.On(merged, s =>
            {
                inOrder &= int.Parse(s.AsSpan(1)) == next[s[0]];
                next[s[0]]++;
            });
            p.OnCompleted(() => Console.WriteLine($"sink: a {next['a']}, b {next['b']}, each in order: {inOrder}"));
        });
    }

    /// <summary>A handler throws on item 1234 of an endless stream.</summary>
    private static void Fail(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        var halves = graph.Stream<long>("halves");
        graph.Source("forever", numbers, Range(long.MaxValue));
        graph.Process("picky", p =>
        {
            var output = p.Output(halves);
            p.On(numbers, x =>
            {
                if (x == 1234) throw new InvalidOperationException("1234 is not welcome");
                output.Emit(x / 2);
            });
        });
        graph.Process("sink", p => p.On(halves, _ => { }));
    }

    /// <summary>An endless source; a reader halts the application at item 10,000.</summary>
    private static void Halt(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        graph.Source("forever", numbers, Counted());
        graph.Process("watcher", p => p.On(numbers, x =>
        {
            if (x == 10_000) p.Halt("enough");
        }));

        // What the source took from its enumerable, said from wherever it runs when the enumerable is let go.
        static IEnumerable<long> Counted()
        {
            long taken = 0;
            try
            {
                for (long i = 0; ; i++)
                {
                    taken++;
                    yield return i;
                }
            }
            finally
            {
                Console.WriteLine($"forever: took {taken} numbers");
            }
        }
    }

    /// <summary>
    /// A writer as fast as it can go and a slow reader; how far the writer runs ahead is measured from
    /// outside the library: the writer counts what it emitted in a memory-mapped file
    /// (MILLRACE_SCENARIO_FILE, shared by every OS process of the run), and the reader compares it with
    /// what it has taken, at every item.
    /// </summary>
    private static void Bounded(Graph graph)
    {
        var numbers = graph.Stream<long>("numbers");
        string file = Environment.GetEnvironmentVariable("MILLRACE_SCENARIO_FILE")
                      ?? throw new InvalidOperationException("MILLRACE_SCENARIO_FILE names the file the writer and the reader share.");
        const long count = 60_000;
        // MILLRACE_SCENARIO_STALL_MS: the reader stops once (at item 1,000) for that long, its queues full all that time.
        int stall = int.TryParse(Environment.GetEnvironmentVariable("MILLRACE_SCENARIO_STALL_MS"), out int ms) ? ms : 0;
        graph.Source("writer", numbers, Written());
        graph.Process("reader", p =>
        {
            Shared? shared = null;
            long taken = 0, lead = 0, outOfOrder = 0;
            p.OnStart(() => shared = new Shared(file));
            p.On(numbers, x =>
            {
                // Under pressure the broker refuses messages, which the writer publishes again after newer ones: still in order here.
                if (x != taken) outOfOrder++;
                taken++;
                lead = Math.Max(lead, shared!.Read() - taken);
                if (taken % 100 == 0) Thread.Sleep(1); // slow: the writer fills every queue on the way
                if (taken == 1000 && stall > 0) Thread.Sleep(stall);
            });
            p.OnCompleted(() => Console.WriteLine($"reader: {taken} items, writer at most {lead} ahead, {outOfOrder} out of order"));
            p.Finally(() => shared?.Dispose());
        });

        IEnumerable<long> Written()
        {
            using var shared = new Shared(file);
            for (long i = 0; i < count; i++)
            {
                shared.Write(i + 1); // counted before it is emitted
                yield return i;
            }
        }
    }

    /// <summary>One number in a memory-mapped file, seen by every OS process that maps it.</summary>
    private sealed class Shared : IDisposable
    {
        private readonly System.IO.MemoryMappedFiles.MemoryMappedFile _map;
        private readonly System.IO.MemoryMappedFiles.MemoryMappedViewAccessor _view;

        public Shared(string path)
        {
            _map = System.IO.MemoryMappedFiles.MemoryMappedFile.CreateFromFile(path, FileMode.OpenOrCreate, null, 8);
            _view = _map.CreateViewAccessor(0, 8);
        }

        public long Read() => _view.ReadInt64(0);

        public void Write(long value) => _view.Write(0, value);

        public void Dispose()
        {
            _view.Dispose();
            _map.Dispose();
        }
    }

    /// <summary>Tokens passed around a ring of three processes, one less each hop; ends by termination detection.</summary>
    private static void Ring(Graph graph)
    {
        var s1 = graph.Stream<long>("s1");
        var s2 = graph.Stream<long>("s2");
        var s3 = graph.Stream<long>("s3");
        var done = graph.Stream<long>("done");
        graph.Source("launcher", s1, Enumerable.Range(0, 500).Select(i => (long)(i % 37)));
        Passer(graph, "p1", s1, s2, done);
        Passer(graph, "p2", s2, s3, done);
        Passer(graph, "p3", s3, s1, done);
        Tally(graph, done);
    }

    /// <summary>Each token n > 0 becomes two tokens n-1 in a self-loop, then the cycle dies out.</summary>
    private static void GrowingCycle(Graph graph)
    {
        var work = graph.Stream<int>("work");
        var done = graph.Stream<long>("done");
        graph.Source("launcher", work, new[] { 8, 6 });
        graph.Process("splitter", p =>
        {
            var again = p.Output(work);
            var retired = p.Output(done);
            p.On(work, n =>
            {
                if (n == 0)
                {
                    retired.Emit(0);
                    return;
                }
                again.Emit(n - 1);
                again.Emit(n - 1);
            });
        });
        Tally(graph, done);
    }

    private static void Passer(Graph graph, string name, Stream<long> input, Stream<long> next, Stream<long> done) =>
        graph.Process(name, p =>
        {
            var onward = p.Output(next);
            var retired = p.Output(done);
            p.On(input, t =>
            {
                if (t == 0) retired.Emit(t);
                else onward.Emit(t - 1);
            });
        });

    private static void Tally(Graph graph, Stream<long> done) => graph.Process("tally", p =>
    {
        long n = 0;
        p.On(done, _ => n++);
        p.OnCompleted(() => Console.WriteLine($"tally: {n} tokens reached zero"));
    });

    private static IEnumerable<long> Range(long count)
    {
        for (long i = 0; i < count; i++) yield return i;
    }

    private static async IAsyncEnumerable<int> Slowly(int count)
    {
        for (int i = 0; i < count; i++)
        {
            await Task.Delay(3);
            yield return i;
        }
    }
}

public sealed record Reading(int Value);

/// <summary>Four bytes per reading; reading 1013 goes out as bytes that do not decode.</summary>
public sealed class FragileCodec : ICodec<Reading>
{
    public string Name => "fragile";

    public void Encode(ReadOnlySpan<Reading> items, System.Buffers.IBufferWriter<byte> output)
    {
        foreach (Reading r in items)
        {
            Span<byte> span = output.GetSpan(4);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(span, r.Value == 1013 ? -1 : r.Value);
            output.Advance(4);
        }
    }

    public Reading[] Decode(ReadOnlySpan<byte> data, int count)
    {
        var items = new Reading[count];
        for (int i = 0; i < count; i++)
        {
            int value = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(data[(4 * i)..]);
            items[i] = value >= 0 ? new Reading(value) : throw new InvalidDataException($"reading {i} of the batch is garbled");
        }
        return items;
    }
}

/// <summary>Reads the "Millrace" meter every 50 ms while the run lasts (as dotnet-counters or OpenTelemetry would) and says what it saw.</summary>
sealed class MetricsWatcher : IDisposable
{
    private readonly System.Diagnostics.Metrics.MeterListener _listener = new();
    private readonly Dictionary<string, List<long>> _itemsIn = new();
    private readonly HashSet<string> _instruments = new();
    private long _maxDepth, _capacity, _looks;
    private readonly Timer _timer;

    public MetricsWatcher()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Millrace") listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            lock (_instruments)
            {
                _instruments.Add(instrument.Name);
                string? process = null;
                foreach (var tag in tags) if (tag.Key == "process") process = tag.Value as string;
                if (instrument.Name == "millrace.process.items_in" && process is not null)
                {
                    if (!_itemsIn.TryGetValue(process, out var seen)) _itemsIn[process] = seen = new List<long>();
                    seen.Add(value);
                }
                if (instrument.Name == "millrace.stream.queue_depth") _maxDepth = Math.Max(_maxDepth, value);
                if (instrument.Name == "millrace.stream.queue_capacity") _capacity = Math.Max(_capacity, value);
            }
        });
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
        {
            lock (_instruments) _instruments.Add(instrument.Name);
        });
        _listener.Start();
        _timer = new Timer(_ =>
        {
            _listener.RecordObservableInstruments();
            Interlocked.Increment(ref _looks);
        }, null, 50, 50);
    }

    public void Report(RunOptions options)
    {
        _timer.Dispose();
        lock (_instruments)
        {
            Console.WriteLine("metrics: instruments " + string.Join(",", _instruments.Order(StringComparer.Ordinal)));
            Console.WriteLine("metrics: processes " + string.Join(",", _itemsIn.Keys.Order(StringComparer.Ordinal)));
            List<long> db = _itemsIn.GetValueOrDefault("db") ?? new List<long>();
            bool rising = db.Zip(db.Skip(1)).All(p => p.Second >= p.First) && db.Distinct().Count() >= 3;
            Console.WriteLine($"metrics: db items_in rose over {db.Distinct().Count()} looks: {(rising ? "yes" : "no")} ({string.Join(" ", db.Distinct().Take(12))})");
            Console.WriteLine($"metrics: max queue depth {_maxDepth}, capacity {_capacity}, within bounds: {(_capacity >= options.StreamCapacity && _maxDepth <= _capacity + options.BatchSize ? "yes" : "no")}");
        }
    }

    public void Dispose()
    {
        _timer.Dispose();
        _listener.Dispose();
    }
}
