using Millrace;

namespace MillraceApp;

/// <summary>The graph: lines of text → words counted per line → a running total. Built the same way in every OS process.</summary>
public static class Pipeline
{
    /// <param name="lines">What the source reads (a file's lines, a generator, an IAsyncEnumerable of messages...).</param>
    /// <param name="report">Told the totals once every line has been counted.</param>
    public static Graph Build(IEnumerable<string> lines, Action<long, long> report)
    {
        var graph = new Graph();
        Stream<string> text = graph.Stream<string>("lines");
        Stream<int> counts = graph.Stream<int>("word-counts");

        graph.Source("read", text, lines);

        // A process: its outputs, a handler per input. It runs as a thread, an OS process, or on another machine.
        graph.Process("count", p =>
        {
            Output<int> output = p.Output(counts);
            p.On(text, line => output.Emit(line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length));
        });

        // State declared with p.State is kept in checkpoints (--state ./state): exactly once after a crash.
        graph.Process("total", p =>
        {
            ProcessState<long> lineCount = p.State("lines", 0L);
            ProcessState<long> words = p.State("words", 0L);
            p.On(counts, n =>
            {
                lineCount.Value++;
                words.Value += n;
            });
            p.OnCompleted(() => report(lineCount.Value, words.Value));
        });
        return graph;
    }

    /// <summary>Example input: <paramref name="count"/> lines of a few words.</summary>
    public static IEnumerable<string> SampleLines(int count)
    {
        string[] words = ["the", "mill", "race", "turns", "a", "wheel"];
        for (int i = 0; i < count; i++) yield return string.Join(' ', words.Take(1 + i % words.Length));
    }
}
