// Replicas across programs in the broker placement: a CPU-heavy middle process ("work") run by 1, 2, 4 programs
// beside one program running the source and the sink, as on several hosts (here all on one machine).
//   dotnet Replicas.dll --broker-replicas 1,2,4 [--items 4000] [--work 2000000] [--broker URI]
// Every count: the run's wall time (programs started to all exited), the steady rate at the sink (its middle half of the items),
// each program's CPU, the broker's CPU; the sum at the sink checked against the sum computed here (exact: nothing
// lost, nothing counted twice). Then a projection for N hosts from the measured per-replica cost.
using System.Diagnostics;
using System.Globalization;
using Millrace;

internal static class BrokerReplicas
{
    // One program of the run: the graph, with the placement options given (--processes says which of it runs here).
    public static async Task<int> ChildAsync(int items, int work, string[] rest)
    {
        var options = RunOptions.Parse(rest);
        options.Quiet = true;
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        var hashed = graph.Stream<long>("hashed");
        graph.Source("source", numbers, Enumerable.Range(0, items).Select(i => (long)i), items);
        // CPU read at each item (a read of /proc, small beside the item's work): the steady cost per item, start-up apart.
        var self = Process.GetCurrentProcess();
        double CpuNow() { self.Refresh(); return self.TotalProcessorTime.TotalSeconds; }
        long handled = 0;
        double workCpuFirst = 0, workCpuLast = 0;
        graph.Map("work", numbers, hashed, x =>
        {
            long h = Heavy(x, work);
            workCpuLast = CpuNow();
            if (handled++ == 0) workCpuFirst = workCpuLast;
            return h;
        });
        // The sink's steady figures come from its middle half (item n/4 to 3n/4): start-up and the last items apart.
        long count = 0, sum = 0;
        var clock = Stopwatch.StartNew();
        double quarterTime = 0, quarterCpu = 0, steadySeconds = 0, steadyCpu = 0;
        graph.Sink("sum", hashed, h =>
        {
            count++;
            sum += h;
            if (count == items / 4) (quarterTime, quarterCpu) = (clock.Elapsed.TotalSeconds, CpuNow());
            if (count == 3L * items / 4) (steadySeconds, steadyCpu) = (clock.Elapsed.TotalSeconds - quarterTime, CpuNow() - quarterCpu);
        });
        RunResult result = await graph.RunAsync(options);
        result.EnsureSuccess();
        double cpu = CpuNow();
        string here = string.Join('+', options.Broker.Processes);
        if (options.Broker.Processes.Contains("sum"))
            Console.WriteLine(FormattableString.Invariant($"SUM {count} {sum} {steadySeconds:R} {cpu:R} {here} {steadyCpu / Math.Max(1, 3L * items / 4 - items / 4):R}"));
        else
            Console.WriteLine(FormattableString.Invariant($"CPU {cpu:R} {here} {handled} {(workCpuLast - workCpuFirst) / Math.Max(1, handled - 1):R}"));
        return 0;
    }

