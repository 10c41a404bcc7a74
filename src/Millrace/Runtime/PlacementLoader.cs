namespace Millrace.Runtime;

/// <summary>A placement that lives in a library of its own (it brings dependencies the core does without).</summary>
internal interface IPlacement
{
    Task<RunResult> RunAsync(GraphModel model, RunOptions options, CancellationToken cancellationToken);
}

internal static class PlacementLoader
{
    /// <summary>Finds the placement by name in its library, which the program references; says how to fix it if not.</summary>
    public static IPlacement Load(string placement, string typeName, string library)
    {
        Type? type;
        try
        {
            type = Type.GetType(typeName, throwOnError: false);
        }
        catch (Exception e) when (e is IOException or BadImageFormatException)
        {
            throw Missing(placement, library, e.Message);
        }
        if (type is null) throw Missing(placement, library, null);
        return (IPlacement)Activator.CreateInstance(type)!;
    }

    private static InvalidOperationException Missing(string placement, string library, string? why) => new(
        $"The {placement} placement lives in the {library} library, which this program does not reference" +
        (why is null ? "" : $" ({why})") + $". Add it: dotnet add package {library} (or a project reference to src/{library}).");
}
