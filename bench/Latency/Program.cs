// End-to-end latency: web emits one item every 1/rate seconds carrying the time it was made;
// process1 and process2 pass it on (squaring and taking the root of its value, as in the
// Tutorial); db measures how long after its making each item arrived. Stopwatch timestamps are
// CLOCK_MONOTONIC, comparable across the OS processes of one machine.
//
//   dotnet Latency.dll [--rate 1000] [--seconds 5] [--warmup 1] [--placement threads|processes]
//   prints: latency: N items at R/s after a W s warm-up, p50 X us, p99 Y us, max Z us
// Items of the warm-up (code still being compiled, connections still new) are not counted.
using System.Diagnostics;
using Millrace;

RunOptions options = RunOptions.Parse(args);
int rate = 1000;
double seconds = 5, warmup = 1;
for (int i = 0; i < options.OtherArguments.Count; i++)
{
    switch (options.OtherArguments[i])
    {
        case "--rate" when i + 1 < options.OtherArguments.Count:
            rate = int.Parse(options.OtherArguments[++i]);
            break;
        case "--seconds" when i + 1 < options.OtherArguments.Count:
            seconds = double.Parse(options.OtherArguments[++i]);
            break;
        case "--warmup" when i + 1 < options.OtherArguments.Count:
            warmup = double.Parse(options.OtherArguments[++i]);
            break;
        default:
            Console.Error.WriteLine($"Latency: unknown option '{options.OtherArguments[i]}'. Options: --rate N, --seconds S, --warmup S, --placement NAME.");
            return 2;
    }
}
long total = (long)(rate * (seconds + warmup));
long skip = (long)(rate * warmup);

var graph = new Graph();
var made = graph.Stream<Stamp>("numbers");
var squared = graph.Stream<Stamp>("squares");
var rooted = graph.Stream<Stamp>("roots");
graph.Source("web", made, Paced(total, rate));
graph.Process("process1", p =>
{
    var output = p.Output(squared);
    p.On(made, s => output.Emit(s with { Value = s.Value * s.Value }));
});
graph.Process("process2", p =>
{
    var output = p.Output(rooted);
    p.On(squared, s => output.Emit(s with { Value = (long)Math.Sqrt(s.Value) }));
});
graph.Process("db", p =>
{
    var latencies = new List<double>();
    p.On(rooted, s =>
    {
        double micros = Stopwatch.GetElapsedTime(s.Made).TotalMicroseconds;
        if (s.Value >= skip) latencies.Add(micros);
    });
    p.OnCompleted(() =>
    {
        latencies.Sort();
        double At(double q) => latencies.Count == 0 ? double.NaN : latencies[Math.Min(latencies.Count - 1, (int)(q * latencies.Count))];
        Console.WriteLine($"latency: {latencies.Count} items at {rate}/s after a {warmup:0.#} s warm-up, p50 {At(0.50):0} us, p99 {At(0.99):0} us, max {(latencies.Count == 0 ? double.NaN : latencies[^1]):0} us");
    });
});
RunResult result = await graph.RunAsync(options);
if (!result.Succeeded)
{
    foreach (ProcessFailure e in result.Errors) Console.Error.WriteLine($"Latency: {e.Message}");
    return 1;
}
return 0;

static async IAsyncEnumerable<Stamp> Paced(long total, int rate)
{
    long start = Stopwatch.GetTimestamp();
    for (long i = 0; i < total; i++)
    {
        // Absolute schedule, so that a late item does not push all later ones back.
        TimeSpan due = TimeSpan.FromSeconds((double)i / rate) - Stopwatch.GetElapsedTime(start);
        if (due > TimeSpan.Zero) await Task.Delay(due);
        yield return new Stamp(Stopwatch.GetTimestamp(), i);
    }
}

/// <summary>An item and when it was made (a Stopwatch timestamp).</summary>
public sealed record Stamp(long Made, long Value);
