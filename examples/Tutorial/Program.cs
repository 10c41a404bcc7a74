// The first seed: files arrive from the web, pass through process1 and process2, and end in a database.
// Here the "files" are the numbers 0..count-1: web -> numbers -> process1 (square) -> squares
// -> process2 (square root) -> roots -> db (counts and sums; a stand-in for the database).
//
//   dotnet run --project examples/Tutorial -c Release -- [--count N] [--verbose] [--stats] [--db PATH-or-connection-string]
//       [--placement threads|processes|broker]
//
// With --db the db process also writes every root into the table "roots" of a real database
// (a SQLite file, or PostgreSQL with a connection string): one row per root, upserted.
using Millrace;
using Millrace.Data;

RunOptions options;
long count = 5000;
bool verbose = false, stats = false;
string? database = null;
try
{
    options = RunOptions.Parse(args);
    for (int i = 0; i < options.OtherArguments.Count; i++)
    {
        switch (options.OtherArguments[i])
        {
            case "--count" when i + 1 < options.OtherArguments.Count && long.TryParse(options.OtherArguments[i + 1], out count) && count >= 0:
                i++;
                break;
            case "--verbose":
                verbose = true;
                break;
            case "--stats":
                stats = true;
                break;
            case "--db" when i + 1 < options.OtherArguments.Count:
                database = options.OtherArguments[++i];
                break;
            default:
                throw new ArgumentException($"Unknown or incomplete option '{options.OtherArguments[i]}'. " +
                    "Options: --count N (N >= 0), --verbose, --stats, --db PATH-or-connection-string, --placement NAME, --capacity N, --batch N, --codec NAME, --group A,B.");
        }
    }
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"Tutorial: {e.Message}");
    return 2;
}

// Printing every item and drawing the live view on one terminal do not mix: --verbose keeps the view off.
if (verbose) options.Quiet = true;

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

RunResult result = await graph.RunAsync(options);
if (stats)
{
    Console.WriteLine($"run: {result.Outcome} in {result.Duration.TotalSeconds:0.000} s, {count / result.Duration.TotalSeconds:0} items/s");
    foreach (var (name, p) in result.Processes)
        Console.WriteLine($"process {name}: {p.ItemsIn} in, {p.ItemsOut} out, OS process {p.OsProcessId}, {p.RepeatsSkipped} repeats skipped");
}
if (!result.Succeeded)
{
    Console.Error.WriteLine($"Tutorial: {result.Outcome}");
    foreach (ProcessFailure error in result.Errors) Console.Error.WriteLine($"Tutorial: {error.Message}");
    return 1;
}
return 0;

static IEnumerable<long> Numbers(long count, bool verbose)
{
    for (long value = 0; value < count; value++)
    {
        if (verbose) Console.WriteLine($"entering the Q : {value}");
        yield return value;
    }
}
