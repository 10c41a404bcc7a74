// A cycle that ends by itself. launcher sends a few tokens (numbers) to left; left and right pass
// each token back and forth, one less every hop; a token that reaches 0 goes to tally instead.
// Nobody halts: once every token is spent, nothing is in flight and termination detection ends
// the cycle; tally's input then ends and it prints its summary.
//
//   dotnet run --project examples/Countdown -c Release -- [--tokens 5,10,20] [--verbose] [--placement threads|processes]
using Millrace;

RunOptions options;
long[] tokens = { 5, 10, 20 };
bool verbose = false;
try
{
    options = RunOptions.Parse(args);
    for (int i = 0; i < options.OtherArguments.Count; i++)
    {
        switch (options.OtherArguments[i])
        {
            case "--tokens" when i + 1 < options.OtherArguments.Count:
                tokens = options.OtherArguments[++i].Split(',').Select(t =>
                    long.TryParse(t, out long v) && v >= 0 ? v : throw new ArgumentException($"--tokens needs numbers >= 0 separated by commas; got '{t}'.")).ToArray();
                break;
            case "--verbose":
                verbose = true;
                break;
            default:
                throw new ArgumentException($"Unknown or incomplete option '{options.OtherArguments[i]}'. Options: --tokens 5,10,20, --verbose, --placement NAME.");
        }
    }
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"Countdown: {e.Message}");
    return 2;
}

var graph = new Graph();
var toLeft = graph.Stream<long>("to_left");
var toRight = graph.Stream<long>("to_right");
var done = graph.Stream<long>("done");

graph.Source("launcher", toLeft, tokens);

// left and right are the same process shape: pass the token on, one less, or retire it at 0.
void Passer(string name, Stream<long> input, Stream<long> next) => graph.Process(name, p =>
{
    var onward = p.Output(next);
    var retired = p.Output(done);
    p.On(input, token =>
    {
        if (verbose) Console.WriteLine($"{name}: {token}");
        if (token == 0) retired.Emit(token);
        else onward.Emit(token - 1);
    });
});
Passer("left", toLeft, toRight);
Passer("right", toRight, toLeft);

graph.Process("tally", p =>
{
    long retired = 0;
    p.On(done, _ => retired++);
    p.OnCompleted(() => Console.WriteLine($"tally: {retired} tokens reached zero"));
});

RunResult result = await graph.RunAsync(options);
if (!result.Succeeded)
{
    Console.Error.WriteLine($"Countdown: {result.Outcome}");
    foreach (ProcessFailure error in result.Errors) Console.Error.WriteLine($"Countdown: {error.Message}");
    return 1;
}
long hops = result.Streams["to_left"].ItemsWritten + result.Streams["to_right"].ItemsWritten;
Console.WriteLine($"countdown: {hops} hops, " +
    (result.TerminationDetected ? "ended by termination detection" : "ended without termination detection"));
return 0;
