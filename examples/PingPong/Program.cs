// The second seed (IoTPy's multiprocessing example): process_x reads stream x, process_y reads
// stream y; each prints what it receives and sends it, plus one, to the other. process_y starts by
// sending 1 on x, and halts the application when a message arrives after it has replied three times.
//
//   dotnet run --project examples/PingPong -c Release -- [--placement threads|processes]
using Millrace;

RunOptions options;
try
{
    options = RunOptions.Parse(args);
    if (options.OtherArguments.Count > 0)
        throw new ArgumentException($"Unknown option '{options.OtherArguments[0]}'. Options: --placement NAME.");
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"PingPong: {e.Message}");
    return 2;
}

var graph = new Graph();
var x = graph.Stream<int>("x");
var y = graph.Stream<int>("y");

graph.Process("process_x", p =>
{
    var toY = p.Output(y);
    p.On(x, message =>
    {
        Console.WriteLine($"message received by process x: {message}");
        toY.Emit(message + 1);
    });
});

graph.Process("process_y", p =>
{
    var toX = p.Output(x);
    int replies = 0;
    p.OnStart(() => toX.Emit(1));
    p.On(y, message =>
    {
        if (replies == 3)
        {
            p.Halt("replied three times");
            return;
        }
        Console.WriteLine($"message received by process y: {message}");
        toX.Emit(message + 1);
        replies++;
    });
});

RunResult result = await graph.RunAsync(options);
if (result.HaltedBy is not null) Console.WriteLine($"HALTING: halted by {result.HaltedBy} ({result.HaltReason})");
if (!result.Succeeded)
{
    Console.Error.WriteLine($"PingPong: {result.Outcome}");
    foreach (ProcessFailure error in result.Errors) Console.Error.WriteLine($"PingPong: {error.Message}");
    return 1;
}
return 0;
