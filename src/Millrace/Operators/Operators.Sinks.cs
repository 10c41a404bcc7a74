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
            TState state = initial;
            p.Keep("state", () => state, v => state = v);
            p.On(input, x => state = f(x, state));
            if (atEnd is not null) p.OnCompleted(() => atEnd(state));
        });
    }

    /// <summary>A sink over count windows (as in <see cref="Window{T, TOut}"/>): calls <paramref name="action"/> with each window.</summary>
    public static void SinkWindow<T>(this Graph graph, string name, Stream<T> input, int size, int step, Action<IReadOnlyList<T>> action,
        WindowStart start = WindowStart.Full)
    {
        ArgumentNullException.ThrowIfNull(action);
        WindowCore<T, T>(graph, name, input, null, size, step, start, (_, _) => action);
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

    /// <summary>
    /// A sink that appends every item to a file as one line of JSON (System.Text.Json, web defaults), flushed when the input ends.
    /// With checkpoints, each checkpoint keeps the file's length (flushed to disk), and a resumed run cuts the file back to it
    /// before writing on: every item is in the file once.
    /// </summary>
    public static void ToJsonLines<T>(this Graph graph, string name, Stream<T> input, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        graph.Process(name, p =>
        {
            StreamWriter? writer = null;
            p.OnStart(() => writer = AppendTo(path));
            KeepLength(p, name, path, () => writer!);
            p.On(input, x => writer!.WriteLine(System.Text.Json.JsonSerializer.Serialize(x, JsonCodec<T>.Defaults)));
            // However the process ends, what was written is flushed and the file closed.
            p.Finally(() => writer?.Dispose());
        });
    }

    /// <summary>
    /// A sink that appends every item to a CSV file (RFC 4180 quoting), the columns given by
    /// <paramref name="columns"/>; a header line with <paramref name="header"/> is written first when the file is new. With
    /// checkpoints, a resumed run cuts the file back to its length at the checkpoint, as <see cref="ToJsonLines{T}"/> does.
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
                writer = AppendTo(path);
                if (fresh) writer.WriteLine(Csv(header));
            });
            KeepLength(p, name, path, () => writer!);
            p.On(input, x => writer!.WriteLine(Csv(columns(x))));
            p.Finally(() => writer?.Dispose());
        });
    }

    private static StreamWriter AppendTo(string path)
    {
        // Not FileMode.Append: a resumed run must be able to cut the file back.
        var file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read);
        file.Seek(0, SeekOrigin.End);
        return new StreamWriter(file, new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
    }

    /// <summary>A file sink's checkpointed state: the file's length, on disk; resuming cuts the file back to it.</summary>
    private static void KeepLength(ProcessBuilder p, string name, string path, Func<StreamWriter> writer) =>
        p.Keep("length", () =>
        {
            StreamWriter w = writer();
            w.Flush();
            var file = (FileStream)w.BaseStream;
            file.Flush(flushToDisk: true);
            return file.Length;
        }, length =>
        {
            StreamWriter w = writer();
            w.Flush();
            var file = (FileStream)w.BaseStream;
            if (file.Length < length)
                throw new InvalidDataException(
                    $"Sink '{name}': the file {Path.GetFullPath(path)} holds {file.Length} bytes, fewer than the {length} it held at the checkpoint the run resumes from: " +
                    "it was changed outside the run. Restore it, or start afresh with another --state folder.");
            file.SetLength(length);
            file.Seek(0, SeekOrigin.End);
        });

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
