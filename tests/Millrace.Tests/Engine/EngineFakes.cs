using System.Threading.Channels;
using Millrace.Engine;

namespace Millrace.Tests.Engine;

/// <summary>Pieces of the engine built by hand, and fakes for what surrounds them.</summary>
internal static class Fakes
{
    /// <summary>The way out of every wait: a hang fails the test instead of the build.</summary>
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    /// <summary>A run whose partial batches leave only when a process flushes (never by age: no timing in tests).</summary>
    public static RunContext Run(IRunReporter? reporter = null) =>
        new(new RunOptions { Linger = TimeSpan.FromHours(1) }) { Reporter = reporter };

    /// <summary>A runner for a process configured by <paramref name="configure"/> (not started).</summary>
    public static ProcessRunner Runner(string name, RunContext run, Action<ProcessBuilder>? configure = null) =>
        Runner(name, run, configure, out _);

    public static ProcessRunner Runner(string name, RunContext run, Action<ProcessBuilder>? configure, out ProcessBuilder builder)
    {
        builder = new ProcessBuilder(name);
        configure?.Invoke(builder);
        builder.Seal();
        return new ProcessRunner(builder, run);
    }

    /// <summary>Wires <paramref name="output"/> of <paramref name="writer"/> to <paramref name="destinations"/>, as <see cref="Wiring"/> does.</summary>
    public static BatchSender Wire<T>(ProcessRunner writer, Output<T> output, int batchSize, int maxPending, params Destination[] destinations)
    {
        var sender = new BatchSender(writer, output.Stream.Name, destinations, batchSize, maxPending);
        ((IOutputPort)output).Attach(sender);
        return sender;
    }

    /// <summary>Runs the process on a process thread of its own, as <see cref="RunHost"/> does.</summary>
    public static Task Start(ProcessRunner runner) => ProcessThread.Start(runner.Name, runner.RunAsync);

    public static long[] Items(Envelope envelope) => ((long[])envelope.Items!)[..envelope.Count];

    /// <summary>Waits for <paramref name="task"/>; a run that stops meanwhile (a failure) fails the test at once, saying why.</summary>
    public static async Task Within(this Task task, RunContext run)
    {
        await Task.WhenAny(task, run.HardStopped).WaitAsync(Limit);
        if (!task.IsCompleted) Assert.Fail("The run stopped: " + string.Join("; ", run.Errors.Select(e => e.Message)));
        await task;
    }
}

/// <summary>Hears the runners' pokes (a process became passive, blocked or ended): the events tests wait for.</summary>
internal sealed class Pokes : IRunReporter
{
    private readonly SemaphoreSlim _poked = new(0);
    private volatile ProcessFailure? _failure;

    public void Poke() => _poked.Release();

    public void Halted(string process, string? reason) => _poked.Release();

    public void Failed(ProcessFailure failure)
    {
        _failure ??= failure;
        _poked.Release();
    }

    /// <summary>Waits, poke by poke (never for a duration), until <paramref name="condition"/> holds.</summary>
    public async Task Until(Func<bool> condition, string what)
    {
        while (!condition())
        {
            if (_failure is { } failure) Assert.Fail($"The run failed while waiting until {what}: {failure.Message}");
            if (!await _poked.WaitAsync(Fakes.Limit))
                throw new TimeoutException($"No poke for {Fakes.Limit.TotalSeconds} s while waiting until {what}.");
        }
    }
}

/// <summary>A reader elsewhere whose room the test opens and closes; it keeps what it takes.</summary>
internal sealed class FakeDestination : Destination
{
    private readonly object _lock = new();
    private readonly List<long[]> _batches = new();
    private readonly List<ulong[]?> _ids = new();
    private bool _full;
    private ProcessRunner? _waiting;
    private int _ends;

    public FakeDestination(string readerName = "reader", int writer = 0, bool inSameCycle = false) : base(readerName, writer, inSameCycle)
    {
    }

    public long[][] Batches
    {
        get { lock (_lock) return _batches.ToArray(); }
    }

    /// <summary>Per batch, the ids of its items (placements that track ids), or null.</summary>
    public ulong[]?[] Ids
    {
        get { lock (_lock) return _ids.ToArray(); }
    }

    public int Ends
    {
        get { lock (_lock) return _ends; }
    }

    /// <summary>From now on the reader is full: batches are refused.</summary>
    public void Refuse()
    {
        lock (_lock) _full = true;
    }

    /// <summary>Room again: the writer refused meanwhile is woken, as the contract of <see cref="Destination.TryEnqueue"/> asks.</summary>
    public void MakeRoom()
    {
        ProcessRunner? waiting;
        lock (_lock)
        {
            _full = false;
            waiting = _waiting;
            _waiting = null;
        }
        waiting?.WakeForRoom();
    }

    public override bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer)
    {
        lock (_lock)
        {
            if (_full)
            {
                _waiting = writer;
                return false;
            }
            _batches.Add(((long[])items)[..count]);
            _ids.Add(ids?[..count]);
            return true;
        }
    }

    public override void SendEnd()
    {
        lock (_lock) _ends++;
    }

    public override string Fill => _full ? "full" : "room";
}

/// <summary>
/// Processes the test plays itself: each wave of the detector is a read the test answers, and every
/// call the detector makes (read, termination notice, deadlock description) is an event, in order.
/// </summary>
internal sealed class ScriptedStatus : IStatusSource
{
    public sealed record Read(TaskCompletionSource<WaveReading> Answer);
    public sealed record Forced(int Process);
    public sealed record Described;

    private readonly Channel<object> _events = Channel.CreateUnbounded<object>();

    public string Blocked { get; init; } = "'a' waits to write stream 'ab' (read by 'b', 4 of 4 items queued)";

    public async ValueTask<WaveReading> ReadAsync(CancellationToken cancellationToken)
    {
        var answer = new TaskCompletionSource<WaveReading>(TaskCreationOptions.RunContinuationsAsynchronously);
        _events.Writer.TryWrite(new Read(answer));
        return await answer.Task.WaitAsync(cancellationToken);
    }

    public void ForceEnd(int process) => _events.Writer.TryWrite(new Forced(process));

    public ValueTask<string> DescribeBlockedAsync(CancellationToken cancellationToken)
    {
        _events.Writer.TryWrite(new Described());
        return new(Blocked);
    }

    /// <summary>The detector's next call.</summary>
    public Task<object> NextAsync() => _events.Reader.ReadAsync().AsTask().WaitAsync(Fakes.Limit);

    /// <summary>The next call must be a read: answer it with <paramref name="processes"/>.</summary>
    public async Task AnswerAsync(params ProcessStatus[] processes)
    {
        object next = await NextAsync();
        Assert.IsType<Read>(next).Answer.SetResult(new WaveReading(processes));
    }

    /// <summary>Whatever the detector did, unread so far.</summary>
    public List<object> Drain()
    {
        var left = new List<object>();
        while (_events.Reader.TryRead(out object? e)) left.Add(e);
        return left;
    }
}
