namespace Millrace;

/// <summary>
/// An item of a <see cref="Operators.Mix{T1, T2}"/> over inputs of two types: which input it came
/// from (<see cref="Index"/> 0 or 1) and its value, typed. The other value is the type's default.
/// </summary>
/// <param name="Index">0 when the item came from the first input, 1 from the second.</param>
/// <param name="First">The item, when it came from the first input.</param>
/// <param name="Second">The item, when it came from the second input.</param>
public readonly record struct Mixed<T1, T2>(int Index, T1 First, T2 Second)
{
    /// <summary>An item of the first input.</summary>
    public static Mixed<T1, T2> OfFirst(T1 item) => new(0, item, default!);

    /// <summary>An item of the second input.</summary>
    public static Mixed<T1, T2> OfSecond(T2 item) => new(1, default!, item);

    /// <summary>The result of the function for the input the item came from.</summary>
    public TOut Match<TOut>(Func<T1, TOut> first, Func<T2, TOut> second) => Index == 0 ? first(First) : second(Second);
}

/// <summary>An item of a <see cref="Operators.Mix{T1, T2, T3}"/> over inputs of three types, as <see cref="Mixed{T1, T2}"/>.</summary>
/// <param name="Index">0, 1 or 2: the input the item came from.</param>
/// <param name="First">The item, when it came from the first input.</param>
/// <param name="Second">The item, when it came from the second input.</param>
/// <param name="Third">The item, when it came from the third input.</param>
public readonly record struct Mixed<T1, T2, T3>(int Index, T1 First, T2 Second, T3 Third)
{
    /// <summary>An item of the first input.</summary>
    public static Mixed<T1, T2, T3> OfFirst(T1 item) => new(0, item, default!, default!);

    /// <summary>An item of the second input.</summary>
    public static Mixed<T1, T2, T3> OfSecond(T2 item) => new(1, default!, item, default!);

    /// <summary>An item of the third input.</summary>
    public static Mixed<T1, T2, T3> OfThird(T3 item) => new(2, default!, default!, item);

    /// <summary>The result of the function for the input the item came from.</summary>
    public TOut Match<TOut>(Func<T1, TOut> first, Func<T2, TOut> second, Func<T3, TOut> third) =>
        Index switch { 0 => first(First), 1 => second(Second), _ => third(Third) };
}

/// <summary>One time of a <see cref="Operators.TimedZip{T1, T2}"/> over two inputs of different types.</summary>
/// <param name="Time">The time.</param>
/// <param name="First">The first input's item at this time (default when it had none).</param>
/// <param name="HasFirst">Whether the first input had an item at this time.</param>
/// <param name="Second">The second input's item at this time (default when it had none).</param>
/// <param name="HasSecond">Whether the second input had an item at this time.</param>
public sealed record TimedRow<T1, T2>(long Time, T1 First, bool HasFirst, T2 Second, bool HasSecond);

// Joins over inputs of different item types, typed all the way (no Stream<object>).
public static partial class Operators
{
    /// <summary>
    /// Asynchronous merge of two streams of different types: every item of both, in arrival order, as a
    /// <see cref="Mixed{T1, T2}"/> that says which input it came from. Each input keeps its order.
    /// </summary>
    public static void Mix<T1, T2>(this Graph graph, string name, Stream<T1> first, Stream<T2> second, Stream<Mixed<T1, T2>> output)
    {
        graph.Process(name, p =>
        {
            Output<Mixed<T1, T2>> o = p.Output(output);
            p.On(first, x => o.Emit(Mixed<T1, T2>.OfFirst(x)));
            p.On(second, x => o.Emit(Mixed<T1, T2>.OfSecond(x)));
        });
    }

    /// <summary>Asynchronous merge of three streams of different types, as <see cref="Mix{T1, T2}"/>.</summary>
    public static void Mix<T1, T2, T3>(this Graph graph, string name, Stream<T1> first, Stream<T2> second, Stream<T3> third,
        Stream<Mixed<T1, T2, T3>> output)
    {
        graph.Process(name, p =>
        {
            Output<Mixed<T1, T2, T3>> o = p.Output(output);
            p.On(first, x => o.Emit(Mixed<T1, T2, T3>.OfFirst(x)));
            p.On(second, x => o.Emit(Mixed<T1, T2, T3>.OfSecond(x)));
            p.On(third, x => o.Emit(Mixed<T1, T2, T3>.OfThird(x)));
        });
    }

    /// <summary>The inverse of <see cref="Mix{T1, T2}"/>: each item, without its tag, to the output of the input it came from.</summary>
    public static void Separate<T1, T2>(this Graph graph, string name, Stream<Mixed<T1, T2>> input, Stream<T1> first, Stream<T2> second)
    {
        graph.Process(name, p =>
        {
            Output<T1> a = p.Output(first);
            Output<T2> b = p.Output(second);
            p.On(input, m =>
            {
                switch (m.Index)
                {
                    case 0: a.Emit(m.First); break;
                    case 1: b.Emit(m.Second); break;
                    default: throw new ArgumentOutOfRangeException(nameof(input), m.Index, $"Separate '{name}' got an item of input {m.Index}; it has inputs 0 and 1.");
                }
            });
        });
    }

