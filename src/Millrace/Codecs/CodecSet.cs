using System.Buffers;

namespace Millrace.Codecs;

/// <summary>A codec for whole batches of one stream's items (an array of its item type), whatever the type: what transports call.</summary>
public abstract class BatchCodec
{
    internal BatchCodec()
    {
    }

    /// <summary>The codec's name (json, binary, or a registered codec's).</summary>
    public abstract string Name { get; }

    /// <summary>Writes the first <paramref name="count"/> items of <paramref name="items"/> to <paramref name="output"/>.</summary>
    public abstract void Encode(Array items, int count, IBufferWriter<byte> output);

    /// <summary>Reads a batch of <paramref name="count"/> items (-1: as many as there are).</summary>
    /// <exception cref="InvalidDataException">The bytes are not such a batch (whatever the codec threw is its inner exception).</exception>
    public abstract Array Decode(ReadOnlySpan<byte> data, int count);

    /// <summary>Whether <see cref="Decode(ReadOnlySpan{byte}, int, Array)"/> can fill an array handed back (items of a fixed size, no references).</summary>
    internal virtual bool DecodesInto => false;

    /// <summary>
    /// The same, into <paramref name="into"/> when it is an array of exactly <paramref name="count"/> items a reader has
    /// finished with (no allocation, no fresh memory to fault in); otherwise into a new array.
    /// </summary>
    internal virtual Array Decode(ReadOnlySpan<byte> data, int count, Array into) => Decode(data, count);
}

/// <summary>A codec that can fill an array a reader has finished with instead of allocating one.</summary>
internal interface IDecodesInto<T>
{
    T[] Decode(ReadOnlySpan<byte> data, int count, T[] into);
}

internal sealed class BatchCodec<T> : BatchCodec
{
    private readonly ICodec<T> _codec;

    public BatchCodec(ICodec<T> codec) => _codec = codec;

    public override string Name => _codec.Name;

    public override void Encode(Array items, int count, IBufferWriter<byte> output) =>
        _codec.Encode(new ReadOnlySpan<T>((T[])items, 0, count), output);

    internal override bool DecodesInto => _codec is IDecodesInto<T>;

    internal override Array Decode(ReadOnlySpan<byte> data, int count, Array into)
    {
        if (_codec is not IDecodesInto<T> codec || into is not T[] array) return Decode(data, count);
        return codec.Decode(data, count, array);
    }

    public override Array Decode(ReadOnlySpan<byte> data, int count)
    {
        try
        {
            return _codec.Decode(data, count);
        }
        catch (Exception e) when (e is not (InvalidDataException or OutOfMemoryException or OperationCanceledException))
        {
            // One kind of error for bytes that are not a batch, whichever codec read them (JSON's, a user's).
            throw new InvalidDataException($"{data.Length} bytes are not a batch of {(count < 0 ? "" : $"{count} ")}{typeof(T).Name} for the {_codec.Name} codec: {e.GetType().Name}: {e.Message}", e);
        }
    }
}

/// <summary>Which codec each item type uses: the user's, then the choice of <see cref="RunOptions.Codec"/>.</summary>
internal sealed class CodecSet
{
    private readonly IReadOnlyDictionary<Type, object> _registered;
    private readonly string _choice;

    public CodecSet(IReadOnlyDictionary<Type, object> registered, string choice)
    {
        _registered = registered;
        _choice = choice;
    }

    // Each item type's codec maker, made where the type is known without reflection (a stream's static constructor,
    // Stream<T>): a program published with Native AOT has the code of each, where a generic method made at run time
    // has none. Types not declared by a stream fall back to reflection.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, Func<CodecSet, BatchCodec>> Makers = new();

    /// <summary>Notes <typeparamref name="T"/> as an item type, with its codec maker.</summary>
    internal static void Know<T>() => Makers.TryAdd(typeof(T), static set => set.ForType<T>());

    public BatchCodec For(Type type) =>
        Makers.TryGetValue(type, out Func<CodecSet, BatchCodec>? make) ? make(this) :
        (BatchCodec)typeof(CodecSet).GetMethod(nameof(ForType), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!
            .MakeGenericMethod(type).Invoke(this, null)!;

    private BatchCodec ForType<T>() => new BatchCodec<T>(Codec<T>());

    public ICodec<T> Codec<T>()
    {
        if (_registered.TryGetValue(typeof(T), out object? codec)) return (ICodec<T>)codec;
        return _choice switch
        {
            "json" => new JsonCodec<T>(),
            "binary" when BinaryCodec.Supports(typeof(T)) => BinaryCodec.For<T>(),
            // auto: binary where its format is plain (primitives, strings, byte arrays), JSON for the rest.
            "auto" when typeof(T).IsPrimitive || typeof(T) == typeof(string) || typeof(T) == typeof(byte[]) => BinaryCodec.For<T>(),
            _ => new JsonCodec<T>(),
        };
    }
}
