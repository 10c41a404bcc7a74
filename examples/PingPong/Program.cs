// The second seed (IoTPy's multiprocessing example): process_x reads stream x, process_y reads
// stream y; each prints what it receives and sends it, plus one, to the other. process_y starts by
// sending 1 on x, and halts the application when a message arrives after it has replied three times.
//
//   dotnet run --project examples/PingPong -c Release -- [--placement threads|processes]
using Millrace;

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

// The command line parsed strictly (--help lists the options), the run's end as the exit code (a halt is a way to end: 0).
return await MillraceMain.RunAsync(args, "The second seed: two processes send a number back and forth until one halts.", [], async (_, options) =>
{
    RunResult result = await graph.RunAsync(options);
    if (result.HaltedBy is not null) Console.WriteLine($"HALTING: halted by {result.HaltedBy} ({result.HaltReason})");
    return result;
});
