using System.Text.RegularExpressions;

namespace Millrace.Tests;

/// <summary>The live terminal view, read from a pseudo-terminal (script(1) gives the program one).</summary>
public sealed class TerminalViewTests
{
    private static async Task<string> RunInTerminal(params string[] args)
    {
        string command = "dotnet " + ExampleProgram.OwnFile("Tutorial", "Tutorial.dll") + " " + string.Join(" ", args);
        var (exit, output, err) = await ExampleProgram.RunFileAsync("script", ["-qfec", command, "/dev/null"], seconds: 120);
        Assert.True(exit == 0, err + output);
        // What a person would see, without the escape sequences that draw it.
        return Regex.Replace(output, @"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r", "");
    }

    [Theory]
    [InlineData("threads")]
    [InlineData("processes")]
    public async Task A_terminal_shows_the_live_view_while_the_run_lasts_and_its_last_picture_at_the_end(string placement)
    {
        string screen = await RunInTerminal("--count", "60000000", "--capacity", "1000", "--placement", placement);
        Assert.Contains("db: 60000000 items, sum of roots", screen);
        Assert.Contains($"Millrace · {placement} · running", screen);          // drawn while it ran
        Assert.Contains($"Millrace · {placement} · Completed", screen);        // and the last picture
        foreach (string name in new[] { "web", "process1", "process2", "db" }) Assert.Contains($"│ {name} ", screen);
        foreach (string queue in new[] { "numbers → process1", "squares → process2", "roots → db" }) Assert.Contains(queue, screen);
        Assert.Contains("of 1000", screen);
        // The program's own line (printed by db while the view was up) is not drawn over: it comes after the last picture.
        Assert.True(screen.LastIndexOf("db: 60000000 items", StringComparison.Ordinal) > screen.LastIndexOf($"· {placement} · Completed", StringComparison.Ordinal),
            "The program's line came before the view's last picture, so the view drew over it.");
        // The web source knows its count: its progress reached 100%, and the counts went 60M.
        Assert.Contains("██████ 100%", screen);
        Assert.Contains("60.00M", screen);
        // Pictures during the run showed db's count growing.
        var counts = Regex.Matches(screen, @"│ db\s+│ \w+\s+│[^│]*│[^│]*│\s*([\d.]+[kMG]?) │").Select(m => m.Groups[1].Value).Distinct().ToList();
        Assert.True(counts.Count >= 2, "db's count did not change between pictures: " + string.Join(", ", counts));
    }

    [Fact]
    public async Task Quiet_runs_show_no_view_even_in_a_terminal()
    {
        string screen = await RunInTerminal("--count", "1000000", "--quiet");
        Assert.Contains("db: 1000000 items, sum of roots 499999500000", screen);
        Assert.DoesNotContain("Millrace ·", screen);
        Assert.DoesNotContain("│", screen);
    }
}

