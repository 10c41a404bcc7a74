namespace Millrace.Monitoring;

/// <summary>
/// Something that shows a run while it lasts (the dashboard, the terminal view); lives in a library
/// of its own and reads the run through <see cref="RunMonitor.Sample"/>.
/// </summary>
public interface IRunObserver
{
    /// <summary>The run starts: begin showing <paramref name="monitor"/>. A failure here fails the run before anything runs.</summary>
    Task StartAsync(RunMonitor monitor);

    /// <summary>The run has ended (<see cref="RunMonitor.Final"/> is set): show the end and stop.</summary>
    Task StopAsync();
}

internal static class ObserverLoader
{
    public static bool Available(string typeName)
    {
        try
        {
            return Type.GetType(typeName, throwOnError: false) is not null;
        }
        catch (Exception e) when (e is IOException or BadImageFormatException)
        {
            return false;
        }
    }

    public static async Task<IRunObserver> StartAsync(string what, string typeName, string library, RunMonitor monitor, bool required)
    {
        Type? type = Available(typeName) ? Type.GetType(typeName) : null;
        if (type is null)
            throw new RunStartException($"The {what} lives in the {library} library, which this program does not reference. " +
                $"Add it: dotnet add package {library} (or a project reference to src/{library}).");
        var observer = (IRunObserver)Activator.CreateInstance(type)!;
        try
        {
            await observer.StartAsync(monitor);
        }
        catch (InvalidOperationException e) when (required && e.Data.Contains(RunStartException.Marker))
        {
            // A failure the view reports on purpose (a port in use): its message says what and how to fix it, and a stack
            // trace would bury it. Any other exception keeps its stack trace (a bug's is needed).
            throw new RunStartException(e.Message, e);
        }
        return observer;
    }
}

/// <summary>
/// The run could not start for a reason its message tells in full (a view that cannot listen, a library not referenced):
/// <see cref="MillraceMain"/> prints the message alone, no stack trace.
/// </summary>
internal sealed class RunStartException(string message, Exception? inner = null) : InvalidOperationException(message, inner)
{
    /// <summary>
    /// The key a view puts in an exception's <see cref="Exception.Data"/> when its message tells the whole story (the
    /// dashboard's libraries see only this string, not the type).
    /// </summary>
    public const string Marker = "Millrace.RunStart";
}
