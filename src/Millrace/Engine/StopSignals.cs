using System.Runtime.InteropServices;

namespace Millrace.Engine;

/// <summary>First Ctrl+C or SIGTERM: graceful stop; the second: stop at once.</summary>
internal sealed class StopSignals : IDisposable
{
    private readonly RunContext _run;
    private readonly PosixSignalRegistration[] _registrations;
    private int _count;

    private StopSignals(RunContext run)
    {
        _run = run;
        _registrations = new[]
        {
            PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal),
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal),
        };
    }

    /// <summary>
    /// Stops <paramref name="run"/> gracefully when <paramref name="cancellationToken"/> is cancelled and, unless the
    /// options say not to, on Ctrl+C and SIGTERM. Dispose to stop listening.
    /// </summary>
    public static IDisposable Listen(RunContext run, CancellationToken cancellationToken)
    {
        CancellationTokenRegistration onCancel = cancellationToken.Register(run.RequestStop);
        StopSignals? signals = run.Options.HandleStopSignals ? new StopSignals(run) : null;
        return new Both(onCancel, signals);
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        // Said aloud, at once: a drain can take seconds, and silence looks like a hang. (A logger hears GracefulStop/HardStop.)
        bool first = Interlocked.Increment(ref _count) == 1;
        if (_run.Options.Logger is null)
            Console.Error.WriteLine(first
                ? $"[millrace] stopping: draining, at most {_run.Options.DrainTimeout.TotalSeconds:0.#} s ({(context.Signal == PosixSignal.SIGINT ? "Ctrl+C" : "SIGTERM")} again to stop now)"
                : "[millrace] stopping now");
        if (first) _run.RequestStop();
        else _run.StopAll();
    }

    public void Dispose()
    {
        foreach (PosixSignalRegistration r in _registrations) r.Dispose();
    }

    private sealed class Both(CancellationTokenRegistration onCancel, StopSignals? signals) : IDisposable
    {
        public void Dispose()
        {
            onCancel.Dispose();
            signals?.Dispose();
        }
    }
}
