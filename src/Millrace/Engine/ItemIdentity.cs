namespace Millrace.Engine;

/// <summary>
/// The ids of a process's items, when its placement may deliver an item twice (the broker: a
/// message taken again after a restart or a lost connection). Every item emitted gets an id derived
/// from the id of the item being handled, so an item handled again produces items with the same ids,
/// and a reader that asked to skip repeats (<see cref="ProcessBuilder.SkipRepeats"/>) skips them.
/// One per runner, made by the placement that needs it (<see cref="RunHost"/>); runners of the other
/// placements have none and pay nothing. Process thread only.
/// </summary>
internal sealed class ItemIdentity
{
    public ItemIdentity(int repeatWindow)
    {
        if (repeatWindow > 0) Seen = new IdWindow(repeatWindow);
    }

#if DEBUG
    /// <summary>Debug builds: the runner it belongs to, for the thread asserts (null: none, as in unit tests).</summary>
    internal ProcessRunner? Owner { get; set; }
#endif

    /// <summary>
    /// Debug builds: asserts "process thread only". <see cref="NextId"/> is left out: an async handler
    /// may emit from another thread while its process awaits it.
    /// </summary>
    [System.Diagnostics.Conditional("DEBUG")]
    private void AssertProcessThread(string member)
    {
#if DEBUG
        Owner?.AssertRunnerThread(member);
#endif
    }

    /// <summary>Ids handled lately, when the process asked to skip repeats; null otherwise.</summary>
    public IdWindow? Seen { get; }

    /// <summary>Items skipped because they were handled before (repeats).</summary>
    public long Skipped { get; private set; }

    /// <summary>A handler is running for the item <see cref="CurrentId"/>.</summary>
    public bool InItem { get; private set; }

    /// <summary>The id of the item being handled, while <see cref="InItem"/>.</summary>
    public ulong CurrentId { get; private set; }

    /// <summary>Items emitted so far for the current item (each gets a distinct id).</summary>
    private int _emitIndex;

    /// <summary>A handler starts on the item <paramref name="id"/>; false when it was handled before and is to be skipped.</summary>
    public bool Begin(ulong id)
    {
        AssertProcessThread("ItemIdentity.Begin");
        if (Seen is { } seen && !seen.Add(id))
        {
            Skipped++;
            return false;
        }
        Enter(true, id);
        return true;
    }

    /// <summary>The handler is done with its item.</summary>
    public void End()
    {
        AssertProcessThread("ItemIdentity.End");
        InItem = false;
    }

    /// <summary>
    /// Emits on behalf of the item <paramref name="id"/> (or of none, <paramref name="hasId"/> false), as
    /// a handler would, outside its handler (ParallelMap writes results later); returns what to restore.
    /// </summary>
    public (bool InItem, ulong Id, int EmitIndex) Enter(bool hasId, ulong id)
    {
        AssertProcessThread("ItemIdentity.Enter");
        var saved = (InItem, CurrentId, _emitIndex);
        InItem = hasId;
        CurrentId = id;
        _emitIndex = 0;
        return saved;
    }

    public void Restore((bool InItem, ulong Id, int EmitIndex) saved)
    {
        AssertProcessThread("ItemIdentity.Restore");
        (InItem, CurrentId, _emitIndex) = saved;
    }

    /// <summary>
    /// The id of an item emitted to the output salted <paramref name="salt"/>: derived from the id of
    /// the item being handled, or counted from a stable base (<paramref name="nextFree"/>) for items
    /// emitted outside handlers (sources, start and completion actions).
    /// </summary>
    public ulong NextId(ulong salt, ref ulong nextFree)
    {
        if (!InItem) return salt + nextFree++;
        // The first item emitted for an item: a fixed step from its id (so a batch of consecutive
        // ids stays consecutive, and its ids travel as one range). Further ones: well mixed, so
        // that two flat-maps in a row cannot give two different items the same id.
        int k = _emitIndex++;
        ulong id = CurrentId + salt;
        return k == 0 ? id : ItemIds.Mix(id + ItemIds.Spread * (ulong)k);
    }
}

/// <summary>
/// The last <see cref="Size"/> item ids a process handled, to skip an item delivered again (after a
/// writer restarted or a connection was lost). Bounded: the oldest id is forgotten first.
/// </summary>
internal sealed class IdWindow
{
    private readonly HashSet<ulong> _set;
    private readonly ulong[] _ring;
    private int _next;
    private int _count;

    public IdWindow(int size)
    {
        Size = size;
        _set = new HashSet<ulong>(Math.Min(size, 1 << 16));
        _ring = new ulong[size];
    }

    public int Size { get; }

    /// <summary>Remembers <paramref name="id"/>; false if it is already among the last ones seen.</summary>
    public bool Add(ulong id)
    {
        if (!_set.Add(id)) return false;
        if (_count == _ring.Length) _set.Remove(_ring[_next]);
        else _count++;
        _ring[_next] = id;
        _next = _next + 1 == _ring.Length ? 0 : _next + 1;
        return true;
    }
}

/// <summary>Stable ids: the same process, stream and position give the same id in every run and OS process.</summary>
internal static class ItemIds
{
    /// <summary>Spreads the ids of several items emitted for one item.</summary>
    public const ulong Spread = 0x9E3779B97F4A7C15;

    /// <summary>SplitMix64's finish: every bit of the input moves about half of the output's.</summary>
    public static ulong Mix(ulong h)
    {
        h ^= h >> 30;
        h *= 0xBF58476D1CE4E5B9;
        h ^= h >> 27;
        h *= 0x94D049BB133111EB;
        h ^= h >> 31;
        return h;
    }

    /// <summary>A well-mixed 64-bit number for a text (FNV-1a, then a SplitMix64 finish); never random.</summary>
    public static ulong Hash(string text)
    {
        ulong h = 14695981039346656037;
        foreach (char c in text)
        {
            h ^= c;
            h *= 1099511628211;
        }
        return Mix(h);
    }
}
