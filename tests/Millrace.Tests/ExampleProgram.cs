using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Millrace.Tests;

/// <summary>Runs one of the example programs (built beside the tests) as its own OS process.</summary>
internal sealed class ExampleProgram : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _out = new();
    private readonly StringBuilder _err = new();

    private ExampleProgram(string file, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        if (environment is not null)
            foreach (var (name, value) in environment) info.Environment[name] = value;
        _process = new Process { StartInfo = info };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_err) _err.AppendLine(e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>Starts <c>dotnet NAME.dll ARGS</c> for a program of the solution, from its own build folder.</summary>
    public static ExampleProgram Start(string name, params string[] args) => new("dotnet", new[] { OwnFile(name, name + ".dll") }.Concat(args));

    /// <summary>The same, with environment variables of its own.</summary>
    public static ExampleProgram Start(string name, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        new("dotnet", new[] { OwnFile(name, name + ".dll") }.Concat(args), environment);

    /// <summary>
    /// A file of a program's own build output (<c>examples/NAME/bin/CONFIG/net10.0/</c>, or under
    /// <c>tests/</c>), found beside the tests when the solution is not around. Each program runs
    /// from its own folder with its own dependencies: beside the tests, a package that the test
    /// project gets from the ASP.NET Core framework (System.Threading.RateLimiting) is missing for
    /// programs that do not use that framework.
    /// </summary>
    public static string OwnFile(string program, string file)
    {
        string here = AppContext.BaseDirectory;
        string configuration = here.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}") ? "Debug" : "Release";
        for (DirectoryInfo? dir = new(here); dir is not null; dir = dir.Parent)
        {
            if (!File.Exists(Path.Combine(dir.FullName, "Millrace.sln"))) continue;
            foreach (string folder in new[] { "examples", "tests" })
            {
                string candidate = Path.Combine(dir.FullName, folder, program, "bin", configuration, "net10.0", file);
                if (File.Exists(candidate)) return candidate;
            }
            break;
        }
        string beside = Path.Combine(here, file);
        if (!File.Exists(beside)) throw new FileNotFoundException($"Program {program} is built neither in its own folder nor beside the tests.", beside);
        return beside;
    }

    /// <summary>Starts an executable file.</summary>
    public static ExampleProgram StartFile(string file, params string[] args) => new(file, args);

    /// <summary>Runs an executable file to the end.</summary>
    public static async Task<(int ExitCode, string Out, string Err)> RunFileAsync(string file, string[] args, int seconds = 60)
    {
        using var program = new ExampleProgram(file, args);
        return await program.WaitAsync(seconds);
    }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public static void Kill(int pid, int signal)
    {
        if (!TryKill(pid, signal)) throw new InvalidOperationException($"kill({pid}, {signal}) failed: no such process (it had ended)");
    }

    /// <summary>Sends <paramref name="signal"/>; false when the process had ended already (ESRCH). Any other failure throws.</summary>
    public static bool TryKill(int pid, int signal)
    {
        if (kill(pid, signal) == 0) return true;
        int errno = Marshal.GetLastPInvokeError();
        if (errno == 3) return false;
        throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {errno}");
    }

    /// <summary>Runs to the end (killed after <paramref name="seconds"/>, which fails the test).</summary>
    public static async Task<(int ExitCode, string Out, string Err)> RunAsync(string name, string[] args, int seconds = 60,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        using var program = new ExampleProgram("dotnet", new[] { OwnFile(name, name + ".dll") }.Concat(args), environment);
        return await program.WaitAsync(seconds);
    }

    public string Output
    {
        get { lock (_out) return _out.ToString(); }
    }

    public string ErrorOutput
    {
        get { lock (_err) return _err.ToString(); }
    }

    public async Task<(int ExitCode, string Out, string Err)> WaitAsync(int seconds)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            // What is still alive says where it hangs: the program itself, or a child that keeps its output open.
            string alive = Describe(_process.HasExited ? [] : [_process.Id]) + Describe(Descendants(_process.Id));
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"The program did not end within {seconds} s (exited: {_process.HasExited}). Still running:\n{alive}" +
                $"Output so far:\n{Output}\nError output so far:\n{ErrorOutput}");
        }
        _process.WaitForExit(); // flushes the redirected output
        lock (_err) return (_process.ExitCode, Output, _err.ToString());
    }

    /// <summary>The processes started (directly or not) by <paramref name="pid"/>, alive now.</summary>
    private static int[] Descendants(int pid)
    {
        var all = ChildProcessesOf(pid).ToList();
        for (int i = 0; i < all.Count; i++) all.AddRange(ChildProcessesOf(all[i]));
        return all.ToArray();

        static IEnumerable<int> ChildProcessesOf(int parent) => Directory.GetDirectories("/proc")
            .Select(d => int.TryParse(Path.GetFileName(d), out int p) ? p : 0)
            .Where(p => p > 0 && ChildProcesses.ParentOf(p) == parent).ToArray();
    }

    private static string Describe(int[] pids) => string.Concat(pids.Select(pid =>
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            string state = stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[0];
            string command = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
            return $"  {pid} [{state}] {ChildProcesses.Processes(pid) ?? "(the program)"}: {command}\n";
        }
        catch (IOException)
        {
            return "";
        }
    }));

    public async Task WaitForOutputAsync(Func<string, bool> condition, int seconds)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition(Output))
        {
            if (_process.HasExited || DateTime.UtcNow > deadline)
                throw new TimeoutException($"The expected output did not appear within {seconds} s{(_process.HasExited ? $" (the program ended with exit code {_process.ExitCode})" : "")}. Output so far:\n{Output}\nErrors so far:\n{ErrorOutput}");
            await Task.Delay(20);
        }
    }

    public async Task WaitForErrorOutputAsync(Func<string, bool> condition, int seconds)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition(ErrorOutput))
        {
            if (_process.HasExited || DateTime.UtcNow > deadline)
                throw new TimeoutException($"The expected error output did not appear within {seconds} s. Errors so far:\n{ErrorOutput}\nOutput so far:\n{Output}");
            await Task.Delay(20);
        }
    }

    public void Signal(int signal) => Kill(_process.Id, signal);

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);
}
