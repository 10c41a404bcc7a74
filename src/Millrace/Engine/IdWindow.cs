namespace Millrace.Engine;

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
