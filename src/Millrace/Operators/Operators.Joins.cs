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

// Operators that read several inputs: zips (by position, by time), many-to-many, mixing and blending.
public static partial class Operators
{
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
            p.Keep("waiting", () => (a.ToArray(), b.ToArray(), aEnded, bEnded),
                v => (a, b, aEnded, bEnded) = (new Queue<T1>(v.Item1), new Queue<T2>(v.Item2), v.Item3, v.Item4));
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
            p.Keep("waiting", () => (queues.Select(q => q.ToArray()).ToArray(), ended, over), v =>
            {
                if (v.Item1.Length != inputs.Length) throw new InvalidDataException($"Zip '{name}': the checkpoint holds {v.Item1.Length} inputs, not {inputs.Length}.");
                (queues, ended, over) = (v.Item1.Select(items => new Queue<T>(items)).ToArray(), v.Item2, v.Item3);
            });
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
    /// input's item at that time — as soon as every input has reached or passed that time (its latest
    /// item is at that time or later; an input never has two items at one time) or has ended, so a row
    /// is never written before it is complete, and never held back longer. Times come out in order.
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
            var aligner = new TimeAligner<TimedRow<T>>(name, inputs.Select(s => s.Name).ToArray(), maxBuffered, o.Emit);
            p.Keep("rows", aligner.Save, aligner.Load);
            for (int i = 0; i < n; i++)
            {
                int index = i;
                p.On(inputs[i], x =>
                {
                    TimedRow<T> row = aligner.Row(index, timeOf(x), t => new TimedRow<T>(t, new T[n], new bool[n]));
                    row.Values[index] = x;
                    row.Present[index] = true;
                    aligner.Release();
                });
                p.OnEnded(inputs[i], () => aligner.End(index));
            }
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
            p.Keep("waiting", () => (queues.Select(q => q.ToArray()).ToArray(), ended, over), v =>
            {
                if (v.Item1.Length != inputs.Length) throw new InvalidDataException($"Multi '{name}': the checkpoint holds {v.Item1.Length} inputs, not {inputs.Length}.");
                (queues, ended, over) = (v.Item1.Select(items => new Queue<TIn>(items)).ToArray(), v.Item2, v.Item3);
            });
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
}
