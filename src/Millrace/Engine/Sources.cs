namespace Millrace.Engine;

/// <summary>The body of a built-in source process: emits until its data ends or a stop is asked.</summary>
internal abstract class SourceBody
{
    /// <summary>How many items it will emit, when known (progress in the live views).</summary>
    public long? Total { get; init; }

    public abstract ValueTask RunAsync(ProcessRunner runner);

    /// <summary>Whether it can start again where a checkpoint left it (after <see cref="Skip"/> items).</summary>
    public virtual bool Rewindable => false;

    /// <summary>Items to pass over before emitting: those a checkpoint's run had already emitted.</summary>
    public long Skip { get; set; }
}

internal sealed class EnumerableSource<T> : SourceBody
{
    public override bool Rewindable => true;

    private readonly Output<T> _output;
    private readonly IEnumerable<T> _items;

    public EnumerableSource(Output<T> output, IEnumerable<T> items)
    {
        _output = output;
        _items = items;
    }

    // Fully optimized at once: a source's loop runs millions of times from its first call, and
    // waiting for tiered compilation to replace it costs a short run a tenth of its time.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public override ValueTask RunAsync(ProcessRunner runner)
    {
        Output<T> output = _output;
        using IEnumerator<T> items = _items.GetEnumerator();
        // Resumed from a checkpoint: the same enumerable yields the same items again; pass over those already emitted.
        for (long skipped = 0; skipped < Skip && !runner.SourceShouldStop; skipped++)
        {
            if (!items.MoveNext()) return default;
        }
        // Asked to stop before taking the next item, never after: an item taken is always emitted
        // (an enumerable that reads a queue or a socket would otherwise lose it).
        long untilCompile = HandlerCompiler.Enabled ? HandlerCompiler.AfterItems : long.MaxValue;
        while (!runner.SourceShouldStop && items.MoveNext())
        {
            output.Emit(items.Current);
            if (runner.Blocked) runner.DrainBlockingUntilSourcesStop();
            runner.Tick();
            if (--untilCompile > 0) continue;
            // After its first items: the same loop compiled for this enumerator's type (SourcePump) goes on from here once ready.
            if (untilCompile == 0)
            {
                Type type = items.GetType();
                HandlerCompiler.Enqueue(() =>
                {
                    if (SourcePump<T>.TryCompile(type) is { } compiled) _pump = new Compiled(type, compiled);
                });
            }
            else if ((untilCompile & 1023) == 0 && _pump is { } pump && pump.Type == items.GetType())
            {
                pump.Run(items, runner, output);
                return default;
            }
        }
        return default;
    }

    // The compiled loop and the enumerator type it is for, once ready (set from Millrace's compiling thread).
    private volatile Compiled? _pump;

    private sealed record Compiled(Type Type, SourcePump<T>.Pump Run);
}

internal sealed class FunctionSource<T> : SourceBody
{
    private readonly Output<T> _output;
    private readonly Func<Output<T>, bool> _next;

    public FunctionSource(Output<T> output, Func<Output<T>, bool> next)
    {
        _output = output;
        _next = next;
    }

    public override ValueTask RunAsync(ProcessRunner runner)
    {
        while (!runner.SourceShouldStop && _next(_output))
        {
            if (runner.Blocked) runner.DrainBlockingUntilSourcesStop();
            runner.Tick();
        }
        return default;
    }
}

internal sealed class AsyncEnumerableSource<T> : SourceBody
{
    private readonly Output<T> _output;
    private readonly IAsyncEnumerable<T> _items;
    private readonly bool _rewindable;

    /// <param name="output">Where its items go.</param>
    /// <param name="items">The items.</param>
    /// <param name="rewindable">Whether the sequence yields the same items again when enumerated again (a file's lines), so a checkpoint can resume it.</param>
    public AsyncEnumerableSource(Output<T> output, IAsyncEnumerable<T> items, bool rewindable = false)
    {
        _output = output;
        _items = items;
        _rewindable = rewindable;
    }

    public override bool Rewindable => _rewindable;

    /// <summary>The sequence itself starts after <see cref="SourceBody.Skip"/> items (a timer, which would otherwise wait for each).</summary>
    public bool SkipsItself { get; init; }

    public override async ValueTask RunAsync(ProcessRunner runner)
    {
        await using IAsyncEnumerator<T> e = _items.GetAsyncEnumerator(runner.UserToken);
        // Resumed from a checkpoint: pass over the items already emitted.
        for (long skipped = 0; !SkipsItself && skipped < Skip && !runner.SourceShouldStop; skipped++)
        {
            if (!await e.MoveNextAsync()) return;
        }
        while (!runner.SourceShouldStop)
        {
            ValueTask<bool> next = e.MoveNextAsync();
            bool more;
            if (!next.IsCompleted)
            {
                // The source waits: let what it emitted leave meanwhile. Waiting is not work.
                runner.FlushOutputs();
                if (runner.Blocked) await runner.DrainAsync();
                runner.BeginWait();
                runner.SourceWaits(true);
                try
                {
                    more = await next;
                }
                finally
                {
                    runner.SourceWaits(false);
                    runner.EndWait();
                }
            }
            else
            {
                more = await next;
            }
            if (!more) break;
            _output.Emit(e.Current);
            if (runner.Blocked) await runner.DrainAsync();
            runner.Tick();
        }
    }
}

internal sealed class AsyncFunctionSource<T> : SourceBody
{
    private readonly Output<T> _output;
    private readonly Func<Output<T>, CancellationToken, ValueTask<bool>> _next;

    public AsyncFunctionSource(Output<T> output, Func<Output<T>, CancellationToken, ValueTask<bool>> next)
    {
        _output = output;
        _next = next;
    }

    public override async ValueTask RunAsync(ProcessRunner runner)
    {
        while (!runner.SourceShouldStop)
        {
            ValueTask<bool> call = _next(_output, runner.UserToken);
            bool more;
            if (call.IsCompleted)
            {
                more = await call;
            }
            else
            {
                // The function waits inside the call (a delay, I/O): what it emitted leaves now, and again
                // each time it waits later in the same call. Its awaits come back to this process's thread
                // (documented: no ConfigureAwait(false) in it), so it is suspended whenever that thread runs
                // out of work: flushing then races with nothing.
                runner.FlushOutputs();
                ProcessThread? thread = ProcessThread.OfCurrentThread;
                Exception? flushFailed = null;
                if (thread is not null)
                {
                    thread.Idle = () =>
                    {
                        // A flush that fails (a value its codec refuses, a stop) fails the source, not the thread.
                        try
                        {
                            runner.FlushOutputs();
                        }
                        catch (Exception e)
                        {
                            flushFailed ??= e;
                            thread.Idle = null;
                        }
                    };
                }
                try
                {
                    more = await call;
                }
                finally
                {
                    if (thread is not null) thread.Idle = null;
                }
                if (flushFailed is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(flushFailed);
            }
            if (!more) break;
            if (runner.Blocked) await runner.DrainAsync();
            runner.Tick();
        }
    }
}
