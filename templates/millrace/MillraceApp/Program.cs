using System.CommandLine;
using Millrace;
using MillraceApp;

// dotnet run -- --help                         every option, with its default
// dotnet run -- --placement processes          one OS process per process
// dotnet run -- --lines 100000 --state state   checkpoints: stop it, start it again, the totals stay exact
var lines = new Option<int>("--lines") { Description = "How many lines to count", DefaultValueFactory = _ => 1000 };

return await MillraceMain.RunAsync(args, "Counts the words of lines of text.", [lines], async (cli, options) =>
{
    Graph graph = Pipeline.Build(Pipeline.SampleLines(cli.GetValue(lines)),
        (lineCount, words) => Console.WriteLine($"{lineCount} lines, {words} words"));
    return await graph.RunAsync(options);
});
