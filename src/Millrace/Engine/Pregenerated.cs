namespace Millrace.Engine;

/// <summary>
/// Never called: it names the generic code that a graph of the common item types runs (streams, sources, handlers,
/// outputs and state over int, long, double, float, bool and decimal), so that ReadyToRun compiles that code into this
/// library ahead of time. Instantiations that only a program names (an <c>Output&lt;double&gt;</c> in the Tutorial) are
/// otherwise compiled when first called, without optimizations, and a run's first million items go at half speed until
/// the JIT compiles them again (bench/RESULTS.md). Reference types share one compiled copy and need nothing here.
/// </summary>
internal static class Pregenerated
{
    internal static void Roots()
    {
        Use<int>();
        Use<long>();
        Use<double>();
        Use<float>();
        Use<bool>();
        Use<decimal>();
    }

    private static void Use<T>()
    {
        var graph = new Graph();
        Stream<T> input = graph.Stream<T>("input");
        Stream<T> output = graph.Stream<T>("output");
        graph.Source("source", input, Array.Empty<T>(), null);
        graph.Process("process", p =>
        {
            Output<T> emit = p.Output(output);
            ProcessState<T> state = p.State("state", default(T)!);
            p.On(input, x =>
            {
                state.Value = x;
                emit.Emit(state.Value);
            });
        });
        graph.Process("sink", p => p.On(output, _ => { }));
    }
}
