using System.Reflection;
using Millrace.Placements;

namespace Millrace.State;

/// <summary>
/// Opens the state store that <c>--state</c> (<see cref="RunOptions.StatePath"/>) names: a store of a registered
/// provider (Millrace.Data's SQLite file or PostgreSQL database, found when the program references it), or else a folder.
/// </summary>
public static class StateStores
{
    private static readonly object Gate = new();
    private static readonly List<IStateStoreProvider> Providers = new();
    private static readonly HashSet<Assembly> Scanned = new();

    /// <summary>Adds <paramref name="provider"/>; it is asked before those found in libraries, and before the folder.</summary>
    public static void Register(IStateStoreProvider provider)
    {
        ArgumentNullException.ThrowIfNull(provider);
        lock (Gate) Providers.Insert(0, provider);
    }

    /// <summary>The store at <paramref name="location"/> (a folder when no provider knows the location).</summary>
    /// <param name="location">A folder, or what a provider knows (a file <c>*.db</c>, a connection string <c>Host=...</c>).</param>
    /// <param name="name">Tells apart the programs that share one database.</param>
    /// <exception cref="ArgumentException">The location names a kind of store whose library the program does not reference.</exception>
    public static IStateStore Open(string location, string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(location);
        Discover();
        IStateStoreProvider[] providers;
        lock (Gate) providers = Providers.ToArray();
        foreach (IStateStoreProvider provider in providers)
        {
            if (provider.Open(location, name) is { } store) return store;
        }
        if (PostgresUri(location))
            throw new ArgumentException("--state: give PostgreSQL as a connection string of key=value pairs (Host=127.0.0.1;Username=me;Password=...;Database=state), not a URI.");
        if (PostgresConnectionString(location))
            throw new ArgumentException(
                "--state looks like a PostgreSQL connection string, but the PostgreSQL state store lives in the Millrace.Data library, which this program does not reference. " +
                "Add it: dotnet add package Millrace.Data (or a project reference to src/Millrace.Data).");
        if (SqliteFile(location) && !Directory.Exists(location))
            throw new ArgumentException(
                $"--state {location} names a SQLite file, but the SQLite state store lives in the Millrace.Data library, which this program does not reference. " +
                "Add it (dotnet add package Millrace.Data, or a project reference to src/Millrace.Data), or name a folder.");
        return new FolderStateStore(location);
    }

    /// <summary>
    /// Holds a lock on <paramref name="file"/> (created when missing) until disposed: between OS processes, let go by
    /// the OS when the process holding it dies. For stores whose lock is a file.
    /// </summary>
    /// <param name="file">The lock file.</param>
    /// <param name="wait">How long to wait for another OS process to let it go.</param>
    /// <param name="what">The store, for the message (<c>The state folder /x</c>).</param>
    /// <exception cref="TimeoutException">Another OS process held it for <paramref name="wait"/>.</exception>
    public static IDisposable LockFile(string file, TimeSpan wait, string what)
    {
        var deadline = DateTime.UtcNow + wait;
        while (true)
        {
            try
            {
                return new FileStream(file, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
            {
                if (DateTime.UtcNow > deadline)
                    throw new TimeoutException($"{what} stayed locked ({file}) for {wait.TotalSeconds:0.#} s by another OS process of the run.", e);
                Thread.Sleep(5);
            }
        }
    }

    /// <summary>Whether <paramref name="location"/> names a SQLite file by its extension (.db, .sqlite, .sqlite3), or is <c>Data Source=...</c>.</summary>
    public static bool SqliteFile(string location) =>
        location.StartsWith("Data Source=", StringComparison.OrdinalIgnoreCase) || Path.GetExtension(location).ToLowerInvariant() is ".db" or ".sqlite" or ".sqlite3";

    /// <summary>Whether <paramref name="location"/> is a URI of PostgreSQL (<c>postgres://</c>, <c>postgresql://</c>).</summary>
    public static bool PostgresUri(string location) =>
        location.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || location.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether <paramref name="location"/> is a connection string (key=value pairs) that names a server (<c>Host</c> or <c>Server</c>).</summary>
    public static bool PostgresConnectionString(string location) => location.Contains('=', StringComparison.Ordinal) && NamesServer(location);

    // Apart, and not inlined: the builder's library loads when this method is first called (milliseconds), not for every location.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static bool NamesServer(string location)
    {
        try
        {
            var builder = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = location };
            return builder.ContainsKey("host") || builder.ContainsKey("server");
        }
        catch (ArgumentException)
        {
            return false; // not key=value pairs: a path with '=' in it
        }
    }

    private static readonly object ScanGate = new();

    private static void Discover()
    {
        // One scan at a time: a second caller waits until the providers found are added, rather than miss them.
        lock (ScanGate) Scan();
    }

    private static void Scan()
    {
        foreach (Assembly assembly in MillraceLibraries.Candidates())
        {
            lock (Gate)
            {
                if (Scanned.Contains(assembly)) continue;
            }
            foreach (IStateStoreProvider provider in ProvidersOf(assembly))
                lock (Gate) Providers.Add(provider);
            // Marked scanned once its providers are added: a library whose attribute is wrong fails every scan, not only
            // the first (a later store would otherwise be a folder, silently).
            lock (Gate) Scanned.Add(assembly);
        }
    }

    private static List<IStateStoreProvider> ProvidersOf(Assembly assembly)
    {
        var providers = new List<IStateStoreProvider>();
        foreach (Type type in MillraceLibraries.ExtensionTypes(assembly, typeof(MillraceStateStoreAttribute<>), typeof(MillraceStateStoreAttribute)))
        {
            if (!typeof(IStateStoreProvider).IsAssignableFrom(type))
                throw new InvalidOperationException($"{assembly.GetName().Name} names {type.FullName} as a state store provider, but it does not implement IStateStoreProvider.");
            providers.Add((IStateStoreProvider)Activator.CreateInstance(type, nonPublic: true)!);
        }
        return providers;
    }
}

/// <summary>
/// The built-in store: a folder, one file per key ('/' in a key is a subfolder). Each file is written to a
/// temporary name, flushed to disk and renamed, so a crash leaves the whole file or none; the lock is a lock on
/// a file <c>NAME.lock</c>, which the OS lets go when the process holding it dies.
/// </summary>
internal sealed class FolderStateStore : IStateStore
{
    private readonly string _path;

