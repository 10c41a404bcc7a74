using Microsoft.Extensions.Logging;

namespace Millrace.Tests;

/// <summary>Structured log events through Microsoft.Extensions.Logging (RunOptions.Logger).</summary>
public sealed class LoggingTests
{
    private sealed record Entry(LogLevel Level, EventId Event, string Message, IReadOnlyDictionary<string, object?> Fields, Exception? Exception);

    /// <summary>Keeps every event with its fields, as a structured sink (Seq, OpenTelemetry, JSON console) would see them.</summary>
    private sealed class ListLogger : ILogger
    {
        public List<Entry> Entries { get; } = new();

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var fields = (state as IEnumerable<KeyValuePair<string, object?>>)?.ToDictionary(kv => kv.Key, kv => kv.Value) ?? new();
            lock (Entries) Entries.Add(new Entry(logLevel, eventId, formatter(state, exception), fields, exception));
        }
    }

    [Fact]
    public async Task A_run_logs_its_start_a_failure_with_its_process_stream_and_item_and_its_end()
    {
        var logger = new ListLogger();
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        graph.Source("source", numbers, Enumerable.Range(0, 100).Select(i => (long)i));
        graph.Sink("picky", numbers, x =>
        {
            if (x == 42) throw new InvalidOperationException("no 42s here");
        });
        RunResult result = await graph.RunWithin(new RunOptions { Logger = logger, RunId = "logged" });
        Assert.Equal(RunOutcome.Failed, result.Outcome);

        Entry started = Assert.Single(logger.Entries, e => e.Event.Name == "RunStarted");
        Assert.Equal(LogLevel.Information, started.Level);
        Assert.Equal("logged", started.Fields["RunId"]);
        Assert.Equal("threads", started.Fields["Placement"]);
        Assert.Equal(2, started.Fields["ProcessCount"]);

        Entry failed = Assert.Single(logger.Entries, e => e.Event.Name == "ProcessFailed");
        Assert.Equal(LogLevel.Error, failed.Level);
        Assert.Equal("picky", failed.Fields["Process"]);
        Assert.Equal("numbers", failed.Fields["Stream"]);
        Assert.Equal(42L, failed.Fields["ItemIndex"]);
        Assert.IsType<InvalidOperationException>(failed.Exception);
        Assert.Contains("no 42s here", failed.Message);

        Entry ended = Assert.Single(logger.Entries, e => e.Event.Name == "RunEnded");
        Assert.Equal(RunOutcome.Failed, ended.Fields["Outcome"]);
        Assert.True(logger.Entries.IndexOf(started) < logger.Entries.IndexOf(failed) && logger.Entries.IndexOf(failed) < logger.Entries.IndexOf(ended));
    }

    [Fact]
    public async Task A_halt_and_a_graceful_stop_are_logged()
    {
        var logger = new ListLogger();
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        graph.Source("source", numbers, Enumerable.Range(0, 10).Select(i => (long)i));
        graph.Process("judge", p => p.On(numbers, x =>
        {
            if (x == 5) p.Halt("five is enough");
        }));
        await graph.RunWithin(new RunOptions { Logger = logger });
        Entry halted = Assert.Single(logger.Entries, e => e.Event.Name == "RunHalted");
        Assert.Equal("judge", halted.Fields["Process"]);
        Assert.Equal("five is enough", halted.Fields["Reason"]);

        var stopped = new ListLogger();
        var endless = new Graph();
        var forever = endless.Stream<long>("forever");
        endless.Source("source", forever, Helpers.Forever());
        endless.Sink("sink", forever, _ => { });
        using var stop = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        RunResult result = await endless.RunWithin(new RunOptions { Logger = stopped }, stop.Token);
        Assert.Equal(RunOutcome.Stopped, result.Outcome);
        Assert.Single(stopped.Entries, e => e.Event.Name == "GracefulStop");
        Assert.Equal(RunOutcome.Stopped, Assert.Single(stopped.Entries, e => e.Event.Name == "RunEnded").Fields["Outcome"]);
    }
}
