namespace Millrace.Engine;

/// <summary>One input of a process: the stream it reads and the handler called per item.</summary>
internal abstract class InputSpec
{
    protected InputSpec(IStreamReference stream) => Stream = stream;

    public IStreamReference Stream { get; }

    /// <summary>Called on the process's thread when this input has ended (every writer of it), if set.</summary>
    public Action? Ended { get; set; }

    /// <summary>The handler as given (for checks of what it captures).</summary>
    public abstract Delegate? Handler { get; }

    /// <summary>Whether items go to the handler's compiled copy now (<see cref="HandlerCompiler"/>), not to the handler as given.</summary>
    internal abstract bool CallsCompiledCopy { get; }


    /// <summary>Calls the handler for each item of a batch, in order; the runner's state says when to pause.</summary>
    public abstract ValueTask HandleAsync(ProcessRunner runner, Lane lane, Array batch, int count);

    /// <summary>The same for items that carry ids (placements that may deliver twice): each id is current while its item is handled.</summary>
    public abstract ValueTask HandleAsync(ProcessRunner runner, Lane lane, Array batch, int count, ulong[]? ids);

    /// <summary>A checkpoint's copy of items on their way: JSON of the first <paramref name="count"/> items of <paramref name="batch"/>.</summary>
    public abstract byte[] Encode(Array batch, int count);

    /// <summary>Items a checkpoint kept (<see cref="Encode"/>), back as an array of the stream's item type.</summary>
    public abstract Array Decode(byte[] data);
}

internal sealed class InputSpec<T> : InputSpec
{
    private readonly Action<T>? _handler;
    private readonly Func<T, CancellationToken, ValueTask>? _asyncHandler;
    // The handler as called: the one given, until its compiled copy (HandlerCompiler) is ready: set once, from Millrace's
    // compiling thread, after the input's first items (a run of a few items never pays for the compiling).
    private volatile Action<T>? _current;
    private long _untilCompile = HandlerCompiler.Enabled ? HandlerCompiler.AfterItems : long.MaxValue;

    private Action<T> Current => _current ?? _handler!;

    internal override bool CallsCompiledCopy => _current is not null;

    private void CountTowardsCompile(int count)
    {
        if ((_untilCompile -= count) > 0) return;
        _untilCompile = long.MaxValue;
        HandlerCompiler.Enqueue(() =>
        {
            if (HandlerCompiler.TryCompile(_handler!) is { } compiled) _current = compiled;
        });
    }

    public override Delegate? Handler => (Delegate?)_handler ?? _asyncHandler;

    public InputSpec(Stream<T> stream, Action<T>? handler, Func<T, CancellationToken, ValueTask>? asyncHandler) : base(stream)
    {
        _handler = handler;
        _asyncHandler = asyncHandler;
    }

