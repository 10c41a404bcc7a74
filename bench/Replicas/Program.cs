// Ordered replicas of a CPU-heavy map against one replica, alternating, in one run.
//   dotnet Replicas.dll [--items 4000] [--workers 2] [--runs 5] [--work 100000]   (work: iterations per item, ~1 ns each)
//   prints: replicas: one 1.23 s, 2 ordered 0.70 s (medians of 5), ratio 1.76x
// With --broker-replicas 1,2,4: replicas as separate programs in the broker placement (BrokerReplicas.cs).
using System.Diagnostics;
using Millrace;

int items = 4000, workers = 2, runs = 5, work = 100_000;
int[]? brokerReplicas = null;
int batch = 1;
string broker = Environment.GetEnvironmentVariable("MILLRACE_BROKER") ?? "amqp://guest:guest@127.0.0.1:5672/";
bool itemsSet = false, workSet = false;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--items": items = int.Parse(args[++i]); itemsSet = true; break;
        case "--workers": workers = int.Parse(args[++i]); break;
        case "--runs": runs = int.Parse(args[++i]); break;
        case "--work": work = int.Parse(args[++i]); workSet = true; break;
        case "--broker-replicas": brokerReplicas = args[++i].Split(',').Select(int.Parse).ToArray(); break;
        case "--broker": broker = args[++i]; break;
        case "--batch": batch = int.Parse(args[++i]); break;
        case "--broker-child": return await BrokerReplicas.ChildAsync(int.Parse(args[i + 2]), int.Parse(args[i + 4]), args[(i + 5)..]);
        default: Console.Error.WriteLine($"Replicas: unknown option {args[i]}. Options: --items N, --workers W, --runs R, --work ITERATIONS, --broker-replicas 1,2,4, --batch B, --broker URI."); return 2;
    }
}
if (brokerReplicas is not null)
    return BrokerReplicas.Measure(brokerReplicas, itemsSet ? items : 4000, workSet ? work : 2_000_000, batch, broker);

var one = new List<double>();
var many = new List<double>();
long? expected = null;
for (int r = 0; r < runs; r++)
{
    foreach (bool parallel in new[] { false, true })
    {
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        var hashed = graph.Stream<long>("hashed");
        graph.Source("source", numbers, Enumerable.Range(0, items).Select(i => (long)i));
        if (parallel) graph.ParallelMap("work", numbers, hashed, x => Heavy(x, work), workers, ordered: true);
        else graph.Map("work", numbers, hashed, x => Heavy(x, work));
        long sum = 0, previous = -1;
        bool inOrder = true;
        graph.Sink("sum", hashed, h =>
        {
            sum += h;
            inOrder &= h >> 20 > previous;
            previous = h >> 20;
        });
        var clock = Stopwatch.StartNew();
        (await graph.RunAsync()).EnsureSuccess();
        double seconds = clock.Elapsed.TotalSeconds;
        if (!inOrder) throw new InvalidOperationException("ordered replicas wrote out of order");
        if ((expected ??= sum) != sum) throw new InvalidOperationException($"sums differ: {sum} vs {expected}");
        (parallel ? many : one).Add(seconds);
    }
}
double Median(List<double> xs) => xs.Order().ElementAt(xs.Count / 2);
Console.WriteLine($"replicas: one {Median(one):0.000} s, {workers} ordered {Median(many):0.000} s (medians of {runs}, {items} items of {work} iterations), ratio {Median(one) / Median(many):0.00}x");
return 0;

static long Heavy(long x, int work) => BrokerReplicas.Heavy(x, work);
