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

    private ExampleProgram(string name, string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, name + ".dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"Example {name} is not built beside the tests.", dll);
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (string a in args) info.ArgumentList.Add(a);
        _process = new Process { StartInfo = info };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_out) _out.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_err) _err.AppendLine(e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public static ExampleProgram Start(string name, params string[] args) => new(name, args);

    /// <summary>Runs to the end (killed after <paramref name="seconds"/>, which fails the test).</summary>
    public static async Task<(int ExitCode, string Out, string Err)> RunAsync(string name, string[] args, int seconds = 60)
    {
        using var program = Start(name, args);
        return await program.WaitAsync(seconds);
    }

    public string Output
    {
        get { lock (_out) return _out.ToString(); }
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
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"The program did not end within {seconds} s. Output so far:\n{Output}");
        }
        _process.WaitForExit(); // flushes the redirected output
        lock (_err) return (_process.ExitCode, Output, _err.ToString());
    }

    public async Task WaitForOutputAsync(Func<string, bool> condition, int seconds)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition(Output))
        {
            if (_process.HasExited || DateTime.UtcNow > deadline)
                throw new TimeoutException($"The expected output did not appear within {seconds} s. Output so far:\n{Output}");
            await Task.Delay(20);
        }
    }

    public void Signal(int signal)
    {
        if (kill(_process.Id, signal) != 0) throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);
}
