// bench/run.sh runs this. It measures the Tutorial workload (0..N-1 -> square -> square root ->
// sum, the sum checked every run) on Millrace and on what users would pick instead, each system
// as its own program, several times, and reports medians and ratios measured in the same run.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;

if (args.Length > 1 && args[0] == "--measure") return Measure.Run(args[1..]);

string root = FindRoot();
var options = Options.Parse(args);
if (options is null) return 2;

var systems = new List<SystemSpec>
{
    new("millrace-threads", "Millrace, threads placement", n => Dotnet(root, "examples/Tutorial", "Tutorial", "--count", n, "--placement", "threads")),
    new("millrace-processes", "Millrace, processes placement (an OS process per process)", n => Dotnet(root, "examples/Tutorial", "Tutorial", "--count", n, "--placement", "processes")),
    new("millrace-threads-checkpoints", "Millrace, threads placement, a checkpoint every 0.1 s (db's totals, the source's position)",
        n => Dotnet(root, "examples/Tutorial", "Tutorial", "--count", n, "--placement", "threads", "--checkpoint-interval", 0.1, "--state", StateFolder())),
    new("millrace-processes-checkpoints", "Millrace, processes placement, a checkpoint every 0.1 s",
        n => Dotnet(root, "examples/Tutorial", "Tutorial", "--count", n, "--placement", "processes", "--checkpoint-interval", 0.1, "--state", StateFolder())),
    new("millrace-broker", "Millrace, broker placement on RabbitMQ, one item per message (items: --broker-items)",
        n => Dotnet(root, "examples/Tutorial", "Tutorial", "--count", n, "--placement", "broker", "--batch", 1, "--run-id", RunId()), Broker: true),
    new("millrace-broker-batched", "Millrace, broker placement on RabbitMQ, up to 1000 items per message, binary codec like the raw peer",
        n => Dotnet(root, "examples/Tutorial", "Tutorial", "--count", n, "--placement", "broker", "--batch", 1000, "--codec", "binary", "--run-id", RunId())),
    new("channels", "System.Threading.Channels, bounded, a task per stage, item at a time", n => Dotnet(root, "bench/Peers", "Peers", "channels", n)),
    new("dataflow", "TPL Dataflow, bounded blocks, item at a time", n => Dotnet(root, "bench/Peers", "Peers", "dataflow", n)),
    new("akka-streams", "Akka.NET Streams 1.5.74, each stage behind an async boundary (an actor per stage), item at a time",
        n => Dotnet(root, "bench/Peers", "Peers", "akka-streams", n)),
    new("akka-streams-fused", "Akka.NET Streams 1.5.74, fused (Akka's default: the whole graph in one actor)",
        n => Dotnet(root, "bench/Peers", "Peers", "akka-streams-fused", n)),
    new("channels-batched", "bounded channels carrying arrays of 1024 items (hand-tuned limit)", n => Dotnet(root, "bench/Peers", "Peers", "channels-batched", n)),
    new("ipc-pump", "three OS processes pumping raw 8 KiB batches over Unix sockets to a fourth (hand-tuned limit)", n => Dotnet(root, "bench/Peers", "Peers", "ipc-pump", n)),
    new("rabbitmq-raw", "RabbitMQ.Client 7, confirms and manual acks, one item per message (items: --broker-items)",
        n => Dotnet(root, "bench/RabbitRaw", "RabbitRaw", n), Broker: true),
    new("rabbitmq-raw-batched", "RabbitMQ.Client 7, confirms and manual acks, 1000 items per message",
        n => Dotnet(root, "bench/RabbitRaw", "RabbitRaw", n, "--batch", 1000)),
    new("python-multiprocessing", "the first seed's Python program as written (prints every item, to /dev/null)",
        n => new[] { "bash", "-c", $"exec python3 '{root}/bench/python/seed_pipeline.py' {n} > /dev/null" }, Python: true),
    new("python-multiprocessing-quiet", "the first seed's Python program without its per-item prints",
        n => new[] { "python3", $"{root}/bench/python/seed_pipeline.py", n.ToString(), "--quiet" }, Python: true),
};