/// <summary>The Millrace meter read from outside, with dotnet-counters (the test command installs it in .tools/).</summary>
public sealed class DotnetCountersTests
{
    [Theory]
    [InlineData("threads")]
    [InlineData("processes")]
    public async Task Dotnet_counters_reads_the_Millrace_meter_of_a_running_program(string placement)
    {
        string tool = Environment.GetEnvironmentVariable("MILLRACE_DOTNET_COUNTERS")
            ?? throw new InvalidOperationException("MILLRACE_DOTNET_COUNTERS is not set: run the tests with bash scripts/test.sh, which installs dotnet-counters.");
        string csv = Path.Combine(Path.GetTempPath(), $"millrace-counters-{Guid.NewGuid():N}.csv");
        DateTime started = DateTime.UtcNow.AddSeconds(-1);
        using var program = ExampleProgram.Start("Tutorial", "--count", "1000000000000", "--capacity", "1000", "--placement", placement);
        bool stopped = false;
        void Stop()
        {
            if (stopped || program.HasExited) return;
            stopped = true;
            program.Signal(15);
        }
        try
        {
            // A tool can attach once the program's runtime has opened its diagnostic socket.
            // Its own: a process killed earlier in the test run (the chaos tests kill many) leaves its socket file, and a new
            // process may get its pid — a tool that takes the stale one waits for ever (CI, once). Stale ones are removed.
            string[] Sockets() => Directory.EnumerateFiles(Path.GetTempPath(), $"dotnet-diagnostic-{program.Pid}-*-socket").ToArray();
            await Waits.Until(() => program.HasExited || Sockets().Any(f => File.GetLastWriteTimeUtc(f) >= started),
                "the program's diagnostic socket", seconds: 60);
            foreach (string stale in Sockets().Where(f => File.GetLastWriteTimeUtc(f) < started)) File.Delete(stale);
            Assert.False(program.HasExited, program.ErrorOutput + program.Output);
            // The program started is the one to watch: in the processes placement its children report to it.
            // dotnet-counters collects until the program ends; it writes the file in pieces. Twice in CI (processes placement,
            // attached as the program started) it ran for 120 s without writing anything, not even its first line; attached
            // again it is a new session. At most three attaches, each given 60 s, and what each one said goes in the error.
            var stuck = new List<string>();
            for (int attempt = 1; ; attempt++)
            {
                using var counters = ExampleProgram.StartFile(tool, "collect", "-p", program.Pid.ToString(), "--counters", "Millrace", "--format", "csv", "-o", csv, "--refresh-interval", "1");
                string? timedOut = null;
                try
                {
                    await Waits.Until(() => counters.HasExited || Moving(ReadLines(csv)), "dotnet-counters to record db's items", seconds: 60);
                }
                catch (TimeoutException e)
                {
                    timedOut = e.Message;
                }
                if (timedOut is not null)
                {
                    stuck.Add($"attach {attempt}: {timedOut} dotnet-counters {(counters.HasExited ? "had exited" : "was running")}, the program " +
                        $"{(program.HasExited ? "had exited" : "was running")}, the file {(File.Exists(csv) ? $"held {new FileInfo(csv).Length} bytes" : "did not exist")}. What it recorded last:\n{string.Join("\n", ReadLines(csv).TakeLast(30))}\n" +
                        $"dotnet-counters said: {counters.ErrorOutput}{counters.Output}");
                    if (!counters.HasExited) counters.Signal(9);
                    await counters.WaitAsync(seconds: 30);
                    File.Delete(csv);
                    if (attempt < 3 && !program.HasExited) continue;
                    throw new TimeoutException(string.Join("\n", stuck) + $"\nThe program said: {program.ErrorOutput}{program.Output}");
                }
                // Recording (or the tool ended early, which its exit code says): the program ends, and with it the collection.
                Stop();
                var (exit, output, err) = await counters.WaitAsync(seconds: 60);
                Assert.True(exit == 0, $"dotnet-counters exited with {exit}: {err}{output}" + (stuck.Count > 0 ? "\nEarlier attaches:\n" + string.Join("\n", stuck) : ""));
                break;
            }
            string[] lines = File.ReadAllLines(csv);
            foreach (string process in new[] { "web", "process1", "process2", "db" })
                Assert.Contains(lines, l => l.Contains("millrace.process.items_out") && l.Contains($"[process={process};"));
            var dbRates = lines.Where(l => l.Contains("millrace.process.items_in") && l.Contains("[process=db;"))
                .Select(l => double.Parse(l.Split(',')[^1], System.Globalization.CultureInfo.InvariantCulture)).ToList();
            Assert.NotEmpty(dbRates);
            Assert.Contains(dbRates, r => r > 0);
            var depths = lines.Where(l => l.Contains("millrace.stream.queue_depth"))
                .Select(l => double.Parse(l.Split(',')[^1], System.Globalization.CultureInfo.InvariantCulture)).ToList();
            Assert.NotEmpty(depths);
            Assert.All(depths, d => Assert.InRange(d, 0, 1000 + 8192));
        }
        finally
        {
            Stop();
            File.Delete(csv);
        }
        // Outside the finally: a failure above is not hidden by this one.
        var (code, _, programErr) = await program.WaitAsync(seconds: 60);
        Assert.True(code == 0, $"The program ended with {code} after SIGTERM: {programErr}");

        static string[] ReadLines(string path) => File.Exists(path) ? File.ReadAllLines(path) : [];

        // db's items per second above 0 in what is written so far (its last line may be half-written).
        static bool Moving(string[] lines) => lines.Any(l => l.Contains("millrace.process.items_in") && l.Contains("[process=db;")
            && double.TryParse(l.Split(',')[^1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double rate) && rate > 0);
    }
}
