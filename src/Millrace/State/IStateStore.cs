namespace Millrace.State;

/// <summary>
/// Where checkpoints are kept (<see cref="RunOptions.StatePath"/>, <c>--state</c>): a small store of named
/// values shared by every OS process of a run. Millrace writes its checkpoints, one value per process and
/// checkpoint, and the run's bookkeeping into it (docs/state-and-recovery.md, "The store"). Built in: a
/// folder; Millrace.Data adds SQLite (one file) and PostgreSQL (hosts on different machines). A store of
/// your own registers with <see cref="StateStores.Register"/> or <c>[assembly: MillraceStateStore&lt;MyProvider&gt;]</c>.
/// </summary>
/// <remarks>
/// Keys are made of letters, digits, '-', '_', '.' and '/' (never ending in <c>.lock</c>). Every method may be called from several
/// threads and several OS processes at once (the processes of a run share the store).
/// </remarks>
public interface IStateStore
{
    /// <summary>Where the store is, for messages (no password).</summary>
    string Where { get; }

    /// <summary>The value of <paramref name="key"/>, or null when there is none.</summary>
    byte[]? Read(string key);

    /// <summary>
    /// Sets <paramref name="key"/> to <paramref name="value"/>: when it returns, the value is durable (a crash
    /// of the machine keeps it); a crash before leaves the old value or the new one, never a part.
    /// </summary>
    void Write(string key, ReadOnlySpan<byte> value);

    /// <summary>The keys that begin with <paramref name="prefix"/>, with the length of their values.</summary>
    IReadOnlyList<StateEntry> List(string prefix);

    /// <summary>Removes <paramref name="key"/> (nothing when there is none).</summary>
    void Delete(string key);

    /// <summary>
    /// Holds the lock called <paramref name="name"/>, between every OS process that uses the store, until
    /// disposed; let go when the OS process holding it dies. Millrace uses <c>store</c> (changes of the run's
    /// bookkeeping) and <c>process-NAME</c> (held by the OS process that runs a process, in the broker placement).
    /// </summary>
    /// <param name="name">Letters, digits, '-', '_' and '.'.</param>
    /// <param name="wait">How long to wait for another OS process to let it go.</param>
    /// <exception cref="TimeoutException">Another OS process held it for <paramref name="wait"/>.</exception>
    IDisposable Lock(string name, TimeSpan wait);
}

/// <summary>A key of an <see cref="IStateStore"/> and the length of its value.</summary>
/// <remarks>A class, not a struct: lists of it then share the code the runtime ships compiled (a list of a struct of this
/// library is compiled at run time, milliseconds at every start with checkpoints).</remarks>
public sealed record StateEntry(string Key, long Length);

/// <summary>Opens the stores of one kind from what <c>--state</c> says.</summary>
public interface IStateStoreProvider
{
    /// <summary>
    /// The store at <paramref name="location"/>, or null when this provider does not know such locations.
    /// <paramref name="name"/> tells apart the programs that share one database (<see cref="RunOptions.RunId"/>, or the program's name).
    /// </summary>
    IStateStore? Open(string location, string name);
}

/// <summary>
/// Names a state store provider that an assembly has, so that <c>--state</c> finds it:
/// <c>[assembly: MillraceStateStore&lt;MyProvider&gt;]</c>.
/// </summary>
/// <typeparam name="TProvider">A class implementing <see cref="IStateStoreProvider"/> with a constructor without parameters.</typeparam>
/// <remarks>
/// Found from the assembly's metadata alone. The older form <see cref="MillraceStateStoreAttribute"/> names the type by
/// its name, which the runtime resolves with its type name parser: milliseconds at the start of every run that opens a store.
/// </remarks>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class MillraceStateStoreAttribute<TProvider> : Attribute where TProvider : IStateStoreProvider, new();

/// <summary>Names a state store provider that an assembly has, so that <c>--state</c> finds it (<see cref="MillraceStateStoreAttribute{TProvider}"/> is found faster).</summary>
/// <param name="providerType">A class implementing <see cref="IStateStoreProvider"/> with a constructor without parameters.</param>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class MillraceStateStoreAttribute(Type providerType) : Attribute
{
    /// <summary>The class implementing <see cref="IStateStoreProvider"/>.</summary>
    public Type ProviderType { get; } = providerType;
}
