namespace Millrace;

/// <summary>
/// Ready-made processes (IoTPy's agent types): each call declares one process, named by its first
/// argument, that reads its input streams and writes its output streams. They run unchanged in every
/// placement. Handlers of one process never run concurrently, so the functions given may keep state
/// in their closures; the <c>...WithState</c> variants make the state explicit.
/// </summary>
public static partial class Operators
{
    // Operators that turn each item into zero, one or many: map, filter, flat-map, with or without state.

    /// <summary>
    /// Writes <c>f(x)</c> to <paramref name="output"/> for every item x of <paramref name="input"/>; with
    /// <paramref name="dropNulls"/>, a null result writes nothing (IoTPy's map returning no value).
    /// </summary>
    public static void Map<TIn, TOut>(this Graph graph, string name, Stream<TIn> input, Stream<TOut> output, Func<TIn, TOut> f,
        bool dropNulls = false)
    {
        ArgumentNullException.ThrowIfNull(f);
        if (dropNulls && typeof(TOut).IsValueType && Nullable.GetUnderlyingType(typeof(TOut)) is null)
            throw new ArgumentException($"Map '{name}': dropNulls needs results that can be null; {typeof(TOut).Name} never is (use {typeof(TOut).Name}?).", nameof(dropNulls));
        graph.Process(name, p =>
        {
            Output<TOut> o = p.Output(output);
            if (dropNulls)
            {
                p.On(input, x =>
                {
                    TOut y = f(x);
                    if (y is not null) o.Emit(y);
                });
            }
            else
            {
                p.On(input, x => o.Emit(f(x)));
            }
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
            p.Keep("state", () => state, v => state = v);
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
            p.Keep("state", () => state, v => state = v);
            p.On(input, x =>
            {
                (IEnumerable<TOut> ys, state) = f(x, state);
                foreach (TOut y in ys) o.Emit(y);
            });
        });
    }

    /// <summary>
    /// Filter with explicit state: <c>(keep, state) = f(x, state)</c> for every item x, starting from
    /// <paramref name="initial"/>; writes x when keep is true.
    /// </summary>
    public static void FilterWithState<T, TState>(this Graph graph, string name, Stream<T> input, Stream<T> output,
        TState initial, Func<T, TState, (bool Keep, TState State)> f)
    {
        ArgumentNullException.ThrowIfNull(f);
        graph.Process(name, p =>
        {
            Output<T> o = p.Output(output);
            TState state = initial;
            p.Keep("state", () => state, v => state = v);
            p.On(input, x =>
            {
                (bool keep, state) = f(x, state);
                if (keep) o.Emit(x);
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
}
