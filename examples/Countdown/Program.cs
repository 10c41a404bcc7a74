// A cycle that ends by itself. launcher sends a few tokens (numbers) to left; left and right pass
// each token back and forth, one less every hop; a token that reaches 0 goes to tally instead.
// Nobody halts: once every token is spent, nothing is in flight and termination detection ends
// the cycle; tally's input then ends and it prints its summary.
//
//   dotnet run --project examples/Countdown -c Release -- [--tokens 5,10,20] [--verbose] [--placement threads|processes]
using System.CommandLine;
using Millrace;

var tokensOption = new Option<long[]>("--tokens")
{
    Description = "The tokens launcher sends, separated by commas.",
    DefaultValueFactory = _ => [5, 10, 20],
    CustomParser = r =>
    {
        string text = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
        var tokens = new List<long>();
        foreach (string t in text.Split(','))
        {
            if (long.TryParse(t, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v)) tokens.Add(v);
            else r.AddError($"--tokens needs numbers >= 0 separated by commas; got '{t}'.");
        }
        return tokens.ToArray();
    },
};
var verboseOption = new Option<bool>("--verbose") { Description = "Print every hop." };

return await MillraceMain.RunAsync(args, "A cycle that ends by itself: tokens passed back and forth, one less every hop, until zero.",
    [tokensOption, verboseOption], async (cli, options) =>
{
    RunResult result = await Build(cli.GetValue(tokensOption)!, cli.GetValue(verboseOption)).RunAsync(options);
    if (result.Succeeded)
    {
        long hops = result.Streams["to_left"].ItemsWritten + result.Streams["to_right"].ItemsWritten;
        Console.WriteLine($"countdown: {hops} hops, " +
            (result.TerminationDetected ? "ended by termination detection" : "ended without termination detection"));
    }
    return result;
});

static Graph Build(long[] tokens, bool verbose)
{
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

    return graph;
}
