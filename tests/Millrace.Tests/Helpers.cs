namespace Millrace.Tests;

internal static class Helpers
{
    /// <summary>Runs a graph with a time limit, so that a hang fails the test instead of the build.</summary>
    public static Task<RunResult> RunWithin(this Graph graph, RunOptions? options = null, CancellationToken token = default, int seconds = 30)
    {
        options ??= new RunOptions();
        options.HandleStopSignals = false;
        return graph.RunAsync(options, token).WaitAsync(TimeSpan.FromSeconds(seconds));
    }

    public static IEnumerable<long> Forever()
    {
        for (long i = 0; ; i++) yield return i;
    }
}
