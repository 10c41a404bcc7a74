using System.Buffers;

namespace Millrace;

/// <summary>
/// Turns batches of items of one type into bytes and back, wherever items cross an OS process or
/// machine boundary. Millrace brings a JSON codec (<see cref="JsonCodec{T}"/>, for any type) and a
/// compact binary codec (<see cref="BinaryCodec"/>); register your own with
/// <see cref="Graph.UseCodec{T}(ICodec{T})"/>.
/// </summary>
/// <remarks>Implementations must be thread-safe: several processes may encode and decode at once.</remarks>
public interface ICodec<T>
{
    /// <summary>A short name for messages and docs ("json", "binary").</summary>
    string Name { get; }

    /// <summary>Appends the encoding of <paramref name="items"/> to <paramref name="output"/>.</summary>
    void Encode(ReadOnlySpan<T> items, IBufferWriter<byte> output);

    /// <summary>Decodes exactly <paramref name="count"/> items from <paramref name="data"/>, which holds one batch.</summary>
    /// <exception cref="Exception">Any exception: the data is not a valid batch (the runtime names the stream and process).</exception>
    T[] Decode(ReadOnlySpan<byte> data, int count);
}
