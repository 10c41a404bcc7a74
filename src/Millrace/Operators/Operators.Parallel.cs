using System.Collections.Concurrent;

namespace Millrace;

public static partial class Operators
{
    /// <summary>
    /// Map with <paramref name="workers"/> replicas: <paramref name="f"/> runs on that many threads
    /// at once, for CPU-heavy work. <paramref name="ordered"/> (the default) writes the results in
    /// the order of the input (re-sequenced: exactly what one worker would write); unordered writes
    /// each as soon as it is ready (the same items, in any order). <paramref name="f"/> must be safe
    /// to call from several threads at once (no shared state without locks). At most
    /// <paramref name="maxInFlight"/> items are being worked on or waiting to be written; beyond
    /// that the process waits (backpressure, bounded memory).
    /// </summary>
    public static void ParallelMap<TIn, TOut>(this Graph graph, string name, Stream<TIn> input, Stream<TOut> output, Func<TIn, TOut> f,
        int workers, bool ordered = true, int maxInFlight = 0)
    {
        ArgumentNullException.ThrowIfNull(f);
        if (workers < 1) throw new ArgumentOutOfRangeException(nameof(workers), workers, $"ParallelMap '{name}': at least one worker.");
        int bound = maxInFlight > 0 ? maxInFlight : Math.Max(64, workers * 256);
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            var work = new BlockingCollection<(long Seq, TIn Item)>(bound);
            var done = new ConcurrentQueue<(long Seq, TOut Result, Exception? Error)>();
            var ready = new Dictionary<long, (TOut Result, Exception? Error)>();
            // Every item given to the workers and not yet written, with the id of the item it came from.
            var inFlight = new Dictionary<long, (bool HasId, ulong Id, TIn Item)>();
            var room = new SemaphoreSlim(bound, bound);
            var threads = new List<Thread>();
            long next = 0, nextToWrite = 0;
            int postPending = 0;
            CancellationToken stop = default;

            void Write(long seq, TOut result)
            {
                // Give what is written the id of the item it came from, as a handler would.
                var (hasId, id, _) = inFlight[seq];
                inFlight.Remove(seq);
                if (p.Runner!.Identity is not { } identity)
                {
                    o.Emit(result);
                    return;
                }
                var saved = identity.Enter(hasId, id);
                try
                {
                    o.Emit(result);
                }
                finally
                {
                    identity.Restore(saved);
                }
            }

            // On the process's thread: write what is ready (in order when ordered), freeing room.
            void Drain()
            {
                Volatile.Write(ref postPending, 0);
                while (done.TryDequeue(out var r)) ready[r.Seq] = (r.Result, r.Error);
                if (ordered)
                {
                    while (ready.Remove(nextToWrite, out var r))
                    {
                        if (r.Error is not null) throw new InvalidOperationException($"ParallelMap '{name}': the function failed on item {nextToWrite}: {r.Error.Message}", r.Error);
                        Write(nextToWrite++, r.Result);
                        room.Release();
                    }
                }
                else
                {
                    foreach (var (seq, r) in ready)
                    {
                        if (r.Error is not null) throw new InvalidOperationException($"ParallelMap '{name}': the function failed on item {seq}: {r.Error.Message}", r.Error);
                        Write(seq, r.Result);
                        room.Release();
                    }
                    ready.Clear();
                }
            }

            p.OnStart(() =>
            {
                stop = p.CancellationToken;
                for (int w = 0; w < workers; w++)
                {
                    var thread = new Thread(() =>
                    {
                        try
                        {
                            foreach (var (seq, item) in work.GetConsumingEnumerable(stop))
                            {
                                TOut result = default!;
                                Exception? error = null;
                                try
                                {
                                    result = f(item);
                                }
                                catch (Exception e)
                                {
                                    error = e;
                                }
                                done.Enqueue((seq, result, error));
                                // Wake the process to write it (one wake-up at a time).
                                if (Interlocked.Exchange(ref postPending, 1) == 0) p.Post(Drain);
                            }
                        }
                        catch (OperationCanceledException)
                        {
                        }
                    })
                    { IsBackground = true, Name = $"millrace {name} worker {w}" };
                    threads.Add(thread);
                    thread.Start();
                }
            });

            void Submit(TIn x, bool hasId, ulong id)
            {
                // Wait for room, writing what is ready meanwhile (this thread is the only one that writes).
                while (!room.Wait(0))
                {
                    Drain();
                    if (room.Wait(TimeSpan.FromMilliseconds(5), stop)) break;
                }
                long seq = next++;
                inFlight[seq] = (hasId, id, x);
                work.Add((seq, x), stop);
                Drain();
            }

            p.On(input, x =>
            {
                if (p.Runner!.Identity is { } identity) Submit(x, identity.InItem, identity.CurrentId);
                else Submit(x, false, 0);
            });

            // A checkpoint keeps the items taken and not yet written (being worked on, or done and waiting
            // for their turn); a resumed run gives them to the workers again, in their order, before any new item.
            p.Keep("in flight", () => inFlight.OrderBy(e => e.Key).Select(e => e.Value.Item).ToArray(), items =>
            {
                foreach (TIn x in items) Submit(x, false, 0);
            });

            // Halted, failed or stopped: the workers leave (their token is cancelled); nothing more is added.
            p.Finally(() => work.CompleteAdding());
            p.OnCompleted(() =>
            {
                work.CompleteAdding();
                foreach (Thread thread in threads) thread.Join();
                Drain();
                if (ready.Count > 0 || !done.IsEmpty)
                    throw new InvalidOperationException($"ParallelMap '{name}': {ready.Count} results were left unwritten.");
            });
        });
    }
}
