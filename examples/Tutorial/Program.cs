// The first seed: files arrive from the web, pass through process1 and process2, and end in a database.
// Here the "files" are the numbers 0..count-1: web -> numbers -> process1 (square) -> squares
// -> process2 (square root) -> roots -> db (counts and sums; a stand-in for the database).
//
//   dotnet run --project examples/Tutorial -c Release -- [--count N] [--verbose] [--stats] [--db PATH-or-connection-string]
//       [--placement threads|processes|broker]        (--help lists every option)
//
// With --db the db process also writes every root into the table "roots" of a real database
// (a SQLite file, or PostgreSQL with a connection string): one row per root, upserted.
using System.CommandLine;
using Millrace;
using Millrace.Data;

var countOption = new Option<long>("--count")
{
    Description = "How many numbers the web source emits.",
    DefaultValueFactory = _ => 5000,
    CustomParser = r =>
    {
        string text = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
        if (long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n)) return n;
        r.AddError($"--count takes a whole number of 0 or more; got '{text}'.");
        return 0;
    },
};
var verboseOption = new Option<bool>("--verbose") { Description = "Print every item as it passes (the seed's output); turns the live view off." };
var statsOption = new Option<bool>("--stats") { Description = "Print the run's outcome, speed and per-process counts." };
var dbOption = new Option<string?>("--db") { Description = "Also write every root to the table 'roots' of a database: a SQLite file or a PostgreSQL connection string." };

// Parses the command line strictly (--help lists every option), runs the graph, and turns the outcome into an exit code.
return await MillraceMain.RunAsync(args, "The first seed: numbers through process1 (square) and process2 (square root) into db.",
    [countOption, verboseOption, statsOption, dbOption], async (cli, options) =>
{
    long count = cli.GetValue(countOption);
    bool verbose = cli.GetValue(verboseOption), stats = cli.GetValue(statsOption);
    string? database = cli.GetValue(dbOption);
    // Printing every item and drawing the live view on one terminal do not mix: --verbose keeps the view off.
    if (verbose) options.Quiet = true;
    Graph graph = Build(count, verbose, database);
    RunResult result = await graph.RunAsync(options);
    if (stats)
    {
        Console.WriteLine($"run: {result.Outcome} in {result.Duration.TotalSeconds:0.000} s, {count / result.Duration.TotalSeconds:0} items/s");
        foreach (var (name, p) in result.Processes)
            Console.WriteLine($"process {name}: {p.ItemsIn} in, {p.ItemsOut} out, OS process {p.OsProcessId}, {p.RepeatsSkipped} repeats skipped");
    }
    return result;
});

static Graph Build(long count, bool verbose, string? database)
{
    var graph = new Graph();
    var numbers = graph.Stream<long>("numbers");
    var squares = graph.Stream<long>("squares");
    var roots = graph.Stream<double>("roots");

    graph.Source("web", numbers, Numbers(count, verbose), count);

    graph.Process("process1", p =>
    {
        var output = p.Output(squares);
        p.On(numbers, x =>
        {
            if (verbose) Console.WriteLine($"tmp process1 : {x}");
            output.Emit(x * x);
        });
    });

    graph.Process("process2", p =>
    {
        var output = p.Output(roots);
        p.On(squares, x =>
        {
            double root = Math.Sqrt(x);
            if (verbose) Console.WriteLine($"tmp process2 : {root}");
            output.Emit(root);
        });
    });

    graph.Process("db", p =>
    {
        // Only the broker placement can deliver an item twice (after a restart); this keeps the sum exact.
        p.SkipRepeats();
        // Its totals are state: with --checkpoint-interval they are saved in every checkpoint and a resumed run goes on from them.
        ProcessState<long> items = p.State("items", 0L);
        ProcessState<double> sum = p.State("sum", 0.0);
        Table<double>? table = null;
        if (database is not null)
            p.OnStart(() => table = Table<double>.Open(database, "roots", root => root.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
                new Column<double>("root", "DOUBLE PRECISION", root => root)));
        p.On(roots, root =>
        {
            items.Value++;
            sum.Value += root;
            table?.Upsert(root);
        });
        p.OnCompleted(() =>
        {
            table?.Dispose();
            Console.WriteLine($"db: {items.Value} items, sum of roots {sum.Value:0.######}");
        });
    });

    return graph;
}

static IEnumerable<long> Numbers(long count, bool verbose)
{
    for (long value = 0; value < count; value++)
    {
        if (verbose) Console.WriteLine($"entering the Q : {value}");
        yield return value;
    }
}
