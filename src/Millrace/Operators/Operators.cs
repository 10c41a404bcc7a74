namespace Millrace;

/// <summary>An item together with the index of the input it came from (<see cref="Operators.Mix{T}"/>, <see cref="Operators.Separate{T}"/>).</summary>
/// <param name="Index">Which input, counting from 0 in the order the inputs were given.</param>
/// <param name="Item">The item.</param>
public readonly record struct Tagged<T>(int Index, T Item);

/// <summary>One time of a <see cref="Operators.TimedZip{T}"/>: for each input, its item at that time, if it had one.</summary>
/// <param name="Time">The time.</param>
/// <param name="Values">Per input, in input order: its item at this time (default when it had none).</param>
/// <param name="Present">Per input: whether it had an item at this time.</param>
public sealed record TimedRow<T>(long Time, T[] Values, bool[] Present);

/// <summary>
/// Ready-made processes (IoTPy's agent types): each call declares one process, named by its first
/// argument, that reads its input streams and writes its output streams. They run unchanged in every
/// placement. Handlers of one process never run concurrently, so the functions given may keep state
/// in their closures; the <c>...WithState</c> variants make the state explicit.
/// </summary>
public static partial class Operators
{
    /// <summary>Writes <c>f(x)</c> to <paramref name="output"/> for every item x of <paramref name="input"/>.</summary>
    public static void Map<TIn, TOut>(this Graph graph, string name, Stream<TIn> input, Stream<TOut> output, Func<TIn, TOut> f)
    {
        ArgumentNullException.ThrowIfNull(f);
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            p.On(input, x => o.Emit(f(x)));
        });
    }

    /// <summary>
    /// Map with explicit state: <c>(y, state) = f(x, state)</c> for every item x, starting from
    /// <paramref name="initial"/>; writes y.
    /// </summary>
    public static void MapWithState<TIn, TOut, TState>(this Graph graph, string name, Stream<TIn> input, Stream<TOut> output,
        TState initial, Func<TIn, TState, (TOut Output, TState State)> f)
    {
        ArgumentNullException.ThrowIfNull(f);
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            TState state = initial;
            p.On(input, x =>
            {
                (TOut y, state) = f(x, state);
                o.Emit(y);
            });
        });
    }

    /// <summary>
    /// Flat-map with explicit state (covers a filter with state too): <c>(ys, state) = f(x, state)</c>
    /// for every item x, starting from <paramref name="initial"/>; writes every item of ys (none, one or many).
    /// </summary>
    public static void FlatMapWithState<TIn, TOut, TState>(this Graph graph, string name, Stream<TIn> input, Stream<TOut> output,
        TState initial, Func<TIn, TState, (IEnumerable<TOut> Outputs, TState State)> f)
    {
        ArgumentNullException.ThrowIfNull(f);
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            TState state = initial;
            p.On(input, x =>
            {
                (IEnumerable<TOut> ys, state) = f(x, state);
                foreach (TOut y in ys) o.Emit(y);
            });
        });
    }

    /// <summary>Writes the items of <paramref name="input"/> for which <paramref name="keep"/> is true, in order.</summary>
    public static void Filter<T>(this Graph graph, string name, Stream<T> input, Stream<T> output, Func<T, bool> keep)
    {
        ArgumentNullException.ThrowIfNull(keep);
        graph.Process(name, p =>
        {
            Output<T> o = p.Output(output);
            p.On(input, x =>
            {
                if (keep(x)) o.Emit(x);
            });
        });
    }

    /// <summary>Writes every item of <c>f(x)</c> (none, one or many) for every item x of <paramref name="input"/>.</summary>
    public static void FlatMap<TIn, TOut>(this Graph graph, string name, Stream<TIn> input, Stream<TOut> output, Func<TIn, IEnumerable<TOut>> f)
    {
        ArgumentNullException.ThrowIfNull(f);
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            p.On(input, x =>
            {
                foreach (TOut y in f(x)) o.Emit(y);
            });
        });
    }

    /// <summary>
    /// An element function with several outputs: <paramref name="f"/> gets each item and the writers
    /// of <paramref name="outputs"/> (in the order given) and emits to any of them, any number of times.
    /// </summary>
    public static void ForEachTo<TIn, TOut>(this Graph graph, string name, Stream<TIn> input, Stream<TOut>[] outputs, Action<TIn, Output<TOut>[]> f)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(f);
        graph.Process(name, p =>
        {
            Output<TOut>[] o = outputs.Select(p.Output).ToArray();
            p.On(input, x => f(x, o));
        });
    }

    /// <summary>
    /// Count windows: every <paramref name="step"/> items, <c>f</c> of the last <paramref name="size"/>
    /// items (tumbling when step = size, sliding when step &lt; size; with step &gt; size the items
    /// between windows are skipped). Window k holds items k·step … k·step + size − 1. With
    /// <paramref name="partialAtStart"/>, the windows that would end before the first full one (on
    /// the same grid) are written too, with the items seen so far. An incomplete window at the end is not written.
    /// </summary>
    public static void Window<T, TOut>(this Graph graph, string name, Stream<T> input, Stream<TOut> output, int size, int step,
        Func<IReadOnlyList<T>, TOut> f, bool partialAtStart = false)
    {
        ArgumentNullException.ThrowIfNull(f);
        WindowCore(graph, name, input, output, size, step, partialAtStart, (w, o) => o.Emit(f(w)));
    }

    /// <summary>Count windows as in <see cref="Window{T, TOut}"/>, with a function that returns any number of items per window.</summary>
    public static void WindowMany<T, TOut>(this Graph graph, string name, Stream<T> input, Stream<TOut> output, int size, int step,
        Func<IReadOnlyList<T>, IEnumerable<TOut>> f, bool partialAtStart = false)
    {
        ArgumentNullException.ThrowIfNull(f);
        WindowCore(graph, name, input, output, size, step, partialAtStart, (w, o) =>
        {
            foreach (TOut y in f(w)) o.Emit(y);
        });
    }

    private static void WindowCore<T, TOut>(Graph graph, string name, Stream<T> input, Stream<TOut> output, int size, int step,
        bool partialAtStart, Action<IReadOnlyList<T>, Output<TOut>> emit)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, $"Window '{name}': the size must be at least 1.");
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, $"Window '{name}': the step must be at least 1.");
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            var ring = new T[size];
            long seen = 0;
            p.On(input, x =>
            {
                ring[seen % size] = x;
                long last = seen++;
                long fromFirstEnd = last - (size - 1);
                bool full = fromFirstEnd >= 0;
                if (fromFirstEnd % step != 0 || (!full && !partialAtStart)) return;
                int count = (int)Math.Min(size, seen);
                var window = new T[count];
                for (int k = 0; k < count; k++) window[k] = ring[(seen - count + k) % size];
                emit(window, o);
            });
        });
    }

    /// <summary>
    /// Synchronous zip of two streams: the n-th item of each, combined by <paramref name="f"/>. Ends
    /// with the shorter input (the other's later items are read and dropped). At most
    /// <paramref name="maxBuffered"/> items wait for their partner; more is a clear error, not unbounded memory.
    /// </summary>
    public static void Zip<T1, T2, TOut>(this Graph graph, string name, Stream<T1> first, Stream<T2> second, Stream<TOut> output,
        Func<T1, T2, TOut> f, int maxBuffered = 1_000_000)
    {
        ArgumentNullException.ThrowIfNull(f);
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            var a = new Queue<T1>();
            var b = new Queue<T2>();
            bool aEnded = false, bEnded = false;
            void Pair()
            {
                while (a.Count > 0 && b.Count > 0) o.Emit(f(a.Dequeue(), b.Dequeue()));
            }
            p.On(first, x =>
            {
                if (bEnded && b.Count == 0) return; // no partner will ever come
                Buffer(name, a, x, maxBuffered, first.Name);
                Pair();
            });
            p.On(second, y =>
            {
                if (aEnded && a.Count == 0) return;
                Buffer(name, b, y, maxBuffered, second.Name);
                Pair();
            });
            p.OnEnded(first, () =>
            {
                aEnded = true;
                if (a.Count == 0) b.Clear();
            });
            p.OnEnded(second, () =>
            {
                bEnded = true;
                if (b.Count == 0) a.Clear();
            });
        });
    }

    /// <summary>Synchronous zip of any number of streams of one type: the n-th item of each, as an array in input order.</summary>
    public static void Zip<T>(this Graph graph, string name, Stream<T>[] inputs, Stream<T[]> output, int maxBuffered = 1_000_000)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.Length == 0) throw new ArgumentException($"Zip '{name}' needs at least one input.", nameof(inputs));
        graph.Process(name, p =>
        {
            Output<T[]> o = p.Output(output);
            var queues = inputs.Select(_ => new Queue<T>()).ToArray();
            var ended = new bool[inputs.Length];
            bool over = false;
            // An input that has ended with nothing left waiting can pair no more: the zip is over.
            void CheckOver()
            {
                if (over) return;
                for (int k = 0; k < queues.Length; k++)
                {
                    if (!ended[k] || queues[k].Count > 0) continue;
                    over = true;
                    foreach (Queue<T> q in queues) q.Clear();
                    return;
                }
            }
            for (int i = 0; i < inputs.Length; i++)
            {
                int index = i;
                p.On(inputs[i], x =>
                {
                    if (over) return;
                    Buffer(name, queues[index], x, maxBuffered, inputs[index].Name);
                    while (queues.All(q => q.Count > 0)) o.Emit(queues.Select(q => q.Dequeue()).ToArray());
                    CheckOver();
                });
                p.OnEnded(inputs[i], () =>
                {
                    ended[index] = true;
                    CheckOver();
                });
            }
        });
    }

    /// <summary>
    /// Timed zip (a join on time): each input carries items in time order (<paramref name="timeOf"/>);
    /// for every time at which some input has an item, writes a <see cref="TimedRow{T}"/> with each
    /// input's item at that time — once every input has passed that time (its latest item is later,
    /// or it has ended), so a row is never written before it is complete. Times come out in order.
    /// An input whose times go backwards is an error naming the item; two items of one input at the
    /// same time are an error too.
    /// </summary>
    public static void TimedZip<T>(this Graph graph, string name, Stream<T>[] inputs, Stream<TimedRow<T>> output, Func<T, long> timeOf,
        int maxBuffered = 1_000_000)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(timeOf);
        if (inputs.Length == 0) throw new ArgumentException($"TimedZip '{name}' needs at least one input.", nameof(inputs));
        graph.Process(name, p =>
        {
            Output<TimedRow<T>> o = p.Output(output);
            int n = inputs.Length;
            var rows = new SortedDictionary<long, TimedRow<T>>();
            var latest = Enumerable.Repeat(long.MinValue, n).ToArray();
            var ended = new bool[n];
            void Release()
            {
                // Every input has passed a time when its latest item is later, or it has ended.
                long passed = long.MaxValue;
                for (int i = 0; i < n; i++)
                    if (!ended[i]) passed = Math.Min(passed, latest[i] == long.MinValue ? long.MinValue : latest[i] - 1);
                while (rows.Count > 0)
                {
                    var (time, row) = rows.First();
                    if (time > passed) break;
                    o.Emit(row);
                    rows.Remove(time);
                }
            }
            for (int i = 0; i < n; i++)
            {
                int index = i;
                p.On(inputs[i], x =>
                {
                    long t = timeOf(x);
                    if (t < latest[index])
                        throw new InvalidOperationException($"TimedZip '{name}': input '{inputs[index].Name}' went back in time, from {latest[index]} to {t}; each input must be in time order.");
                    if (t == latest[index])
                        throw new InvalidOperationException($"TimedZip '{name}': input '{inputs[index].Name}' has two items at time {t}.");
                    latest[index] = t;
                    if (!rows.TryGetValue(t, out TimedRow<T>? row))
                    {
                        if (rows.Count >= maxBuffered)
                            throw new InvalidOperationException($"TimedZip '{name}': {rows.Count} times wait for every input to pass them (maxBuffered is {maxBuffered}); an input lags too far behind.");
                        rows[t] = row = new TimedRow<T>(t, new T[n], new bool[n]);
                    }
                    row.Values[index] = x;
                    row.Present[index] = true;
                    Release();
                });
                p.OnEnded(inputs[i], () =>
                {
                    ended[index] = true;
                    Release();
                });
            }
        });
    }

    /// <summary>
    /// Window merge: count windows (<paramref name="size"/>, <paramref name="step"/>, as in
    /// <see cref="Window{T, TOut}"/>) over each input in step; once every input has its k-th window,
    /// writes <c>f(windows)</c> (one window per input, in input order). Ends with the shortest input.
    /// </summary>
    public static void MergeWindows<T, TOut>(this Graph graph, string name, Stream<T>[] inputs, Stream<TOut> output, int size, int step,
        Func<IReadOnlyList<T>[], TOut> f, int maxBuffered = 1_000_000)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(f);
        if (inputs.Length == 0) throw new ArgumentException($"MergeWindows '{name}' needs at least one input.", nameof(inputs));
        if (size < 1 || step < 1) throw new ArgumentOutOfRangeException(nameof(size), $"MergeWindows '{name}': size and step must be at least 1.");
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            var items = inputs.Select(_ => new List<T>()).ToArray(); // items from the start of the next window on
            var skip = new int[inputs.Length];                         // with step > size: items to drop before the next window
            void Release()
            {
                while (items.All(list => list.Count >= size))
                {
                    o.Emit(f(items.Select(list => (IReadOnlyList<T>)list.Take(size).ToArray()).ToArray()));
                    for (int k = 0; k < items.Length; k++)
                    {
                        int removed = Math.Min(step, items[k].Count);
                        items[k].RemoveRange(0, removed);
                        skip[k] += step - removed;
                    }
                }
            }
            bool over = false;
            var endedInputs = new bool[inputs.Length];
            for (int i = 0; i < inputs.Length; i++)
            {
                int index = i;
                p.On(inputs[i], x =>
                {
                    if (over) return;
                    if (skip[index] > 0)
                    {
                        skip[index]--;
                        return;
                    }
                    if (items[index].Count >= maxBuffered)
                        throw new InvalidOperationException($"MergeWindows '{name}': {maxBuffered} items of stream '{inputs[index].Name}' wait for the other inputs' windows.");
                    items[index].Add(x);
                    Release();
                    for (int k = 0; k < items.Length && !over; k++)
                    {
                        if (!endedInputs[k] || items[k].Count >= size) continue;
                        over = true;
                        foreach (List<T> list in items) list.Clear();
                    }
                });
                p.OnEnded(inputs[i], () =>
                {
                    endedInputs[index] = true;
                    // It can complete no more windows: the merge is over.
                    if (items[index].Count < size)
                    {
                        over = true;
                        foreach (List<T> list in items) list.Clear();
                    }
                });
            }
        });
    }

    /// <summary>
    /// Split windows: count windows of <paramref name="input"/> (as in <see cref="Window{T, TOut}"/>);
    /// <c>f(window)</c> returns one value per output, written to the outputs in order.
    /// </summary>
    public static void SplitWindows<T, TOut>(this Graph graph, string name, Stream<T> input, Stream<TOut>[] outputs, int size, int step,
        Func<IReadOnlyList<T>, TOut[]> f)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(f);
        if (size < 1 || step < 1) throw new ArgumentOutOfRangeException(nameof(size), $"SplitWindows '{name}': size and step must be at least 1.");
        graph.Process(name, p =>
        {
            Output<TOut>[] o = outputs.Select(p.Output).ToArray();
            var items = new List<T>();
            long seen = 0;
            p.On(input, x =>
            {
                long index = seen++;
                // Keep only what a coming window needs; window k starts at k·step.
                if (index % step < size || size > step) items.Add(x);
                while (items.Count >= size)
                {
                    TOut[] values = f(items.Take(size).ToArray());
                    if (values.Length != o.Length)
                        throw new InvalidOperationException($"SplitWindows '{name}': the function returned {values.Length} values for {o.Length} outputs.");
                    for (int i = 0; i < o.Length; i++) o[i].Emit(values[i]);
                    items.RemoveRange(0, Math.Min(step, items.Count));
                }
            });
        });
    }

    /// <summary>
    /// Many inputs to many outputs, element by element: once every input has its n-th item,
    /// <c>f(items)</c> (one per input, in input order) returns one value per output. Ends with the shortest input.
    /// </summary>
    public static void Multi<TIn, TOut>(this Graph graph, string name, Stream<TIn>[] inputs, Stream<TOut>[] outputs, Func<TIn[], TOut[]> f,
        int maxBuffered = 1_000_000)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(f);
        if (inputs.Length == 0) throw new ArgumentException($"Multi '{name}' needs at least one input.", nameof(inputs));
        graph.Process(name, p =>
        {
            Output<TOut>[] o = outputs.Select(p.Output).ToArray();
            var queues = inputs.Select(_ => new Queue<TIn>()).ToArray();
            var ended = new bool[inputs.Length];
            bool over = false;
            void CheckOver()
            {
                for (int k = 0; k < queues.Length && !over; k++)
                {
                    if (!ended[k] || queues[k].Count > 0) continue;
                    over = true;
                    foreach (Queue<TIn> q in queues) q.Clear();
                }
            }
            for (int i = 0; i < inputs.Length; i++)
            {
                int index = i;
                p.On(inputs[i], x =>
                {
                    if (over) return;
                    Buffer(name, queues[index], x, maxBuffered, inputs[index].Name);
                    while (queues.All(q => q.Count > 0))
                    {
                        TOut[] values = f(queues.Select(q => q.Dequeue()).ToArray());
                        if (values.Length != o.Length)
                            throw new InvalidOperationException($"Multi '{name}': the function returned {values.Length} values for {o.Length} outputs.");
                        for (int k = 0; k < o.Length; k++) o[k].Emit(values[k]);
                    }
                    CheckOver();
                });
                p.OnEnded(inputs[i], () =>
                {
                    ended[index] = true;
                    CheckOver();
                });
            }
        });
    }

    private static void Buffer<T>(string name, Queue<T> queue, T item, int max, string stream)
    {
        if (queue.Count >= max)
            throw new InvalidOperationException(
                $"Zip '{name}': {queue.Count} items of stream '{stream}' wait for partners from the other inputs (maxBuffered is {max}); " +
                "the inputs are too far apart. Raise maxBuffered or use Mix/Blend if items need not be paired.");
        queue.Enqueue(item);
    }

    /// <summary>Asynchronous merge: every item of every input, in arrival order, tagged with the index of its input.</summary>
    public static void Mix<T>(this Graph graph, string name, Stream<T>[] inputs, Stream<Tagged<T>> output)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        graph.Process(name, p =>
        {
            Output<Tagged<T>> o = p.Output(output);
            for (int i = 0; i < inputs.Length; i++)
            {
                int index = i;
                p.On(inputs[i], x => o.Emit(new Tagged<T>(index, x)));
            }
        });
    }

    /// <summary>Asynchronous merge: every item of every input, in arrival order, untagged.</summary>
    public static void Blend<T>(this Graph graph, string name, Stream<T>[] inputs, Stream<T> output)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        graph.Process(name, p =>
        {
            Output<T> o = p.Output(output);
            foreach (Stream<T> input in inputs) p.On(input, o.Emit);
        });
    }

    /// <summary>Writes each item to the output whose index <paramref name="choose"/> returns (0 … outputs − 1).</summary>
    public static void Split<T>(this Graph graph, string name, Stream<T> input, Stream<T>[] outputs, Func<T, int> choose)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(choose);
        graph.Process(name, p =>
        {
            Output<T>[] o = outputs.Select(p.Output).ToArray();
            p.On(input, x =>
            {
                int i = choose(x);
                if ((uint)i >= (uint)o.Length)
                    throw new ArgumentOutOfRangeException(nameof(choose), i, $"Split '{name}' chose output {i} for an item; it has outputs 0 to {o.Length - 1}.");
                o[i].Emit(x);
            });
        });
    }

    /// <summary>The inverse of <see cref="Zip{T}(Graph, string, Stream{T}[], Stream{T[]}, int)"/>: element i of each array goes to output i.</summary>
    public static void Unzip<T>(this Graph graph, string name, Stream<T[]> input, Stream<T>[] outputs)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        graph.Process(name, p =>
        {
            Output<T>[] o = outputs.Select(p.Output).ToArray();
            p.On(input, xs =>
            {
                if (xs.Length != o.Length)
                    throw new ArgumentException($"Unzip '{name}' got an array of {xs.Length} items for {o.Length} outputs.");
                for (int i = 0; i < xs.Length; i++) o[i].Emit(xs[i]);
            });
        });
    }

    /// <summary>The inverse of <see cref="Mix{T}"/>: each item goes, untagged, to the output its tag names.</summary>
    public static void Separate<T>(this Graph graph, string name, Stream<Tagged<T>> input, Stream<T>[] outputs)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        graph.Process(name, p =>
        {
            Output<T>[] o = outputs.Select(p.Output).ToArray();
            p.On(input, t =>
            {
                if ((uint)t.Index >= (uint)o.Length)
                    throw new ArgumentOutOfRangeException(nameof(input), t.Index, $"Separate '{name}' got an item tagged {t.Index}; it has outputs 0 to {o.Length - 1}.");
                o[t.Index].Emit(t.Item);
            });
        });
    }

    /// <summary>
    /// Groups items into arrays of <paramref name="count"/> (the last one may be shorter: what is left when the input ends).
    /// </summary>
    public static void Batch<T>(this Graph graph, string name, Stream<T> input, Stream<T[]> output, int count)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, $"Batch '{name}': the count must be at least 1.");
        graph.Process(name, p =>
        {
            Output<T[]> o = p.Output(output);
            var batch = new List<T>(count);
            p.On(input, x =>
            {
                batch.Add(x);
                if (batch.Count < count) return;
                o.Emit(batch.ToArray());
                batch.Clear();
            });
            p.OnCompleted(() =>
            {
                if (batch.Count > 0) o.Emit(batch.ToArray());
            });
        });
    }

    /// <summary>
    /// Groups items into arrays of at most <paramref name="count"/>, written when full or when the
    /// oldest item has waited <paramref name="maxAge"/>, whichever comes first (not a debounce: new
    /// items do not postpone it; the age is checked four times per <paramref name="maxAge"/>, so a
    /// batch leaves at most a quarter of it late). What is left when the input ends is written too.
    /// </summary>
    public static void Batch<T>(this Graph graph, string name, Stream<T> input, Stream<T[]> output, int count, TimeSpan maxAge)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, $"Batch '{name}': the count must be at least 1.");
        if (maxAge <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(maxAge), maxAge, $"Batch '{name}': the age must be positive.");
        graph.Process(name, p =>
        {
            Output<T[]> o = p.Output(output);
            var batch = new List<T>(Math.Min(count, 4096));
            long oldest = 0;
            void Send()
            {
                o.Emit(batch.ToArray());
                batch.Clear();
            }
            p.On(input, x =>
            {
                if (batch.Count == 0) oldest = Environment.TickCount64;
                batch.Add(x);
                if (batch.Count >= count) Send();
            });
            p.Every(TimeSpan.FromMilliseconds(Math.Max(1, maxAge.TotalMilliseconds / 4)), () =>
            {
                if (batch.Count > 0 && Environment.TickCount64 - oldest >= maxAge.TotalMilliseconds) Send();
            });
            p.OnCompleted(() =>
            {
                if (batch.Count > 0) Send();
            });
        });
    }

    /// <summary>
    /// Processing-time windows: every <paramref name="size"/> of wall-clock time, <c>f</c> of the
    /// items that arrived in it (tumbling). A window in which nothing arrived is not written unless
    /// <paramref name="emitEmpty"/>; the last, partial window is written when the input ends.
    /// </summary>
    public static void TimedWindow<T, TOut>(this Graph graph, string name, Stream<T> input, Stream<TOut> output, TimeSpan size,
        Func<IReadOnlyList<T>, TOut> f, bool emitEmpty = false) =>
        TimedWindow(graph, name, input, output, size, size, f, emitEmpty);

    /// <summary>
    /// Sliding processing-time windows: every <paramref name="step"/> of wall-clock time, <c>f</c> of
    /// the items that arrived in the last <paramref name="size"/>. Empty windows are not written
    /// unless <paramref name="emitEmpty"/>; when the input ends, what arrived since the last window is written.
    /// </summary>
    public static void TimedWindow<T, TOut>(this Graph graph, string name, Stream<T> input, Stream<TOut> output, TimeSpan size, TimeSpan step,
        Func<IReadOnlyList<T>, TOut> f, bool emitEmpty = false)
    {
        ArgumentNullException.ThrowIfNull(f);
        if (size <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(size), size, $"TimedWindow '{name}': the size must be positive.");
        if (step <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(step), step, $"TimedWindow '{name}': the step must be positive.");
        if (step == size)
        {
            Tumbling(graph, name, input, output, size, f, emitEmpty);
            return;
        }
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            var recent = new Queue<(long At, T Item)>();
            long lastWindow = Environment.TickCount64;
            bool fresh = false;
            p.On(input, x =>
            {
                recent.Enqueue((Environment.TickCount64, x));
                fresh = true;
            });
            p.Every(step, () =>
            {
                long now = Environment.TickCount64;
                while (recent.Count > 0 && now - recent.Peek().At >= size.TotalMilliseconds) recent.Dequeue();
                lastWindow = now;
                fresh = false;
                if (recent.Count == 0 && !emitEmpty) return;
                o.Emit(f(recent.Select(r => r.Item).ToArray()));
            });
            p.OnCompleted(() =>
            {
                long end = Environment.TickCount64;
                if (fresh) o.Emit(f(recent.Where(r => end - r.At < size.TotalMilliseconds).Select(r => r.Item).ToArray()));
            });
        });
    }

    private static void Tumbling<T, TOut>(Graph graph, string name, Stream<T> input, Stream<TOut> output, TimeSpan size,
        Func<IReadOnlyList<T>, TOut> f, bool emitEmpty)
    {
        ArgumentNullException.ThrowIfNull(f);
        if (size <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(size), size, $"TimedWindow '{name}': the size must be positive.");
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            var window = new List<T>();
            p.On(input, window.Add);
            p.Every(size, () =>
            {
                if (window.Count == 0 && !emitEmpty) return;
                o.Emit(f(window.ToArray()));
                window.Clear();
            });
            p.OnCompleted(() =>
            {
                if (window.Count > 0) o.Emit(f(window.ToArray()));
            });
        });
    }

    /// <summary>
    /// Event-time windows: items carry their own time (<paramref name="timeOf"/>, in any unit);
    /// window k covers times <c>[k·step, k·step + size)</c>. Items may arrive out of order. The
    /// latest time seen is the watermark; a window closes once the watermark reaches its end plus
    /// <paramref name="allowedLateness"/>, and is then written as <c>f(start, items in arrival order)</c>;
    /// the windows still open when the input ends are written then, in order. Windows with no items
    /// are not written. An item whose every window has closed is late: it goes to
    /// <paramref name="late"/> when given; without it, a late item is an error naming the item
    /// (nothing is dropped silently).
    /// </summary>
    public static void EventTimeWindow<T, TOut>(this Graph graph, string name, Stream<T> input, Stream<TOut> output,
        Func<T, long> timeOf, long size, long step, Func<long, IReadOnlyList<T>, TOut> f, Stream<T>? late = null, long allowedLateness = 0)
    {
        if (allowedLateness < 0) throw new ArgumentOutOfRangeException(nameof(allowedLateness), allowedLateness, $"EventTimeWindow '{name}': the allowed lateness must not be negative.");
        ArgumentNullException.ThrowIfNull(timeOf);
        ArgumentNullException.ThrowIfNull(f);
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, $"EventTimeWindow '{name}': the size must be at least 1.");
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, $"EventTimeWindow '{name}': the step must be at least 1.");
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            Output<T>? lateOutput = late is null ? null : p.Output(late);
            var open = new SortedDictionary<long, List<T>>(); // window start -> items
            long watermark = long.MinValue;
            bool Closed(long start) => watermark != long.MinValue && start + size + allowedLateness <= watermark;
            p.On(input, x =>
            {
                long t = timeOf(x);
                // Windows containing t: starts s = k·step with s <= t < s + size.
                long last = FloorDiv(t, step) * step;
                bool placed = false;
                for (long start = last; start > t - size; start -= step)
                {
                    if (Closed(start)) break;
                    if (!open.TryGetValue(start, out List<T>? items)) open[start] = items = new List<T>();
                    items.Add(x);
                    placed = true;
                }
                if (!placed && t - last >= size)
                {
                    // Between windows (step > size): no window holds it, as with count windows.
                    watermark = Math.Max(watermark, t);
                    placed = true;
                }
                if (!placed)
                {
                    if (lateOutput is not null) lateOutput.Emit(x);
                    else
                        throw new InvalidOperationException(
                            $"EventTimeWindow '{name}': the item at time {t} is late: every window holding it was already written (latest time seen {watermark}). " +
                            "Give the operator a stream for late items to keep them.");
                }
                watermark = Math.Max(watermark, t);
                while (open.Count > 0)
                {
                    var (start, items) = open.First();
                    if (!Closed(start)) break;
                    o.Emit(f(start, items));
                    open.Remove(start);
                }
            });
            p.OnCompleted(() =>
            {
                foreach (var (start, items) in open) o.Emit(f(start, items));
                open.Clear();
            });
        });
    }

    private static long FloorDiv(long a, long b) => a >= 0 ? a / b : -((-a + b - 1) / b);

    /// <summary>A sink: calls <paramref name="action"/> for every item, in order, in the OS process that runs it.</summary>
    public static void Sink<T>(this Graph graph, string name, Stream<T> input, Action<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        graph.Process(name, p => p.On(input, action));
    }

    /// <summary>
    /// A sink that adds every item to <paramref name="target"/> (for tests and small results). The
    /// collection fills in the OS process that runs the sink: in the processes and broker
    /// placements that is not the program that started the run, unless it runs the sink itself.
    /// </summary>
    public static void ToCollection<T>(this Graph graph, string name, Stream<T> input, ICollection<T> target)
    {
        ArgumentNullException.ThrowIfNull(target);
        graph.Process(name, p => p.On(input, target.Add));
    }

    /// <summary>A sink that appends every item to a file as one line of JSON (System.Text.Json, web defaults), flushed when the input ends.</summary>
    public static void ToJsonLines<T>(this Graph graph, string name, Stream<T> input, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        graph.Process(name, p =>
        {
            StreamWriter? writer = null;
            p.OnStart(() => writer = new StreamWriter(path, append: true));
            p.On(input, x => writer!.WriteLine(System.Text.Json.JsonSerializer.Serialize(x, JsonCodec<T>.Defaults)));
            // However the process ends, what was written is flushed and the file closed.
            p.Finally(() => writer?.Dispose());
        });
    }

    /// <summary>
    /// A sink that appends every item to a CSV file (RFC 4180 quoting), the columns given by
    /// <paramref name="columns"/>; a header line with <paramref name="header"/> is written first when the file is new.
    /// </summary>
    public static void ToCsv<T>(this Graph graph, string name, Stream<T> input, string path, string[] header, Func<T, IEnumerable<object?>> columns)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(columns);
        graph.Process(name, p =>
        {
            StreamWriter? writer = null;
            p.OnStart(() =>
            {
                bool fresh = !File.Exists(path) || new FileInfo(path).Length == 0;
                writer = new StreamWriter(path, append: true);
                if (fresh) writer.WriteLine(Csv(header));
            });
            p.On(input, x => writer!.WriteLine(Csv(columns(x))));
            p.Finally(() => writer?.Dispose());
        });
    }

    private static string Csv(IEnumerable<object?> values) => string.Join(",", values.Select(v =>
    {
        string text = v switch
        {
            null => "",
            IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
            _ => v.ToString() ?? "",
        };
        return text.IndexOfAny(new[] { ',', '"', '\n', '\r' }) >= 0 ? "\"" + text.Replace("\"", "\"\"") + "\"" : text;
    }));
}
