namespace Millrace;

/// <summary>Where the count windows of <see cref="Operators.Window{T, TOut}"/> (and its family) start.</summary>
public enum WindowStart
{
    /// <summary>At the first full window: window k holds items k·step … k·step + size − 1 (IoTPy's <c>map_window</c>).</summary>
    Full,

    /// <summary>As <see cref="Full"/>, plus the shorter windows that would end before the first full one on the same grid.</summary>
    PartialOnGrid,

    /// <summary>A window ends at the first item and at every step-th item after it, each with the last (up to) size items.</summary>
    FromFirstItem,
}

// Operators over windows of items: by count (sliding, tumbling, merged, split), by processing time, by event time; batches.
public static partial class Operators
{
    /// <summary>
    /// Count windows: every <paramref name="step"/> items, <c>f</c> of the last <paramref name="size"/>
    /// items (tumbling when step = size, sliding when step &lt; size; with step &gt; size the items
    /// between windows are skipped). Window k holds items k·step … k·step + size − 1. With
    /// <paramref name="start"/> <see cref="WindowStart.PartialOnGrid"/>, the windows that would end before the first full one (on
    /// the same grid) are written too, with the items seen so far; with <see cref="WindowStart.FromFirstItem"/>, a window
    /// ends at item 0, step, 2·step, … holding the last (up to) size items. An incomplete window at the end is not written.
    /// </summary>
    public static void Window<T, TOut>(this Graph graph, string name, Stream<T> input, Stream<TOut> output, int size, int step,
        Func<IReadOnlyList<T>, TOut> f, WindowStart start = WindowStart.Full)
    {
        ArgumentNullException.ThrowIfNull(f);
        WindowCore(graph, name, input, output, size, step, start, (_, o) => w => o!.Emit(f(w)));
    }

    /// <summary>Count windows as in <see cref="Window{T, TOut}"/>, with a function that returns any number of items per window.</summary>
    public static void WindowMany<T, TOut>(this Graph graph, string name, Stream<T> input, Stream<TOut> output, int size, int step,
        Func<IReadOnlyList<T>, IEnumerable<TOut>> f, WindowStart start = WindowStart.Full)
    {
        ArgumentNullException.ThrowIfNull(f);
        WindowCore(graph, name, input, output, size, step, start, (_, o) => w =>
        {
            foreach (TOut y in f(w)) o!.Emit(y);
        });
    }

    /// <summary>
    /// Count windows (as in <see cref="Window{T, TOut}"/>) with explicit state: <c>(y, state) = f(window, state)</c>
    /// for every window, starting from <paramref name="initial"/>; writes y.
    /// </summary>
    public static void WindowWithState<T, TOut, TState>(this Graph graph, string name, Stream<T> input, Stream<TOut> output, int size, int step,
        TState initial, Func<IReadOnlyList<T>, TState, (TOut Output, TState State)> f, WindowStart start = WindowStart.Full)
    {
        ArgumentNullException.ThrowIfNull(f);
        WindowCore(graph, name, input, output, size, step, start, (p, o) =>
        {
            // Declared per run of the process (per OS process that hosts it): each starts from the initial state.
            TState state = initial;
            p.Keep("state", () => state, v => state = v);
            return w =>
            {
                (TOut y, state) = f(w, state);
                o!.Emit(y);
            };
        });
    }

    private static void WindowCore<T, TOut>(Graph graph, string name, Stream<T> input, Stream<TOut>? output, int size, int step,
        WindowStart start, Func<ProcessBuilder, Output<TOut>?, Action<IReadOnlyList<T>>> declare)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, $"Window '{name}': the size must be at least 1.");
        if (step < 1) throw new ArgumentOutOfRangeException(nameof(step), step, $"Window '{name}': the step must be at least 1.");
        graph.Process(name, p =>
        {
            Action<IReadOnlyList<T>> emit = declare(p, output is null ? null : p.Output(output));
            var ring = new T[size];
            long seen = 0;
            p.Keep("window", () => (ring, seen), v =>
            {
                if (v.Item1.Length != size) throw new InvalidDataException($"Window '{name}': the checkpoint holds a window of {v.Item1.Length} items, not {size}: was the size changed?");
                (ring, seen) = v;
            });
            p.On(input, x =>
            {
                ring[seen % size] = x;
                long last = seen++;
                if (start == WindowStart.FromFirstItem)
                {
                    if (last % step != 0) return;
                }
                else
                {
                    long fromFirstEnd = last - (size - 1);
                    bool full = fromFirstEnd >= 0;
                    if (fromFirstEnd % step != 0 || (!full && start == WindowStart.Full)) return;
                }
                int count = (int)Math.Min(size, seen);
                var window = new T[count];
                for (int k = 0; k < count; k++) window[k] = ring[(seen - count + k) % size];
                emit(window);
            });
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
            p.Keep("windows", () => (items, skip, over, endedInputs), v =>
            {
                if (v.Item1.Length != inputs.Length) throw new InvalidDataException($"MergeWindows '{name}': the checkpoint holds {v.Item1.Length} inputs, not {inputs.Length}.");
                (items, skip, over, endedInputs) = v;
            });
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
            p.Keep("window", () => (items, seen), v => (items, seen) = v);
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
    /// Groups items into arrays of <paramref name="count"/> (the last one may be shorter: what is left when the input ends).
    /// </summary>
    public static void Batch<T>(this Graph graph, string name, Stream<T> input, Stream<T[]> output, int count)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, $"Batch '{name}': the count must be at least 1.");
        graph.Process(name, p =>
        {
            Output<T[]> o = p.Output(output);
            var batch = new List<T>(count);
            p.Keep("batch", () => batch, v => batch = v);
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
            // A resumed batch is as old as the resumption: its items' ages are not kept.
            p.Keep("batch", () => batch, v => (batch, oldest) = (v, Environment.TickCount64));
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
            bool fresh = false;
            // The arrival times are Environment.TickCount64: the machine's uptime, the same clock for a program started again on it.
            p.Keep("window", () => (recent.ToArray(), fresh), v => (recent, fresh) = (new Queue<(long At, T Item)>(v.Item1), v.Item2));
            p.On(input, x =>
            {
                recent.Enqueue((Environment.TickCount64, x));
                fresh = true;
            });
            p.Every(step, () =>
            {
                long now = Environment.TickCount64;
                while (recent.Count > 0 && now - recent.Peek().At >= size.TotalMilliseconds) recent.Dequeue();
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
            p.Keep("window", () => window, v => window = v);
            p.On(input, x => window.Add(x));
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
            p.Keep("windows", () => (open, watermark), v => (open, watermark) = v);
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
}
