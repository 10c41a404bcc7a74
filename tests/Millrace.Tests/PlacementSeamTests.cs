using Millrace.Placements;

namespace Millrace.Tests;

/// <summary>
/// A placement written outside the library, through the public seam only: it is found by name,
/// sees the checked graph, and runs the contract's simplest scenarios with the same results as the
/// threads placement.
/// </summary>
public class PlacementSeamTests
{
    /// <summary>
    /// A toy placement: it checks what it is given and runs every process here, counting its runs.
    /// What a wrapper placement (one that logs, checks or retries) would look like.
    /// </summary>
    private sealed class CountingPlacement : IPlacement
    {
        public int Runs;
        public GraphShape? LastGraph;

        public string Name => "counting-toy";

        public async Task<RunResult> RunAsync(PlacementContext context)
        {
            Interlocked.Increment(ref Runs);
            LastGraph = context.Graph;
            Assert.Same(this, PlacementRegistry.Get(context.Options.Placement));
            return await context.RunHereAsync();
        }
    }

    private static readonly CountingPlacement Toy = new();

    // A static constructor runs before the first test of the class, whichever it is (a field initializer alone may run later).
    static PlacementSeamTests() => PlacementRegistry.Register(Toy);

    private static RunOptions Options(string placement) => new() { Placement = placement, HandleStopSignals = false };

    /// <summary>The Tutorial's shape: web → process1 → process2 → db, with a fan-out to a second reader.</summary>
    private static (Graph Graph, Func<(long Count, long Sum)> Result) Pipeline(int n)
    {
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        var squares = graph.Stream<long>("squares");
        var roots = graph.Stream<double>("roots");
        long count = 0, sum = 0;
        graph.Source("web", numbers, Enumerable.Range(0, n).Select(i => (long)i));
        graph.Map("process1", numbers, squares, x => x * x);
        graph.Map("process2", squares, roots, x => Math.Sqrt(x));
        graph.Process("db", p =>
        {
            p.On(roots, r => { count++; sum += (long)r; });
        });
        return (graph, () => (count, sum));
    }

    /// <summary>The second seed: x and y feed each other until y halts, or the cycle ends by termination detection.</summary>
    private static (Graph Graph, Func<List<int>> Seen) PingPong(int rounds)
    {
        var graph = new Graph();
        var x = graph.Stream<int>("x");
        var y = graph.Stream<int>("y");
        var seen = new List<int>();
        graph.Process("process_x", p =>
        {
            var output = p.Output(y);
            p.On(x, v => { if (v < rounds) output.Emit(v + 1); });
        });
        graph.Process("process_y", p =>
        {
            var output = p.Output(x);
            p.OnStart(() => output.Emit(0));
            p.On(y, v => { lock (seen) seen.Add(v); output.Emit(v); });
        });
        return (graph, () => seen);
    }

    [Fact]
    public async Task A_placement_registered_through_the_public_seam_runs_a_pipeline_like_the_threads_placement()
    {
        int before = Toy.Runs;
        var (toyGraph, toyResult) = Pipeline(20_000);
        RunResult toy = await toyGraph.RunWithin(Options("counting-toy"));
        var (threadsGraph, threadsResult) = Pipeline(20_000);
        RunResult threads = await threadsGraph.RunWithin(Options("threads"));

        Assert.Equal(before + 1, Toy.Runs);
        Assert.Equal(RunOutcome.Completed, toy.Outcome);
        Assert.Equal(threadsResult(), toyResult());
        Assert.Equal((20_000L, 199_990_000L), toyResult());
        Assert.Equal(threads.Streams.ToDictionary(s => s.Key, s => s.Value.ItemsWritten), toy.Streams.ToDictionary(s => s.Key, s => s.Value.ItemsWritten));

        GraphShape shape = Toy.LastGraph!;
        Assert.Equal(new[] { "web", "process1", "process2", "db" }, shape.Processes.Select(p => p.Name));
        Assert.True(shape.Processes[0].IsSource);
        Assert.Equal(new[] { "numbers" }, shape.Processes[1].Inputs);
        StreamShape squares = shape.Streams.Single(s => s.Name == "squares");
        Assert.Equal(typeof(long), squares.ItemType);
        Assert.Equal(new[] { "process1" }, squares.Writers);
        Assert.Equal(new[] { "process2" }, squares.Readers);
        Assert.Empty(shape.Cycles);
    }

    [Fact]
    public async Task A_placement_registered_through_the_public_seam_ends_a_cycle_by_termination_detection()
    {
        var (graph, seen) = PingPong(1000);
        RunResult result = await graph.RunWithin(Options("counting-toy"));

        Assert.Equal(RunOutcome.Completed, result.Outcome);
        Assert.True(result.TerminationDetected);
        Assert.Equal(Enumerable.Range(1, 1000), seen());
        Assert.Equal(new[] { "process_x", "process_y" }, Toy.LastGraph!.Cycles.Single().Order());
    }