var chosen = options.Systems is null ? systems : systems.Where(s => options.Systems.Contains(s.Name)).ToList();
foreach (string unknown in options.Systems?.Except(systems.Select(s => s.Name)) ?? Enumerable.Empty<string>())
{
    Console.Error.WriteLine($"unknown system '{unknown}'; systems: {string.Join(", ", systems.Select(s => s.Name))}");
    return 2;
}

Console.WriteLine($"Tutorial workload, {options.Items:N0} items ({options.PythonItems:N0} for Python, {options.BrokerItems:N0} for one item per broker message), {options.Runs} runs each, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, " +
    (Environment.GetCommandLineArgs().Contains("--no-ready-to-run") ? "build output (JIT only)" : ".NET programs published with ReadyToRun"));
var results = new List<Result>();
// Round by round (every system once, then again), not one system's runs back to back: a machine that slows for a few
// minutes slows every system of a round alike, and the ratios of one run hold.
var runsOf = chosen.ToDictionary(s => s.Name, _ => new List<Measure.Sample>());
for (int r = 0; r < options.Runs; r++)
{
    foreach (SystemSpec system in chosen)
    {
        long items = system.Python ? options.PythonItems : system.Broker ? options.BrokerItems : options.Items;
        double? brokerBefore = system.Name.Contains("broker") || system.Name.Contains("rabbitmq") ? BrokerCpu.Seconds() : null;
        Measure.Sample sample = Measure.Launch(system.Command(items));
        if (brokerBefore is not null && BrokerCpu.Seconds() is double brokerAfter) sample = sample with { BrokerCpuSeconds = brokerAfter - brokerBefore.Value };
        Match summary = Regex.Match(sample.Output, @"db: (\d+) items, sum of roots (\d+)");
        long expectedSum = items * (items - 1) / 2;
        if (sample.ExitCode != 0 || !summary.Success || long.Parse(summary.Groups[1].Value) != items || long.Parse(summary.Groups[2].Value) != expectedSum)
        {
            Console.Error.WriteLine($"{system.Name}: wrong result (exit {sample.ExitCode}; expected {items} items and sum {expectedSum}):\n{sample.Output}");
            return 1;
        }
        runsOf[system.Name].Add(sample);
        Match checkpoints = Regex.Match(sample.Output, @"checkpoints: (\d+) complete in this run, each took p50 ([\d.]+) ms, p99 ([\d.]+) ms");
        string taken = checkpoints.Success ? $" ({checkpoints.Groups[1].Value} checkpoints, p50 {checkpoints.Groups[2].Value} ms, p99 {checkpoints.Groups[3].Value} ms)" : "";
        Console.Error.WriteLine($"  {system.Name} run {r + 1}: {items / sample.Seconds:N0} items/s{taken}");
    }
}
foreach (SystemSpec system in chosen)
{
    long items = system.Python ? options.PythonItems : system.Broker ? options.BrokerItems : options.Items;
    List<Measure.Sample> runs = runsOf[system.Name];
    double[] rates = runs.Select(s => items / s.Seconds).Order().ToArray();
    double? brokerCpu = runs.All(s => s.BrokerCpuSeconds is not null) ? runs.Select(s => s.BrokerCpuSeconds!.Value).Order().ElementAt(runs.Count / 2) : null;
    // Peak memory of each OS process, from the run with the largest single process.
    Measure.Sample largest = runs.MaxBy(s => s.PeakRssKb)!;
    string perProcess = largest.Peaks is { Count: > 0 } peaks ? string.Join(", ", peaks.Select(p => p.Kb).OrderDescending().Select(kb => $"{kb / 1024.0:0}")) : "-";
    results.Add(new Result(system.Name, items, rates[rates.Length / 2], rates[0], rates[^1],
        runs.Select(s => s.CpuSeconds).Order().ElementAt(runs.Count / 2), runs.Max(s => s.PeakRssKb) / 1024.0, system.Description, brokerCpu, perProcess));
}

