using System.Reflection;
using Millrace.Placements.Processes;
using Millrace.Placements.Threads;

namespace Millrace.Placements;

/// <summary>
/// The placements a program can run with, by name. <c>threads</c> and <c>processes</c> are built in;
/// a placement library (Millrace.RabbitMQ's <c>broker</c>) is found when the program references it
/// and asks for it: its assembly says so with <see cref="MillracePlacementAttribute"/>. Others are
/// added with <see cref="Register"/>.
/// </summary>
public static class PlacementRegistry
{
    private static readonly object Lock = new();
    private static readonly Dictionary<string, IPlacement> Placements = new(StringComparer.Ordinal)
    {
        ["threads"] = new ThreadsPlacement(),
        ["processes"] = new ProcessesPlacement(),
    };
    private static readonly HashSet<Assembly> Scanned = new();

    /// <summary>Placement libraries of this project, to say which one to add when a name is not found.</summary>
    private static readonly Dictionary<string, string> KnownLibraries = new(StringComparer.Ordinal) { ["broker"] = "Millrace.RabbitMQ" };

    /// <summary>Adds <paramref name="placement"/> under its <see cref="IPlacement.Name"/>.</summary>
    /// <exception cref="ArgumentException">The name is not plain (letters, digits, '-'), or another kind of placement has it.</exception>
    public static void Register(IPlacement placement)
    {
        ArgumentNullException.ThrowIfNull(placement);
        string name = placement.Name;
        if (string.IsNullOrEmpty(name) || name.Any(c => !(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-')))
            throw new ArgumentException($"A placement's name must be lower-case letters, digits and '-'; {placement.GetType().Name} calls itself '{name}'.", nameof(placement));
        lock (Lock)
        {
            if (Placements.TryGetValue(name, out IPlacement? existing) && existing.GetType() != placement.GetType())
                throw new ArgumentException($"The placement name '{name}' is taken by {existing.GetType().FullName}; {placement.GetType().FullName} cannot have it too.", nameof(placement));
            Placements[name] = placement;
        }
    }

    /// <summary>The names of every placement known now: built in, registered, and those of the placement libraries beside the program.</summary>
    public static IReadOnlyList<string> Names
    {
        get
        {
            Discover();
            lock (Lock) return Placements.Keys.Order(StringComparer.Ordinal).ToArray();
        }
    }

    /// <summary>Whether a placement called <paramref name="name"/> can be had.</summary>
    public static bool Contains(string name) => TryFind(name, out _);

    /// <summary>The placement called <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">There is none; the message lists those there are and, for a known library, how to add it.</exception>
    public static IPlacement Get(string name)
    {
        if (TryFind(name, out IPlacement? placement)) return placement;
        string hint = KnownLibraries.TryGetValue(name, out string? library)
            ? $" The {name} placement lives in the {library} library, which this program does not reference. Add it: dotnet add package {library} (or a project reference to src/{library})."
            : "";
        throw new ArgumentException($"Unknown placement '{name}'. Known placements: {string.Join(", ", Names)}.{hint}");
    }

    private static bool TryFind(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IPlacement? placement)
    {
        lock (Lock)
        {
            if (Placements.TryGetValue(name, out placement)) return true;
        }
        Discover();
        lock (Lock) return Placements.TryGetValue(name, out placement);
    }

    /// <summary>
    /// Looks for <see cref="MillracePlacementAttribute"/> in the assemblies loaded now and in the
    /// program's own Millrace libraries (its trusted platform assemblies whose name says Millrace),
    /// each once. A program that references a placement library need not touch any of its types.
    /// </summary>
    private static readonly object ScanGate = new();

    private static void Discover()
    {
        // One scan at a time: a second caller waits until the placements found are added, rather than miss them.
        lock (ScanGate) Scan();
    }

    private static void Scan()
    {
        List<Assembly> candidates = MillraceLibraries.Candidates();
        foreach (Assembly assembly in candidates)
        {
            lock (Lock)
            {
                if (!Scanned.Add(assembly)) continue;
            }
            foreach (Type type in MillraceLibraries.ExtensionTypes(assembly, typeof(MillracePlacementAttribute<>), typeof(MillracePlacementAttribute)))
            {
                if (!typeof(IPlacement).IsAssignableFrom(type))
                    throw new InvalidOperationException($"{assembly.GetName().Name} names {type.FullName} as a placement, but it does not implement IPlacement.");
                var placement = (IPlacement)Activator.CreateInstance(type, nonPublic: true)!;
                lock (Lock) Placements.TryAdd(placement.Name, placement);
            }
        }
    }
}
