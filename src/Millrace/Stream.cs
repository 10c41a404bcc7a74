namespace Millrace;

/// <summary>
/// A named, typed, ordered sequence of items. Declare one with <see cref="Graph.Stream{T}(string)"/>;
/// every process that reads it sees every item, in the order its writers emitted them.
/// </summary>
/// <remarks>
/// A <see cref="Stream{T}"/> is only a reference (a name and an item type): the same name must be
/// declared once on the graph. Referencing a name that is not declared, or reading it with another
/// item type, is reported by graph validation before anything runs.
/// </remarks>
public sealed class Stream<T> : IStreamReference
{
    static Stream() => Codecs.CodecSet.Know<T>();

    /// <summary>Creates a reference to the stream called <paramref name="name"/>.</summary>
    public Stream(string name)
    {
        Names.Check(name, "stream");
        Name = name;
    }

    /// <summary>The stream's name, unique within its graph.</summary>
    public string Name { get; }

    Type IStreamReference.ItemType => typeof(T);

    /// <summary>Items the stream starts with (<see cref="Graph.Stream{T}(string, IEnumerable{T})"/>), on the declared reference only.</summary>
    internal IReadOnlyList<T>? Initial { get; init; }

    bool IStreamReference.HasInitial => Initial is { Count: > 0 };

    void IStreamReference.EmitInitial(IOutputPort port)
    {
        var output = (Output<T>)port;
        foreach (T item in Initial!) output.Emit(item);
    }

    /// <inheritdoc />
    public override string ToString() => $"stream '{Name}' of {Names.Of(typeof(T))}";
}

/// <summary>What the graph needs to know of a stream reference, whatever its item type.</summary>
internal interface IStreamReference
{
    string Name { get; }
    Type ItemType { get; }

    /// <summary>Whether the stream starts with items of its own, emitted by its writer before anything else.</summary>
    bool HasInitial => false;

    /// <summary>Emits the stream's initial items through its writer's output.</summary>
    void EmitInitial(IOutputPort port) { }
}

internal static class Names
{
    /// <summary>Names become CLI arguments, queue names and file names, so keep them plain.</summary>
    public static void Check(string name, string what)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.Length == 0 || name.Length > 100)
            throw new ArgumentException($"A {what} name must have 1 to 100 characters; got '{name}'.", nameof(name));
        foreach (char c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
                throw new ArgumentException(
                    $"The {what} name '{name}' contains '{c}'; use letters, digits, '_', '-' and '.' only.", nameof(name));
        }
    }

    /// <summary>Whether <paramref name="text"/> is valid UTF-16 (no lone surrogate): what a file or message can hold as it is.</summary>
    public static bool IsText(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (!char.IsSurrogate(text[i])) continue;
            if (!char.IsHighSurrogate(text[i]) || i + 1 == text.Length || !char.IsLowSurrogate(text[i + 1])) return false;
            i++;
        }
        return true;
    }

    /// <summary>A C#-like type name for messages: Int32, List&lt;String&gt;.</summary>
    public static string Of(Type type)
    {
        if (!type.IsGenericType) return type.Name;
        string name = type.Name;
        int tick = name.IndexOf('`');
        if (tick >= 0) name = name[..tick];
        return name + "<" + string.Join(", ", type.GetGenericArguments().Select(Of)) + ">";
    }
}