double? channels = results.FirstOrDefault(r => r.System == "channels")?.ItemsPerSecond;
Console.WriteLine();
Console.WriteLine($"{"system",-30} {"items",12} {"items/s",14} {"min",14} {"max",14} {"x channels",10} {"CPU s",7} {"peak MB",8}");
foreach (Result r in results)
{
    string ratio = channels is > 0 ? $"{r.ItemsPerSecond / channels.Value:0.00}" : "-";
    Console.WriteLine($"{r.System,-30} {r.Items,12:N0} {r.ItemsPerSecond,14:N0} {r.ItemsPerSecondMin,14:N0} {r.ItemsPerSecondMax,14:N0} {ratio,10} {r.CpuSeconds,7:0.00} {r.PeakMb,8:0}");
}
Console.WriteLine("(peak MB: the largest single OS process of the run)");
Console.WriteLine();
Console.WriteLine($"{"system",-30} peak MB of each OS process, largest first");
foreach (Result r in results) Console.WriteLine($"{r.System,-30} {r.PeakPerProcess}");

if (options.Parts)
{
    // The parts apart: start-up (the whole program with one item) and the steady rate (items/s once started: the extra
    // items of a run 10x longer over its extra time), for the systems that take --items.
    Console.WriteLine();
    Console.WriteLine($"{"system",-30} {"start-up s",11} {"whole items/s",14} {"steady items/s",15}   (start-up: 1 item; steady: {options.Items:N0} -> {10 * options.Items:N0} items; medians of {options.Runs})");
    var parts = new Dictionary<string, (double Startup, double Steady)>();
    foreach (Result r in results)
    {
        SystemSpec system = chosen.First(x => x.Name == r.System);
        if (system.Python || system.Broker) continue;
        double Median(long n) => Enumerable.Range(0, options.Runs).Select(_ =>
        {
            Measure.Sample sample = Measure.Launch(system.Command(n));
            Match summary = Regex.Match(sample.Output, @"db: (\d+) items, sum of roots (\d+)");
            if (sample.ExitCode != 0 || !summary.Success || long.Parse(summary.Groups[1].Value) != n || long.Parse(summary.Groups[2].Value) != n * (n - 1) / 2)
                throw new InvalidOperationException($"{system.Name}: wrong result with {n} items (exit {sample.ExitCode}):\n{sample.Output}");
            return sample.Seconds;
        }).Order().ElementAt(options.Runs / 2);
        double startup = Median(1);
        double whole = r.Items / r.ItemsPerSecond;
        double longer = Median(10 * r.Items);
        double steady = 9.0 * r.Items / (longer - whole);
        parts[r.System] = (startup, steady);
        Console.WriteLine($"{r.System,-30} {startup,11:0.000} {r.ItemsPerSecond,14:N0} {steady,15:N0}");
    }
    foreach (var (a, b) in new[] { ("millrace-processes", "ipc-pump"), ("millrace-threads", "channels-batched"), ("millrace-threads", "channels") })
    {
        if (parts.TryGetValue(a, out var x) && parts.TryGetValue(b, out var y))
            Console.WriteLine($"{a} / {b}: steady {x.Steady / y.Steady:0.00}x, start-up {x.Startup:0.000} s vs {y.Startup:0.000} s");
    }
}
if (results.Any(r => r.BrokerCpuSeconds is not null))
{
    // The broker is not a child of the harness: its CPU is read from its Erlang VM (/proc) before and after each run.
    Console.WriteLine($"{"system",-30} {"client CPU s",12} {"broker CPU s",12} {"CPU us/item",12}");
    foreach (Result r in results.Where(r => r.BrokerCpuSeconds is not null))
        Console.WriteLine($"{r.System,-30} {r.CpuSeconds,12:0.00} {r.BrokerCpuSeconds,12:0.00} {1e6 * (r.CpuSeconds + r.BrokerCpuSeconds!.Value) / r.Items,12:0.0}");
}
foreach (var (a, b) in new[] { ("millrace-threads-checkpoints", "millrace-threads"), ("millrace-processes-checkpoints", "millrace-processes"),
             ("millrace-processes", "python-multiprocessing"), ("millrace-processes", "python-multiprocessing-quiet"),
             ("millrace-processes", "ipc-pump"), ("millrace-threads", "channels"), ("millrace-threads", "dataflow"), ("millrace-threads", "channels-batched"),
             ("millrace-threads", "akka-streams"), ("millrace-threads", "akka-streams-fused"),
             ("millrace-broker", "rabbitmq-raw"), ("millrace-broker-batched", "rabbitmq-raw-batched") })
{
    Result? x = results.FirstOrDefault(r => r.System == a), y = results.FirstOrDefault(r => r.System == b);
    if (x is not null && y is not null) Console.WriteLine($"{a} / {b}: {x.ItemsPerSecond / y.ItemsPerSecond:0.00}x");
}