    public FolderStateStore(string path)
    {
        _path = Path.GetFullPath(path);
        Directory.CreateDirectory(_path);
    }

    public string Where => _path;

    private string File_(string key) => Path.Combine(_path, key.Replace('/', Path.DirectorySeparatorChar));

    public byte[]? Read(string key)
    {
        string file = File_(key);
        // A missing key is the common case (a fresh store, a checkpoint not yet taken) and is told without an exception
        // (the first one a program throws costs it milliseconds): only when the folder can be listed and does not hold
        // the file. A file that cannot be looked at (a folder without search permission) is read, and its error thrown.
        if (!File.Exists(file) && Absent(file)) return null;
        try
        {
            return File.ReadAllBytes(file);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null; // removed meanwhile
        }
    }

    // A name as it is ('*' and '?' still match more: then it is read); errors thrown, not skipped.
    private static readonly EnumerationOptions ExactName = new() { MatchType = MatchType.Simple, IgnoreInaccessible = false, AttributesToSkip = 0 };

    // The folder of the file is listed and holds no such name. A folder that cannot be seen or listed is left to the read
    // (which throws, or finds the key missing, as it always did); a folder removed meanwhile (another OS process deleted
    // its last key) holds no key.
    private static bool Absent(string file)
    {
        string folder = Path.GetDirectoryName(file)!;
        if (!Directory.Exists(folder)) return false;
        try
        {
            foreach (string _ in Directory.EnumerateFileSystemEntries(folder, Path.GetFileName(file), ExactName)) return false;
            return true;
        }
        catch (DirectoryNotFoundException)
        {
            return true;
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            return false;
        }
    }

    public void Write(string key, ReadOnlySpan<byte> value)
    {
        string file = File_(key);
        // A name of this writer's own: the OS processes of a run (on several machines, for a shared folder) may write the same key at once.
        string temporary = $"{file}.{Guid.NewGuid():N}.tmp";
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                Directory.CreateDirectory(Path.GetDirectoryName(file)!);
                using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
                {
                    stream.Write(value);
                    stream.Flush(flushToDisk: true);
                }
                File.Move(temporary, file, overwrite: true);
                return;
            }
            catch (IOException) when (attempt < 20)
            {
                // Another OS process removed the folder of keys meanwhile (its last key was deleted), or is removing it
                // ("already exists" while it goes): make it again, a moment later.
                Thread.Sleep(attempt);
            }
        }
    }

    public IReadOnlyList<StateEntry> List(string prefix)
    {
        var entries = new List<StateEntry>();
        foreach (FileInfo file in new DirectoryInfo(_path).EnumerateFiles("*", SearchOption.AllDirectories))
        {
            if (file.Name.EndsWith(".tmp", StringComparison.Ordinal) || file.Name.EndsWith(".lock", StringComparison.Ordinal)) continue;
            string key = Path.GetRelativePath(_path, file.FullName).Replace(Path.DirectorySeparatorChar, '/');
            if (!key.StartsWith(prefix, StringComparison.Ordinal)) continue;
            try
            {
                entries.Add(new StateEntry(key, file.Length));
            }
            catch (FileNotFoundException)
            {
                // Removed meanwhile by another OS process.
            }
        }
        return entries;
    }

    public void Delete(string key)
    {
        string file = File_(key);
        try
        {
            File.Delete(file);
            // A folder of keys left without keys goes too, with what a writer killed mid-write left there (a writer that
            // made the folder and has not yet begun its file finds it gone and makes it again).
            string? folder = Path.GetDirectoryName(file);
            // (Temporary files younger than a minute are a writer at work: its folder stays.)
            DateTime stale = DateTime.UtcNow.AddMinutes(-1);
            if (folder is not null && folder != _path &&
                Directory.EnumerateFiles(folder).All(f => f.EndsWith(".tmp", StringComparison.Ordinal) && File.GetLastWriteTimeUtc(f) < stale))
                Directory.Delete(folder, recursive: true);
        }
        catch (Exception e) when (e is DirectoryNotFoundException or IOException)
        {
            // Gone meanwhile, or written again by another OS process.
        }
    }

    public IDisposable Lock(string name, TimeSpan wait) => StateStores.LockFile(Path.Combine(_path, name + ".lock"), wait, $"The state folder {_path}");
}
