namespace Millrace.Tests;

internal static class Helpers
{
    /// <summary>How many runs a property, fuzz or chaos test makes: <paramref name="variable"/> if set (docs/testing.md), else <paramref name="fallback"/>.</summary>
    public static int Iterations(string variable, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(variable), out int n) && n > 0 ? n : fallback;

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