    public override byte[] Encode(Array batch, int count) =>
        System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new ArraySegment<T>((T[])batch, 0, count), JsonCodec<T>.Defaults);

    public override Array Decode(byte[] data) =>
        System.Text.Json.JsonSerializer.Deserialize<T[]>(data, JsonCodec<T>.Defaults) ?? [];

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public override ValueTask HandleAsync(ProcessRunner runner, Lane lane, Array batch, int count)
    {
        runner.AssertRunnerThread("InputSpec.HandleAsync (Lane.Position)");
        T[] items = (T[])batch;
        if (_handler is null) return HandleSlowAsync(runner, lane, items, 0, count);
        Action<T> handler = Current;
        CountTowardsCompile(count);

        // The hot path: synchronous handler, nothing to wait for. The loop itself has no exception handling (its variables
        // stay in registers); which item threw is told by the count of items handled.
        long before = runner.ItemsIn;
        int done;
        try
        {
            done = HandleRun(handler, runner, items, count);
        }
        catch (Exception e) when (!runner.IsStopException(e) && !runner.TickFailing)
        {
            int i = (int)(runner.ItemsIn - before);
            lane.Position += i;
            if (!runner.HasErrorPolicy) throw runner.ItemFailure(lane, items[i], e);
            // The error policy takes over (it may wait to retry): the rest of the batch goes the slow way.
            return RecoverThenGoOnAsync(runner, lane, items, i, count, e);
        }
        lane.Position += done;
        // Paused before the end, or the last item's emit blocked an output: the slow way goes on, or waits for room.
        return done == count && !runner.Blocked ? default : HandleSlowAsync(runner, lane, items, done, count);
    }

    /// <summary>Calls the handler for items 0 to <paramref name="count"/> - 1; returns how many it handled before the process had to pause.</summary>
    /// <remarks>Fully optimized at once: called once per batch, it would wait long for tiered compilation.</remarks>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static int HandleRun(Action<T> handler, ProcessRunner runner, T[] items, int count)
    {
        ReadOnlySpan<T> span = new(items, 0, count);
        for (int i = 0; i < span.Length; i++)
        {
            handler(span[i]);
            // Counted per item, not per batch: the metrics of a slow process move as it works.
            runner.ItemsIn++;
            if (runner.TickThenPause()) return i + 1;
        }
        return span.Length;
    }

    public override ValueTask HandleAsync(ProcessRunner runner, Lane lane, Array batch, int count, ulong[]? ids) =>
        ids is null ? HandleAsync(runner, lane, batch, count) : HandleWithIdsAsync(runner, lane, (T[])batch, count, ids);

    private async ValueTask HandleWithIdsAsync(ProcessRunner runner, Lane lane, T[] items, int count, ulong[] ids)
    {
        ItemIdentity identity = runner.Identity ?? throw new InvalidOperationException(
            $"Process '{runner.Name}' received items with ids, but its placement gave it no item identity.");
        for (int i = 0; i < count; i++)
        {
            if (runner.Blocked) await runner.DrainAsync();
            if (runner.Stopping) return;
            T item = items[i];
            if (!identity.Begin(ids[i]))
            {
                // Handled before (delivered again after a restart or a lost connection): skip it.
                lane.Position++;
                continue;
            }
            try
            {
                if (_handler is not null) Current(item);
                else await _asyncHandler!(item, runner.UserToken);
            }
            catch (Exception e) when (!runner.IsStopException(e))
            {
                if (!runner.HasErrorPolicy) throw runner.ItemFailure(lane, item, e);
                await runner.RecoverAsync(lane, item, e, x => Again(runner, x));
            }
            finally
            {
                identity.End();
            }
            runner.AssertRunnerThread("InputSpec.HandleAsync (Lane.Position)");
            lane.Position++;
            runner.ItemsIn++;
            runner.Tick();
        }
        if (runner.Blocked) await runner.DrainAsync();
    }

    /// <summary>Items from <paramref name="from"/> on, pausing for backpressure and async handlers.</summary>
    private async ValueTask HandleSlowAsync(ProcessRunner runner, Lane lane, T[] items, int from, int count)
    {
        for (int i = from; i < count; i++)
        {
            if (runner.Blocked) await runner.DrainAsync();
            if (runner.Stopping) return;
            T item = items[i];
            try
            {
                if (_handler is not null)
                {
                    Current(item);
                }
                else
                {
                    // No flushing while the handler runs: it may emit from another thread after an await.
                    await _asyncHandler!(item, runner.UserToken);
                }
            }
            catch (Exception e) when (!runner.IsStopException(e))
            {
                if (!runner.HasErrorPolicy) throw runner.ItemFailure(lane, item, e);
                await runner.RecoverAsync(lane, item, e, x => Again(runner, x));
            }
            runner.AssertRunnerThread("InputSpec.HandleAsync (Lane.Position)");
            lane.Position++;
            runner.ItemsIn++;
            runner.Tick();
        }
        if (runner.Blocked) await runner.DrainAsync();
    }

    /// <summary>The item at <paramref name="at"/> failed on the hot path: the error policy deals with it, then the rest of the batch follows.</summary>
    private async ValueTask RecoverThenGoOnAsync(ProcessRunner runner, Lane lane, T[] items, int at, int count, Exception e)
    {
        await runner.RecoverAsync(lane, items[at], e, x => Again(runner, x));
        lane.Position++;
        runner.ItemsIn++;
        runner.Tick();
        await HandleSlowAsync(runner, lane, items, at + 1, count);
    }

    /// <summary>Calls the handler again for a retry.</summary>
    private ValueTask Again(ProcessRunner runner, T item)
    {
        if (_handler is null) return _asyncHandler!(item, runner.UserToken);
        Current(item);
        return default;
    }
}