    [Fact]
    public void The_registry_lists_the_built_in_placements_and_finds_the_broker_library_beside_the_program()
    {
        IReadOnlyList<string> names = PlacementRegistry.Names;
        Assert.Contains("threads", names);
        Assert.Contains("processes", names);
        // The tests reference Millrace.RabbitMQ without touching its types here: found by its assembly attribute.
        Assert.Contains("broker", names);
        Assert.Equal("broker", PlacementRegistry.Get("broker").Name);
    }

    [Fact]
    public async Task An_unknown_placement_is_refused_before_anything_runs_naming_the_known_ones()
    {
        var e = Assert.Throws<ArgumentException>(() => RunOptions.Parse(new[] { "--placement", "threds" }));
        Assert.Contains("Unknown placement 'threds'", e.Message);
        Assert.Contains("threads", e.Message);
        Assert.Contains("processes", e.Message);

        bool ran = false;
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        graph.Source("src", s, new[] { 1 });
        graph.Process("sink", p => p.On(s, _ => ran = true));
        await Assert.ThrowsAsync<ArgumentException>(() => graph.RunAsync(Options("nowhere")));
        Assert.False(ran);
    }

    /// <summary>
    /// A run id with a dot is refused before anything runs: on the broker a run's names are "millrace.RUN.STREAM" and stream
    /// names may hold dots, so run "x" with stream "y.s" and run "x.y" with stream "s" would share an exchange and queues.
    /// A program whose name has dots (the default run id on the broker) gets dashes for them.
    /// </summary>
    [Theory]
    [InlineData("threads")]
    [InlineData("processes")]
    [InlineData("broker")]
    public async Task A_run_id_with_a_dot_is_refused_before_anything_runs(string placement)
    {
        bool ran = false;
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        graph.Source("src", s, new[] { 1 });
        graph.Process("sink", p => p.On(s, _ => ran = true));
        var options = Options(placement);
        options.RunId = "nightly.1";
        var e = await Assert.ThrowsAsync<ArgumentException>(() => graph.RunAsync(options));
        Assert.Contains("RunId (--run-id)", e.Message);
        Assert.Contains("no '.'", e.Message);
        Assert.Contains("'nightly.1'", e.Message);
        Assert.False(ran);
        Assert.Contains("'x.y'", Assert.Throws<ArgumentException>(() => RunOptions.Parse(["--run-id", "x.y"])).Message);
        Assert.Equal("nightly-1_a", RunOptions.Parse(["--run-id", "nightly-1_a"]).RunId);

        Assert.Equal("my-app-v2", Millrace.RabbitMQ.BrokerPlacement.DefaultRunId("My.App v2"));
        Assert.Equal("tutorial", Millrace.RabbitMQ.BrokerPlacement.DefaultRunId("Tutorial"));
        Assert.Equal("run", Millrace.RabbitMQ.BrokerPlacement.DefaultRunId(null));
    }

    [Fact]
    public void A_name_taken_by_another_kind_of_placement_or_a_name_that_is_not_plain_is_refused()
    {
        var taken = Assert.Throws<ArgumentException>(() => PlacementRegistry.Register(new Named("threads")));
        Assert.Contains("'threads' is taken", taken.Message);
        var bad = Assert.Throws<ArgumentException>(() => PlacementRegistry.Register(new Named("My Placement")));
        Assert.Contains("lower-case letters, digits and '-'", bad.Message);
        Assert.DoesNotContain("My Placement", PlacementRegistry.Names);
    }

    [Fact]
    public async Task A_placement_that_does_not_take_checkpoints_refuses_a_run_with_checkpoints_on()
    {
        PlacementRegistry.Register(new Named("no-checkpoints"));
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        bool ran = false;
        graph.Source("src", s, Enumerable.Range(0, 3).Select(i => { ran = true; return i; }));
        graph.Sink("sink", s, _ => { });
        var e = await Assert.ThrowsAsync<ArgumentException>(() => graph.RunAsync(new RunOptions { Placement = "no-checkpoints", CheckpointInterval = TimeSpan.FromSeconds(1) }));
        Assert.Contains("not taken by the no-checkpoints placement", e.Message);
        Assert.False(ran);
    }

    private sealed class Named(string name) : IPlacement
    {
        public string Name => name;

        public Task<RunResult> RunAsync(PlacementContext context) => context.RunHereAsync();
    }

    [Fact]
    public void Per_placement_options_are_grouped_and_read_from_the_same_flags()
    {
        RunOptions processes = RunOptions.Parse(new[] { "--placement", "processes", "--group", "a,b", "--group", "c" });
        Assert.Equal(new[] { new[] { "a", "b" }, new[] { "c" } }, processes.Processes.Groups);

        RunOptions broker = RunOptions.Parse(new[] { "--placement", "broker", "--broker", "amqp://h/", "--processes", "x,y", "--run-id", "r1" });
        Assert.Equal("amqp://h/", broker.Broker.Uri);
        Assert.Equal(new[] { "x", "y" }, broker.Broker.Processes);
        Assert.Equal("r1", broker.RunId);

        var wrongPlace = Assert.Throws<ArgumentException>(() => RunOptions.Parse(new[] { "--group", "a,b" }));
        Assert.Contains("--group", wrongPlace.Message);
        Assert.Contains("threads placement", wrongPlace.Message);
    }
}