    public static int Measure(int[] counts, int items, int work, int batch, string broker)
    {
        long expected = 0;
        Parallel.For(0, items, () => 0L, (i, _, partial) => partial + Heavy(i, work), partial => Interlocked.Add(ref expected, partial));
        string self = typeof(BrokerReplicas).Assembly.Location;
        Console.WriteLine($"broker replicas: {items:N0} items of {work:N0} iterations through 'work' ({(batch == 1 ? "one item" : $"up to {batch} items")} per message), {Environment.ProcessorCount} cores");
        Console.WriteLine($"{"replicas",8} {"wall s",8} {"items/s",9} {"steady/s",9} {"work CPU s",11} {"ends CPU s",11} {"broker CPU s",13}  per replica (items)");
        var rows = new List<(int N, double Steady, double WorkCpuPerItem, double EndsCpuPerItem, double BrokerCpu)>();
        foreach (int n in counts)
        {
            string runId = $"replicas-{n}-{Guid.NewGuid():N}"[..24];
            string[] common = ["--broker-child", "--items", items.ToString(CultureInfo.InvariantCulture), "--work", work.ToString(CultureInfo.InvariantCulture),
                "--placement", "broker", "--broker", broker, "--run-id", runId, "--batch", batch.ToString(CultureInfo.InvariantCulture), "--capacity", (4 * batch).ToString(CultureInfo.InvariantCulture)];
            double? brokerBefore = BrokerCpu.Seconds();
            var clock = Stopwatch.StartNew();
            var programs = new List<Process> { Start(self, common, "source,sum") };
            for (int r = 0; r < n; r++) programs.Add(Start(self, common, "work"));
            var outputs = programs.Select(p => (p, p.StandardOutput.ReadToEndAsync(), p.StandardError.ReadToEndAsync())).ToList();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
            foreach (var (p, _, _) in outputs)
            {
                try { p.WaitForExitAsync(timeout.Token).GetAwaiter().GetResult(); }
                catch (OperationCanceledException)
                {
                    foreach (var q in programs) try { q.Kill(true); } catch (InvalidOperationException) { }
                    throw new TimeoutException($"replicas {n}: the run did not end within 10 minutes");
                }
            }
            double wall = clock.Elapsed.TotalSeconds;
            double brokerCpu = BrokerCpu.Seconds() is double after && brokerBefore is double before ? after - before : double.NaN;
            double steady = 0, endsCpu = 0, workCpu = 0, endsPerItem = 0, workPerItem = 0;
            var shares = new List<string>();
            foreach (var (p, stdout, stderr) in outputs)
            {
                string output = stdout.Result;
                if (p.ExitCode != 0) throw new InvalidOperationException($"replicas {n}: a program exited with {p.ExitCode}:\n{output}\n{stderr.Result}");
                string[] f = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last(l => l.StartsWith("SUM ") || l.StartsWith("CPU ")).Split(' ');
                if (f[0] == "SUM")
                {
                    long count = long.Parse(f[1], CultureInfo.InvariantCulture), sum = long.Parse(f[2], CultureInfo.InvariantCulture);
                    if (count != items || sum != expected)
                        throw new InvalidOperationException($"replicas {n}: the sink saw {count} items summing to {sum}; expected {items} summing to {expected}");
                    steady = (3L * items / 4 - items / 4) / double.Parse(f[3], CultureInfo.InvariantCulture);
                    endsCpu = double.Parse(f[4], CultureInfo.InvariantCulture);
                    endsPerItem = double.Parse(f[6], CultureInfo.InvariantCulture);
                }
                else
                {
                    workCpu += double.Parse(f[1], CultureInfo.InvariantCulture);
                    // Weighted by items: the mean steady CPU per item over the replicas.
                    workPerItem += double.Parse(f[4], CultureInfo.InvariantCulture) * long.Parse(f[3], CultureInfo.InvariantCulture) / items;
                    shares.Add(f[3]);
                }
            }
            rows.Add((n, steady, workPerItem, endsPerItem, brokerCpu));
            Console.WriteLine(FormattableString.Invariant($"{n,8} {wall,8:0.00} {items / wall,9:0} {steady,9:0} {workCpu,11:0.00} {endsCpu,11:0.00} {brokerCpu,13:0.00}  {string.Join(' ', shares)}"));
        }
        var one = rows[0];
        foreach (var row in rows.Skip(1))
            Console.WriteLine(FormattableString.Invariant($"{row.N} replicas / 1: {row.Steady / one.Steady:0.00}x (steady rate)"));
        // Projection: each replica on a host of its own handles items at 1 / (its CPU per item); the source and sink's
        // program and the broker are shared, so the rate stops at the smaller of their limits.
        // Steady costs (CPU between a program's first and last item, start-up apart) from the run with one replica.
        double perReplica = 1 / one.WorkCpuPerItem, endsLimit = 1 / one.EndsCpuPerItem, brokerLimit = items / one.BrokerCpu;
        Console.WriteLine(FormattableString.Invariant(
            $"projection, one replica per host: {perReplica:0} items/s per replica (its CPU per item {1e6 / perReplica:0} us); the source+sink program alone handles {endsLimit:0} items/s, this broker node {brokerLimit:0} items/s: N hosts give min(N x {perReplica:0}, {Math.Min(endsLimit, brokerLimit):0}) items/s, flat from N = {Math.Ceiling(Math.Min(endsLimit, brokerLimit) / perReplica):0}"));
        return 0;
    }

    private static Process Start(string self, string[] common, string processes)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(self);
        foreach (string a in common) info.ArgumentList.Add(a);
        info.ArgumentList.Add("--processes");
        info.ArgumentList.Add(processes);
        return Process.Start(info)!;
    }

    // Arithmetic per item (about 1 ns per iteration).
    public static long Heavy(long x, int work)
    {
        ulong h = (ulong)x + 1;
        for (int i = 0; i < work; i++) h = h * 6364136223846793005UL + 1442695040888963407UL;
        return (x << 20) | (long)(h & 0xFFFFF);
    }
}