if (options.Latency)
{
    Console.WriteLine();
    foreach (string placement in new[] { "threads", "processes", "broker" })
    {
        object[] where = placement == "broker" ? new object[] { "--placement", placement, "--run-id", RunId() } : new object[] { "--placement", placement };
        Measure.Sample sample = Measure.Launch(Dotnet(root, "bench/Latency", "Latency",
            new object[] { "--rate", 1000, "--seconds", options.Quick ? 2 : 5 }.Concat(where).ToArray()));
        Console.WriteLine($"{placement,-10} {sample.Output.Trim()}");
    }
}

if (options.Replicas)
{
    Console.WriteLine();
    Measure.Sample sample = Measure.Launch(Dotnet(root, "bench/Replicas", "Replicas", "--runs", options.Quick ? 3 : 5));
    Console.WriteLine(sample.Output.Trim());
    // Replicas as separate programs in the broker placement (as on several hosts), 1, 2 and 4 of them.
    Console.WriteLine();
    sample = Measure.Launch(Dotnet(root, "bench/Replicas", "Replicas", "--broker-replicas", "1,2,4", "--batch", 10, "--items", options.Quick ? 1000 : 4000));
    Console.WriteLine(sample.Output.Trim());
}

if (options.Uploads)
{
    Console.WriteLine();
    Measure.Sample sample = Measure.Launch(Dotnet(root, "bench/Uploads", "Uploads", "--runs", options.Quick ? 1 : 3));
    Console.WriteLine(sample.Output.Trim());
}

if (options.Json is not null)
{
    File.WriteAllText(options.Json, JsonSerializer.Serialize(results.Select(r => new Dictionary<string, object>
    {
        ["system"] = r.System,
        ["items"] = r.Items,
        ["items_per_s"] = Math.Round(r.ItemsPerSecond),
        ["items_per_s_min"] = Math.Round(r.ItemsPerSecondMin),
        ["items_per_s_max"] = Math.Round(r.ItemsPerSecondMax),
        ["cpu_s"] = Math.Round(r.CpuSeconds, 3),
        ["peak_rss_mb"] = Math.Round(r.PeakMb, 1),
        ["broker_cpu_s"] = r.BrokerCpuSeconds is double b ? Math.Round(b, 3) : -1,
    }), new JsonSerializerOptions { WriteIndented = true }));
    Console.WriteLine($"wrote {options.Json}");
}
return 0;

// The program as bench/run.sh published it (ReadyToRun), or the build output (--no-ready-to-run, or a project it does not publish).
static string[] Dotnet(string root, string project, string name, params object[] args)
{
    string published = Path.Combine(root, "bench", ".published", name, name + ".dll");
    bool plain = Environment.GetCommandLineArgs().Contains("--no-ready-to-run");
    string dll = !plain && File.Exists(published) ? published : Path.Combine(root, project, "bin", "Release", "net10.0", name + ".dll");
    return new[] { "dotnet", dll }.Concat(args.Select(a => a.ToString()!)).ToArray();
}

