namespace Millrace;

// Operators that write several outputs: split by a choice, unzip, separate tagged items.
public static partial class Operators
{
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
}