    /// <summary>
    /// Asynchronous merge with a function (IoTPy's <c>blend(func, ...)</c>): <c>f(x)</c> for every item x of
    /// every input, in arrival order.
    /// </summary>
    public static void Blend<TIn, TOut>(this Graph graph, string name, Stream<TIn>[] inputs, Stream<TOut> output, Func<TIn, TOut> f)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(f);
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            foreach (Stream<TIn> input in inputs) p.On(input, x => o.Emit(f(x)));
        });
    }

    /// <summary>
    /// Asynchronous merge of two streams of different types into one: <c>fromFirst(x)</c> or
    /// <c>fromSecond(y)</c> for every item, in arrival order.
    /// </summary>
    public static void Blend<T1, T2, TOut>(this Graph graph, string name, Stream<T1> first, Stream<T2> second, Stream<TOut> output,
        Func<T1, TOut> fromFirst, Func<T2, TOut> fromSecond)
    {
        ArgumentNullException.ThrowIfNull(fromFirst);
        ArgumentNullException.ThrowIfNull(fromSecond);
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            p.On(first, x => o.Emit(fromFirst(x)));
            p.On(second, y => o.Emit(fromSecond(y)));
        });
    }

    /// <summary>
    /// Timed zip of two streams of different types, as <see cref="TimedZip{T}"/>: for every time at which
    /// either input has an item, a <see cref="TimedRow{T1, T2}"/> with each input's item at that time,
    /// written as soon as both inputs have reached or passed that time (or ended). Times come out in order.
    /// </summary>
    public static void TimedZip<T1, T2>(this Graph graph, string name, Stream<T1> first, Stream<T2> second, Stream<TimedRow<T1, T2>> output,
        Func<T1, long> timeOfFirst, Func<T2, long> timeOfSecond, int maxBuffered = 1_000_000)
    {
        ArgumentNullException.ThrowIfNull(timeOfFirst);
        ArgumentNullException.ThrowIfNull(timeOfSecond);
        graph.Process(name, p =>
        {
            Output<TimedRow<T1, T2>> o = p.Output(output);
            var aligner = new TimeAligner<PairRow<T1, T2>>(name, [first.Name, second.Name], maxBuffered,
                row => o.Emit(new TimedRow<T1, T2>(row.Time, row.First, row.HasFirst, row.Second, row.HasSecond)));
            p.Keep("rows", aligner.Save, aligner.Load);
            p.On(first, x =>
            {
                PairRow<T1, T2> row = aligner.Row(0, timeOfFirst(x), t => new PairRow<T1, T2> { Time = t });
                row.First = x;
                row.HasFirst = true;
                aligner.Release();
            });
            p.On(second, y =>
            {
                PairRow<T1, T2> row = aligner.Row(1, timeOfSecond(y), t => new PairRow<T1, T2> { Time = t });
                row.Second = y;
                row.HasSecond = true;
                aligner.Release();
            });
            p.OnEnded(first, () => aligner.End(0));
            p.OnEnded(second, () => aligner.End(1));
        });
    }

    internal sealed class PairRow<T1, T2>
    {
        public long Time;
        public T1 First = default!;
        public bool HasFirst;
        public T2 Second = default!;
        public bool HasSecond;
    }

    /// <summary>
    /// The rows of a timed zip: one per time at which some input has an item, released in time order
    /// once every input has reached or passed that time (an input never has two items at one time, so
    /// reaching a time means no more items at it) or has ended.
    /// </summary>
    private sealed class TimeAligner<TRow>(string name, string[] inputs, int maxBuffered, Action<TRow> emit)
    {
        private SortedDictionary<long, TRow> _rows = new();
        private long[] _latest = Enumerable.Repeat(long.MinValue, inputs.Length).ToArray();
        private bool[] _seen = new bool[inputs.Length];
        private bool[] _ended = new bool[inputs.Length];

        /// <summary>What a checkpoint keeps: the rows not yet written and where each input has got to.</summary>
        public (SortedDictionary<long, TRow> Rows, long[] Latest, bool[] Seen, bool[] Ended) Save() => (_rows, _latest, _seen, _ended);

        public void Load((SortedDictionary<long, TRow> Rows, long[] Latest, bool[] Seen, bool[] Ended) state)
        {
            if (state.Latest.Length != inputs.Length)
                throw new InvalidDataException($"TimedZip '{name}': the checkpoint holds {state.Latest.Length} inputs, not {inputs.Length}.");
            (_rows, _latest, _seen, _ended) = state;
        }

        /// <summary>The row at time <paramref name="t"/> for an item of input <paramref name="input"/>, after checking the input's order.</summary>
        public TRow Row(int input, long t, Func<long, TRow> create)
        {
            if (_seen[input] && t < _latest[input])
                throw new InvalidOperationException($"TimedZip '{name}': input '{inputs[input]}' went back in time, from {_latest[input]} to {t}; each input must be in time order.");
            if (_seen[input] && t == _latest[input])
                throw new InvalidOperationException($"TimedZip '{name}': input '{inputs[input]}' has two items at time {t}.");
            _seen[input] = true;
            _latest[input] = t;
            if (!_rows.TryGetValue(t, out TRow? row))
            {
                if (_rows.Count >= maxBuffered)
                    throw new InvalidOperationException($"TimedZip '{name}': {_rows.Count} times wait for every input to pass them (maxBuffered is {maxBuffered}); an input lags too far behind.");
                _rows[t] = row = create(t);
            }
            return row;
        }

        public void End(int input)
        {
            _ended[input] = true;
            Release();
        }

        public void Release()
        {
            long reached = long.MaxValue;
            for (int i = 0; i < _latest.Length; i++)
            {
                if (_ended[i]) continue;
                if (!_seen[i]) return; // an input with no item yet may still have one at any time
                reached = Math.Min(reached, _latest[i]);
            }
            while (_rows.Count > 0)
            {
                var (time, row) = _rows.First();
                if (time > reached) break;
                _rows.Remove(time);
                emit(row);
            }
        }
    }
}
