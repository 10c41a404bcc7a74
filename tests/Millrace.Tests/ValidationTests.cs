namespace Millrace.Tests;

public class ValidationTests
{
    private static GraphValidationException Invalid(Graph graph) => Assert.Throws<GraphValidationException>(graph.Validate);

    [Fact]
    public async Task Unknown_stream_is_named_with_the_process_that_uses_it()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        graph.Source("web", numbers, new[] { 1 });
        graph.Process("p", p => p.On(new Stream<int>("numbrs"), _ => { }));
        graph.Process("sink", p => p.On(numbers, _ => { }));

        var e = Invalid(graph);
        Assert.Contains(e.Problems, m => m.Contains("'p' reads stream 'numbrs', which is not declared") && m.Contains("numbers"));
        await Assert.ThrowsAsync<GraphValidationException>(() => graph.RunAsync());
    }

    [Fact]
    public void Duplicate_names_are_reported()
    {
        var graph = new Graph();
        var a = graph.Stream<int>("a");
        graph.Stream<long>("a");
        graph.Source("src", a, new[] { 1 });
        graph.Process("sink", p => p.On(a, _ => { }));
        graph.Process("sink", p => p.On(a, _ => { }));

        var e = Invalid(graph);
        Assert.Contains(e.Problems, m => m.Contains("Stream 'a' is declared twice (as Int32 and as Int64)"));
        Assert.Contains(e.Problems, m => m.Contains("Process 'sink' is declared twice"));
    }

    [Fact]
    public void Stream_nobody_writes_or_reads_is_reported()
    {
        var graph = new Graph();
        var orphan = graph.Stream<int>("orphan");
        var lost = graph.Stream<int>("lost");
        graph.Stream<int>("unused");
        graph.Process("reader", p => p.On(orphan, _ => { }));
        graph.Source("writer", lost, new[] { 1 });

        var e = Invalid(graph);
        Assert.Contains(e.Problems, m => m.Contains("Stream 'orphan' is read by 'reader' but no process writes it"));
        Assert.Contains(e.Problems, m => m.Contains("Stream 'lost' is written by 'writer' but no process reads it"));
        Assert.Contains(e.Problems, m => m.Contains("Stream 'unused' is declared but no process reads or writes it"));
    }

    [Fact]
    public void Type_mismatch_between_stream_and_reader_is_reported()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        graph.Source("web", numbers, new[] { 1 });
        graph.Process("reader", p => p.On(new Stream<string>("numbers"), _ => { }));

        var e = Invalid(graph);
        Assert.Contains(e.Problems, m => m.Contains("'reader' reads stream 'numbers' as String, but the stream carries Int32"));
    }

    [Fact]
    public void Configure_that_throws_and_process_that_does_nothing_are_reported()
    {
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        graph.Source("src", s, new[] { 1 });
        graph.Process("broken", _ => throw new InvalidOperationException("no config file"));
        graph.Process("idle", _ => { });
        graph.Process("sink", p => p.On(s, _ => { }));

        var e = Invalid(graph);
        Assert.Contains(e.Problems, m => m.Contains("'broken': its configure action threw InvalidOperationException: no config file"));
        Assert.Contains(e.Problems, m => m.Contains("'idle' has no inputs, no start action and is no source"));
    }

    [Fact]
    public void Reading_one_stream_twice_in_a_process_is_refused()
    {
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        graph.Source("src", s, new[] { 1 });
        graph.Process("sink", p =>
        {
            p.On(s, _ => { });
            p.On(s, _ => { });
        });
        var e = Invalid(graph);
        Assert.Contains(e.Problems, m => m.Contains("already has a handler for stream 's'"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("slash/name")]
    public void Bad_names_are_refused_at_declaration(string name)
    {
        var graph = new Graph();
        var e = Assert.Throws<ArgumentException>(() => graph.Stream<int>(name));
        Assert.Contains("stream name", e.Message);
        Assert.Throws<ArgumentException>(() => graph.Process(name, _ => { }));
    }

    [Fact]
    public void Emit_outside_a_run_is_refused_with_the_process_and_stream_named()
    {
        var graph = new Graph();
        var s = graph.Stream<int>("s");
        Output<int>? kept = null;
        graph.Process("early", p =>
        {
            kept = p.Output(s);
            p.OnStart(() => { });
        });
        graph.Process("sink", p => p.On(s, _ => { }));
        graph.Validate();
        var e = Assert.Throws<InvalidOperationException>(() => kept!.Emit(1));
        Assert.Contains("'early' cannot emit to stream 's'", e.Message);
    }

    [Fact]
    public void Options_parse_known_flags_and_keep_the_rest()
    {
        var options = RunOptions.Parse(new[] { "--count", "7", "--placement", "threads", "--capacity", "64", "--verbose" });
        Assert.Equal("threads", options.Placement);
        Assert.Equal(64, options.StreamCapacity);
        Assert.Equal(new[] { "--count", "7", "--verbose" }, options.OtherArguments);

        var unknown = Assert.Throws<ArgumentException>(() => RunOptions.Parse(new[] { "--placement", "mars" }));
        Assert.Contains("Unknown placement 'mars'", unknown.Message);
        var missing = Assert.Throws<ArgumentException>(() => RunOptions.Parse(new[] { "--capacity" }));
        Assert.Contains("--capacity needs a value", missing.Message);
        var bad = Assert.Throws<ArgumentException>(() => RunOptions.Parse(new[] { "--batch", "0" }));
        Assert.Contains("--batch needs a whole number of at least 1; got '0'", bad.Message);
    }

    [Fact]
    public async Task Error_policies_from_the_command_line_are_checked_and_name_what_is_wrong()
    {
        Assert.Equal(ErrorPolicy.Skip, RunOptions.Parse(["--on-error", "parse=skip"]).ErrorPolicies["parse"]);
        Assert.Equal("retry 3 times, then dead-letter", RunOptions.Parse(["--on-error", "parse = retry:3:dead-letter"]).ErrorPolicies["parse"].ToString());
        foreach (string bad in new[] { "retry:0", "retry:21", "retry:2:retry:1", "ignore", "retry:x" })
            Assert.Contains("is not an error policy", Assert.Throws<ArgumentException>(() => RunOptions.Parse(["--on-error", "parse=" + bad])).Message);
        Assert.Contains("takes PROCESS=POLICY", Assert.Throws<ArgumentException>(() => RunOptions.Parse(["--on-error", "skip"])).Message);

        var graph = new Graph();
        Stream<int> numbers = graph.Stream<int>("numbers");
        graph.Source("numbers", numbers, Enumerable.Range(0, 10));
        graph.Sink("db", numbers, _ => { });
        var unknown = await Assert.ThrowsAsync<ArgumentException>(() => graph.RunAsync(RunOptions.Parse(["--on-error", "nobody=skip"])));
        Assert.Contains("--on-error names process 'nobody', which the graph does not have. Its processes: numbers, db.", unknown.Message);
        var noStream = await Assert.ThrowsAsync<ArgumentException>(() => graph.RunAsync(RunOptions.Parse(["--on-error", "db=dead-letter"])));
        Assert.Contains("process 'db' writes no dead letters", noStream.Message);
        Assert.Equal(10, (await graph.RunAsync(RunOptions.Parse(["--on-error", "db=skip", "--quiet"]))).Processes["db"].ItemsIn);
    }

    [Fact]
    public async Task Built_in_operators_get_a_policy_by_name_in_code_and_the_command_line_still_wins()
    {
        Graph Build(List<long> results, List<DeadLetter> letters)
        {
            var graph = new Graph();
            Stream<string> lines = graph.Stream<string>("lines");
            Stream<long> numbers = graph.Stream<long>("numbers");
            // Declared before the process it names: applied when the graph is built.
            graph.OnError("parse", ErrorPolicy.DeadLetter(graph.DeadLetters));
            graph.Source("lines", lines, ["1", "two", "3", "", "5"]);
            graph.Map("parse", lines, numbers, long.Parse);
            graph.Sink("sum", numbers, results.Add);
            graph.Sink("letters", graph.DeadLetters, letters.Add);
            return graph;
        }
        var results = new List<long>();
        var letters = new List<DeadLetter>();
        RunResult result = await Build(results, letters).RunWithin(new RunOptions { Quiet = true });
        Assert.Empty(result.Errors);
        Assert.Equal([1L, 3, 5], results);
        Assert.Equal([("\"two\"", 1L), ("\"\"", 3L)], letters.Select(d => (d.Item, d.ItemIndex)));
        Assert.All(letters, d => Assert.Equal(("parse", "lines", "System.FormatException"), (d.Process, d.Stream, d.ExceptionType)));
        Assert.Equal(2, result.Processes["parse"].ItemsDeadLettered);

        // --on-error replaces it, as it replaces a policy set in the process's own code.
        results.Clear();
        letters.Clear();
        result = await Build(results, letters).RunWithin(RunOptions.Parse(["--on-error", "parse=skip", "--quiet"]));
        Assert.Equal([1L, 3, 5], results);
        Assert.Empty(letters);
        Assert.Equal(2, result.Processes["parse"].ItemsSkipped);

        // A name the graph does not have, and a dead-letter policy with no stream to write, are refused by name.
        var graph = new Graph();
        Stream<int> ints = graph.Stream<int>("ints");
        graph.Source("ints", ints, [1]);
        graph.Sink("db", ints, _ => { });
        graph.OnError("dbb", ErrorPolicy.Skip);
        var unknown = await Assert.ThrowsAsync<GraphValidationException>(() => graph.RunWithin(new RunOptions { Quiet = true }));
        Assert.Contains("graph.OnError names process 'dbb', which the graph does not have. Its processes: ints, db.", unknown.Message);
        Assert.Throws<ArgumentException>(() => graph.OnError("d b", ErrorPolicy.Skip));
        var other = new Graph();
        ints = other.Stream<int>("ints");
        other.Source("ints", ints, [1]);
        other.Sink("db", ints, _ => { });
        other.OnError("db", ErrorPolicy.Parse("dead-letter"));
        var noStream = await Assert.ThrowsAnyAsync<Exception>(() => other.RunWithin(new RunOptions { Quiet = true }));
        Assert.Contains("names no stream for its dead letters; use ErrorPolicy.DeadLetter(graph.DeadLetters)", noStream.Message);
    }

    public sealed record Awkward(long X)
    {
        public long Y => X == 2 ? throw new InvalidCastException("a getter that fails on bad data") : X;
    }

    [Fact]
    public async Task Dead_letters_of_items_that_cannot_be_written_as_JSON_carry_their_text_and_the_limit_set_in_code_survives_the_command_line()
    {
        var graph = new Graph();
        Stream<Awkward> items = graph.Stream<Awkward>("items");
        graph.Source("source", items, Enumerable.Range(0, 5).Select(i => new Awkward(i)));
        graph.Process("check", p =>
        {
            p.OnError(ErrorPolicy.DeadLetter(graph.DeadLetters));
            p.On(items, a => { if (a.X == 2) throw new FormatException("two is bad"); });
        });
        var letters = new List<DeadLetter>();
        graph.Sink("letters", graph.DeadLetters, letters.Add);
        RunResult result = await graph.RunWithin(new RunOptions { Quiet = true });
        Assert.Empty(result.Errors);
        DeadLetter d = Assert.Single(letters);
        Assert.Equal(("check", "items", 2L, "System.FormatException", "two is bad"), (d.Process, d.Stream, d.ItemIndex, d.ExceptionType, d.Message));
        Assert.Contains("Awkward", d.Item); // its text: its JSON could not be written
        Assert.Equal(1, result.Processes["check"].ItemsDeadLettered);

        // A limit of failures set in code stays when the command line changes the policy.
        var strict = new Graph();
        Stream<int> numbers = strict.Stream<int>("numbers");
        strict.Source("numbers", numbers, Enumerable.Range(0, 10));
        strict.Process("parse", p =>
        {
            p.OnError(ErrorPolicy.Skip with { MaxFailures = 1 });
            p.On(numbers, x => { if (x % 3 == 0) throw new FormatException($"{x}"); });
        });
        RunResult stopped = await strict.RunWithin(RunOptions.Parse(["--on-error", "parse=retry:1:skip", "--quiet"]));
        Assert.Equal(RunOutcome.Failed, stopped.Outcome);
        Assert.Contains(stopped.Errors, e => e.Message.Contains("failed on more than 1 items", StringComparison.Ordinal));

        // A stream declared inside a configure action is refused (it would be declared again at every build).
        var inside = new Graph();
        Stream<int> first = inside.Stream<int>("first");
        inside.Source("first", first, [1]);
        inside.Process("maker", p =>
        {
            Stream<int> late = inside.Stream<int>("late");
            p.On(first, _ => { });
        });
        var e = await Assert.ThrowsAsync<GraphValidationException>(() => inside.RunWithin(new RunOptions { Quiet = true }));
        Assert.Contains("Stream 'late' is declared inside a process's configure action", e.Message);
    }
}
