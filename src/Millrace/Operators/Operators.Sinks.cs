namespace Millrace;

// Operators that end a stream: an action per item, a collection, JSON lines, CSV.
public static partial class Operators
{
    /// <summary>A sink: calls <paramref name="action"/> for every item, in order, in the OS process that runs it.</summary>
    public static void Sink<T>(this Graph graph, string name, Stream<T> input, Action<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        graph.Process(name, p => p.On(input, action));
    }

    /// <summary>
    /// A sink with explicit state: <c>state = f(x, state)</c> for every item x, starting from
    /// <paramref name="initial"/>; <paramref name="atEnd"/>, if given, gets the final state once the input has ended.
    /// </summary>
    public static void SinkWithState<T, TState>(this Graph graph, string name, Stream<T> input, TState initial, Func<T, TState, TState> f,
        Action<TState>? atEnd = null)
    {
        ArgumentNullException.ThrowIfNull(f);
        graph.Process(name, p =>
        {
            p.UncheckpointedState = "SinkWithState";
            TState state = initial;
            p.On(input, x => state = f(x, state));
            if (atEnd is not null) p.OnCompleted(() => atEnd(state));
        });
    }

    /// <summary>A sink over count windows (as in <see cref="Window{T, TOut}"/>): calls <paramref name="action"/> with each window.</summary>
    public static void SinkWindow<T>(this Graph graph, string name, Stream<T> input, int size, int step, Action<IReadOnlyList<T>> action,
        WindowStart start = WindowStart.Full)
    {
        ArgumentNullException.ThrowIfNull(action);
        WindowCore<T, T>(graph, name, input, null, size, step, start, _ => action);
    }

    /// <summary>
    /// A sink that adds every item to <paramref name="target"/> (for tests and small results). The
    /// collection fills in the OS process that runs the sink: in the processes and broker
    /// placements that is not the program that started the run, unless it runs the sink itself.
    /// </summary>
    public static void ToCollection<T>(this Graph graph, string name, Stream<T> input, ICollection<T> target)
    {
        ArgumentNullException.ThrowIfNull(target);
        graph.Process(name, p =>
        {
            p.UncheckpointedState = "a collection in memory";
            p.On(input, target.Add);
        });
    }

    /// <summary>A sink that appends every item to a file as one line of JSON (System.Text.Json, web defaults), flushed when the input ends.</summary>
    public static void ToJsonLines<T>(this Graph graph, string name, Stream<T> input, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        graph.Process(name, p =>
        {
            p.UncheckpointedState = "appends to a file";
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
            p.UncheckpointedState = "appends to a file";
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
