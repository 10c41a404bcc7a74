using System.CommandLine;

namespace Millrace.Tests;

/// <summary>MillraceMain: the exit codes for each way a program ends, decided in the program (no output is asserted here; ExampleTests read it).</summary>
public class MillraceMainTests
{
    private static Graph Numbers(Action<long> sink, int throwAt = -1, int haltAt = -1)
    {
        var graph = new Graph();
        Stream<long> numbers = graph.Stream<long>("numbers");
        graph.Source("source", numbers, Enumerable.Range(0, 10).Select(i => (long)i));
        graph.Process("sink", p => p.On(numbers, x =>
        {
            if (x == throwAt) throw new InvalidOperationException("boom");
            if (x == haltAt) p.Halt("enough");
            sink(x);
        }));
        return graph;
    }

    [Fact]
    public async Task Exit_codes_say_completed_failed_bad_usage_invalid_graph_and_halted()
    {
        long sum = 0;
        Assert.Equal(ExitCodes.Completed, await Numbers(x => sum += x).RunMainAsync(["--quiet"]));
        Assert.Equal(45, sum);
        Assert.Equal(ExitCodes.Failed, await Numbers(_ => { }, throwAt: 3).RunMainAsync(["--quiet"]));
        Assert.Equal(ExitCodes.Usage, await Numbers(_ => { }).RunMainAsync(["--quiet", "--placment", "processes"]));
        Assert.Equal(ExitCodes.Usage, await Numbers(_ => { }).RunMainAsync(["--quiet", "--capacity", "0"]));
        Assert.Equal(ExitCodes.Usage, await Numbers(_ => { }).RunMainAsync(["--quiet", "--on-error", "nobody=skip"]));
        Assert.Equal(ExitCodes.Completed, await Numbers(_ => { }, haltAt: 2).RunMainAsync(["--quiet"]));
        Assert.Equal(ExitCodes.Halted, await Numbers(_ => { }, haltAt: 2).RunMainAsync(["--quiet"], haltedExitCode: ExitCodes.Halted));

        var invalid = new Graph();
        Stream<int> unread = invalid.Stream<int>("unread");
        invalid.Source("source", unread, [1]);
        Assert.Equal(ExitCodes.Usage, await invalid.RunMainAsync(["--quiet"]));

        // A program's own options, typed, next to Millrace's; their values reach the graph.
        var count = new Option<int>("--count") { DefaultValueFactory = _ => 4 };
        long seen = 0;
        int exit = await MillraceMain.RunAsync(["--count", "7", "--quiet", "--batch", "2"], "test", [count], async (cli, options) =>
        {
            Assert.Equal(2, options.BatchSize);
            Assert.True(options.Quiet);
            var graph = new Graph();
            Stream<int> s = graph.Stream<int>("s");
            graph.Source("source", s, Enumerable.Range(0, cli.GetValue(count)));
            graph.Sink("sink", s, _ => seen++);
            return await graph.RunAsync(options);
        });
        Assert.Equal((ExitCodes.Completed, 7L), (exit, seen));
        Assert.True(RunOptions.IsStarter);
    }

    [Fact]
    public async Task Version_and_help_run_nothing_and_exceptions_after_the_run_are_failures_not_bad_usage()
    {
        // --version and --help print and end: the graph never runs.
        long ran = 0;
        Assert.Equal(0, await Numbers(_ => ran++).RunMainAsync(["--version"]));
        Assert.Equal(0, await Numbers(_ => ran++).RunMainAsync(["--help"]));
        Assert.Equal(0, ran);

        // The program's code throws after the run (an ArgumentException too): exit code 1, not "bad usage", not an abort.
        Assert.Equal(ExitCodes.Failed, await MillraceMain.RunAsync(["--quiet"], "test", [], async (_, options) =>
        {
            RunResult result = await Numbers(_ => ran++).RunAsync(options);
            throw new ArgumentException($"the program's own mistake after {result.Outcome}");
        }));
        Assert.Equal(10, ran);
        Assert.Equal(ExitCodes.Failed, await MillraceMain.RunAsync(["--quiet"], "test", [], (_, _) => throw new InvalidOperationException("before the run")));
        // ... but an ArgumentException before any process ran (the program checking its own options) is bad usage.
        Assert.Equal(ExitCodes.Usage, await MillraceMain.RunAsync(["--quiet"], "test", [], (_, _) => throw new ArgumentException("--count must be positive")));

        // --processes may be given more than once (as --group and --on-error): the names add up.
        RunOptions? seen = null;
        Assert.Equal(ExitCodes.Completed, await MillraceMain.RunAsync(["--quiet", "--placement", "broker", "--processes", "a", "--processes", "b,c"], "test", [], (_, options) =>
        {
            seen = options;
            return Numbers(_ => { }).RunAsync(new RunOptions { Quiet = true });
        }));
        Assert.Equal(["a", "b", "c"], seen!.Broker.Processes);
    }
}
