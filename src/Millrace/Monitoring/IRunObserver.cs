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
            throw new InvalidOperationException($"The {what} lives in the {library} library, which this program does not reference. " +
                $"Add it: dotnet add package {library} (or a project reference to src/{library}).");
        var observer = (IRunObserver)Activator.CreateInstance(type)!;
        await observer.StartAsync(monitor);
        return observer;
    }
}