// Every run with checkpoints gets a state folder of its own (a completed run leaves only its FORMAT file).
static string StateFolder() => Path.Combine(Path.GetTempPath(), "millrace-bench-state-" + Guid.NewGuid().ToString("N")[..12]);

// Every broker run gets exchanges and queues of its own.
// Eight hex digits, as the raw peer names its queues: the names travel in every message (the exchange in each publish and delivery).
static string RunId() => Guid.NewGuid().ToString("N")[..8];

static string FindRoot()
{
    for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
    {
        if (File.Exists(Path.Combine(dir, "Millrace.sln"))) return dir;
    }
    throw new DirectoryNotFoundException("Cannot find the repository root (Millrace.sln) above " + AppContext.BaseDirectory);
}

internal sealed record SystemSpec(string Name, string Description, Func<long, string[]> Command, bool Python = false, bool Broker = false);

internal sealed record Result(string System, long Items, double ItemsPerSecond, double ItemsPerSecondMin, double ItemsPerSecondMax,
    double CpuSeconds, double PeakMb, string Description, double? BrokerCpuSeconds = null, string PeakPerProcess = "-");

internal sealed class Options
{
    public long Items { get; private set; } = 10_000_000;
    public long PythonItems { get; private set; } = 1_000_000;
    public long BrokerItems { get; private set; } = 100_000;
    public int Runs { get; private set; } = 3;
    public HashSet<string>? Systems { get; private set; }
    public string? Json { get; private set; }
    public bool Quick { get; private set; }
    public bool Latency { get; private set; }
    public bool Replicas { get; private set; }
    public bool Parts { get; private set; }

    public bool Uploads { get; private set; }

    public static Options? Parse(string[] args)
    {
        var o = new Options();
        bool itemsSet = false, pythonSet = false, runsSet = false, brokerSet = false;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--items": o.Items = long.Parse(Next()); itemsSet = true; break;
                case "--python-items": o.PythonItems = long.Parse(Next()); pythonSet = true; break;
                case "--broker-items": o.BrokerItems = long.Parse(Next()); brokerSet = true; break;
                case "--runs": o.Runs = int.Parse(Next()); runsSet = true; break;
                case "--systems": o.Systems = Next().Split(',').ToHashSet(); break;
                case "--json": o.Json = Next(); break;
                case "--quick": o.Quick = true; break;
                case "--latency": o.Latency = true; break;
                case "--replicas": o.Replicas = true; break;
                case "--parts": o.Parts = true; break;
                case "--no-ready-to-run": break; // read by Dotnet(): the build output runs, not what bench/run.sh published
                case "--uploads": o.Uploads = true; break;
                default:
                    Console.Error.WriteLine($"unknown option '{args[i]}'. Options: --items N, --python-items N, --broker-items N, --runs R, --systems a,b, --json FILE, --quick, --latency, --replicas, --uploads, --parts");
                    return null;
            }
        }
        if (o.Quick)
        {
            if (!itemsSet) o.Items = 2_000_000;
            if (!pythonSet) o.PythonItems = 100_000;
            if (!brokerSet) o.BrokerItems = 20_000;
            if (!runsSet) o.Runs = 1;
        }
        return o;
    }
}

/// <summary>
/// Runs one command in a fresh helper process, which reports the command's wall time, CPU time
/// and peak memory from getrusage(RUSAGE_CHILDREN): every OS process of the command is counted,
/// since each is waited for by its parent.
/// </summary>
internal static class Measure
{
    public sealed record Sample(int ExitCode, double Seconds, double CpuSeconds, long PeakRssKb, string Output, double? BrokerCpuSeconds = null,
        IReadOnlyList<(string Name, long Kb)>? Peaks = null);

    public static Sample Launch(string[] command)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(typeof(Measure).Assembly.Location);
        info.ArgumentList.Add("--measure");
        foreach (string a in command) info.ArgumentList.Add(a);
        using var helper = Process.Start(info)!;
        Task<string> stderr = helper.StandardError.ReadToEndAsync();
        string stdout = helper.StandardOutput.ReadToEnd();
        helper.WaitForExit();
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string[] m = lines.Length > 0 && lines[^1].StartsWith("MEASURE ") ? lines[^1].Split(' ') : throw new InvalidOperationException($"The measuring helper failed:\n{stdout}\n{stderr.Result}");
        // The helper's own lines (PEAK ...) come last, after the command's output.
        int first = lines.Length - 1;
        while (first > 0 && lines[first - 1].StartsWith("PEAK ")) first--;
        var peaks = lines[first..^1].Select(l => l.Split(' ', 4)).Where(f => f[3] != "Millrace.Bench.dll")
            .Select(f => (f[3], long.Parse(f[2]))).ToList();
        return new Sample(int.Parse(m[1]), double.Parse(m[2]), double.Parse(m[3]), long.Parse(m[4]), string.Join('\n', lines[..first]) + "\n" + stderr.Result, Peaks: peaks);
    }

    public static int Run(string[] command)
    {
        // Once through the same path with a program that does nothing, so that compiling this
        // helper's own code does not compete, inside the measured time, with the program measured.
        using (var warm = Process.Start(new ProcessStartInfo("true") { RedirectStandardOutput = true, UseShellExecute = false })!)
        {
            warm.StandardOutput.ReadToEnd();
            warm.WaitForExit();
        }
        var info = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in command[1..]) info.ArgumentList.Add(a);
        var stopwatch = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        // Every OS process of the command, its peak resident memory (VmHWM: the most it ever held, so a late read still has
        // it) as last read; read every 100 ms until the end (about 1% of a core: more often cost the measured programs).
        var peaks = new Dictionary<int, (string Name, long Kb)>();
        using var done = new ManualResetEventSlim();
        var watcher = new Thread(() =>
        {
            do
            {
                foreach (int pid in Descendants(process.Id))
                {
                    if (ReadPeak(pid) is { } peak) peaks[pid] = peak;
                }
            } while (!done.Wait(100));
        }) { IsBackground = true, Priority = ThreadPriority.BelowNormal };
        watcher.Start();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        double seconds = stopwatch.Elapsed.TotalSeconds;
        done.Set();
        watcher.Join();
        getrusage(RUSAGE_CHILDREN, out RUsage usage);
        Console.Write(output);
        if (!output.EndsWith('\n')) Console.WriteLine();
        double cpu = usage.UserSec + usage.UserUsec / 1e6 + usage.SysSec + usage.SysUsec / 1e6;
        foreach (var (pid, (name, kb)) in peaks.OrderBy(p => p.Key)) Console.WriteLine($"PEAK {pid} {kb} {name}");
        Console.WriteLine($"MEASURE {process.ExitCode} {seconds:R} {cpu:R} {usage.MaxRss}");
        return 0;
    }

    /// <summary>The process and every process below it (children of children), from /proc.</summary>
    private static List<int> Descendants(int root)
    {
        var parents = new Dictionary<int, int>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                parents[pid] = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        var found = new List<int> { root };
        for (int i = 0; i < found.Count; i++) found.AddRange(parents.Where(p => p.Value == found[i]).Select(p => p.Key));
        return found;
    }

    /// <summary>A process's peak resident memory in KiB and what it runs (its command line's main file), or null once gone.</summary>
    private static (string Name, long Kb)? ReadPeak(int pid)
    {
        try
        {
            string? line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("VmHWM:"));
            if (line is null) return null;
            string[] command = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);
            string name = command.Length > 1 && command[0].EndsWith("dotnet") ? Path.GetFileName(command[1]) : command.Length > 0 ? Path.GetFileName(command[0]) : "?";
            return (name, long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    private const int RUSAGE_CHILDREN = -1;

    [StructLayout(LayoutKind.Sequential)]
    private struct RUsage
    {
        public long UserSec, UserUsec, SysSec, SysUsec, MaxRss;
        private long _ixrss, _idrss, _isrss, _minflt, _majflt, _nswap, _inblock, _oublock, _msgsnd, _msgrcv, _nsignals, _nvcsw, _nivcsw;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int getrusage(int who, out RUsage usage);
}
