using System.Buffers;
using System.Buffers.Binary;
using System.Linq.Expressions;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Millrace;

/// <summary>
/// The compact binary codec, little-endian throughout:
/// primitives (bool, byte, sbyte, short, ushort, int, uint, long, ulong, float, double, char) as
/// their raw bytes, one after the other; strings as an int32 byte count (-1 for null) and UTF-8
/// bytes; byte arrays as an int32 length (-1 for null) and the bytes; simple records (one public
/// constructor whose parameters match readable properties of these types, nested records allowed)
/// as their constructor's parameters in order, with no header.
/// </summary>
public static class BinaryCodec
{
    /// <summary>Whether the binary codec can carry <paramref name="type"/>.</summary>
    public static bool Supports(Type type) => Field.Supports(type, new HashSet<Type>());

    /// <summary>The binary codec for <typeparamref name="T"/>.</summary>
    /// <exception cref="NotSupportedException">The type is not a primitive, string, byte array or simple record.</exception>
    public static ICodec<T> For<T>()
    {
        if (PrimitiveCodecFor<T>() is { } primitive) return primitive;
        if (!Supports(typeof(T)))
            throw new NotSupportedException(
                $"The binary codec cannot carry {typeof(T).Name}: use primitives, strings, byte arrays or records whose constructor parameters are such types.");
        return new FieldCodec<T>();
    }

    // Each primitive named, not a generic type made at run time: a program published with Native AOT has their code.
    private static ICodec<T>? PrimitiveCodecFor<T>() =>
        typeof(T) == typeof(bool) ? (ICodec<T>)(object)new PrimitiveCodec<bool>()
        : typeof(T) == typeof(byte) ? (ICodec<T>)(object)new PrimitiveCodec<byte>()
        : typeof(T) == typeof(sbyte) ? (ICodec<T>)(object)new PrimitiveCodec<sbyte>()
        : typeof(T) == typeof(short) ? (ICodec<T>)(object)new PrimitiveCodec<short>()
        : typeof(T) == typeof(ushort) ? (ICodec<T>)(object)new PrimitiveCodec<ushort>()
        : typeof(T) == typeof(int) ? (ICodec<T>)(object)new PrimitiveCodec<int>()
        : typeof(T) == typeof(uint) ? (ICodec<T>)(object)new PrimitiveCodec<uint>()
        : typeof(T) == typeof(long) ? (ICodec<T>)(object)new PrimitiveCodec<long>()
        : typeof(T) == typeof(ulong) ? (ICodec<T>)(object)new PrimitiveCodec<ulong>()
        : typeof(T) == typeof(float) ? (ICodec<T>)(object)new PrimitiveCodec<float>()
        : typeof(T) == typeof(double) ? (ICodec<T>)(object)new PrimitiveCodec<double>()
        : typeof(T) == typeof(char) ? (ICodec<T>)(object)new PrimitiveCodec<char>()
        : null;

    private static class Primitive
    {
        private static readonly HashSet<Type> Types = new()
        {
            typeof(bool), typeof(byte), typeof(sbyte), typeof(short), typeof(ushort), typeof(int), typeof(uint),
            typeof(long), typeof(ulong), typeof(float), typeof(double), typeof(char),
        };

        public static bool Is(Type type) => Types.Contains(type);
    }

    /// <summary>Whole batches of a primitive: a block copy each way.</summary>
    private sealed class PrimitiveCodec<T> : ICodec<T>, IDecodesInto<T> where T : unmanaged
    {
        public string Name => "binary";

        public void Encode(ReadOnlySpan<T> items, IBufferWriter<byte> output)
        {
            ReadOnlySpan<byte> bytes = MemoryMarshal.AsBytes(items);
            bytes.CopyTo(output.GetSpan(bytes.Length));
            output.Advance(bytes.Length);
        }

        public T[] Decode(ReadOnlySpan<byte> data, int count)
        {
            long expected = (long)count * Unsafe.SizeOf<T>();
            if (count < 0 || data.Length != expected)
                throw new InvalidDataException($"A batch of {count} {typeof(T).Name} needs {expected} bytes; the frame has {data.Length}.");
            var items = new T[count];
            data.CopyTo(MemoryMarshal.AsBytes(items.AsSpan()));
            return items;
        }

        public T[] Decode(ReadOnlySpan<byte> data, int count, T[] into)
        {
            if (into.Length != count) return Decode(data, count);
            long expected = (long)count * Unsafe.SizeOf<T>();
            if (data.Length != expected)
                throw new InvalidDataException($"A batch of {count} {typeof(T).Name} needs {expected} bytes; the frame has {data.Length}.");
            data.CopyTo(MemoryMarshal.AsBytes(into.AsSpan()));
            return into;
        }
    }

    /// <summary>Strings, byte arrays and records, item by item, with compiled readers and writers.</summary>
    private sealed class FieldCodec<T> : ICodec<T>
    {
        private static readonly Action<T, Writer> Write = Field.CompileWriter<T>();
        private static readonly Func<Reader, T> Read = Field.CompileReader<T>();

        public string Name => "binary";

        public void Encode(ReadOnlySpan<T> items, IBufferWriter<byte> output)
        {
            var writer = new Writer(output);
            foreach (T item in items) Write(item, writer);
        }

        public T[] Decode(ReadOnlySpan<byte> data, int count)
        {
            // Each item takes at least one byte: a count beyond the bytes is a bad frame, not an array to allocate.
            if (count < 0 || count > data.Length)
                throw new InvalidDataException($"A batch of {count} {typeof(T).Name} cannot fit in {data.Length} bytes.");
            var reader = new Reader(data.ToArray());
            var items = new T[count];
            for (int i = 0; i < count; i++) items[i] = Read(reader);
            if (reader.Remaining != 0)
                throw new InvalidDataException($"{reader.Remaining} bytes are left over after {count} items of {typeof(T).Name}.");
            return items;
        }
    }

    /// <summary>Appends little-endian values to a buffer writer.</summary>
    internal sealed class Writer
    {
        private readonly IBufferWriter<byte> _output;

        public Writer(IBufferWriter<byte> output) => _output = output;

        public void Raw<T>(T value) where T : unmanaged
        {
            Span<byte> span = _output.GetSpan(Unsafe.SizeOf<T>());
            MemoryMarshal.Write(span, in value);
            _output.Advance(Unsafe.SizeOf<T>());
        }

        public void String(string? value)
        {
            if (value is null)
            {
                Raw(-1);
                return;
            }
            int length;
            try
            {
                length = Codecs.Utf16.Strict.GetByteCount(value);
            }
            catch (EncoderFallbackException)
            {
                throw Codecs.Utf16.Unpaired(value, Math.Max(0, Codecs.Utf16.FirstUnpaired(value)));
            }
            Raw(length);
            Span<byte> span = _output.GetSpan(length);
            Codecs.Utf16.Strict.GetBytes(value, span);
            _output.Advance(length);
        }

        public void Bytes(byte[]? value)
        {
            if (value is null)
            {
                Raw(-1);
                return;
            }
            Raw(value.Length);
            value.CopyTo(_output.GetSpan(value.Length));
            _output.Advance(value.Length);
        }
    }

    /// <summary>Reads little-endian values, checking every length against what is left.</summary>
    internal sealed class Reader
    {
        private readonly byte[] _data;
        private int _position;

        public Reader(byte[] data) => _data = data;

        public int Remaining => _data.Length - _position;

        public T Raw<T>() where T : unmanaged
        {
            int size = Unsafe.SizeOf<T>();
            if (Remaining < size) throw new InvalidDataException($"The batch ends inside a {typeof(T).Name} (at byte {_position}).");
            T value = MemoryMarshal.Read<T>(_data.AsSpan(_position, size));
            _position += size;
            return value;
        }

        public string? String()
        {
            int length = Length("string");
            if (length < 0) return null;
            string value;
            try
            {
                value = Codecs.Utf16.Strict.GetString(_data, _position, length);
            }
            catch (DecoderFallbackException e)
            {
                throw new InvalidDataException($"The string at byte {_position} is not valid UTF-8 (byte {e.Index} of it).", e);
            }
            _position += length;
            return value;
        }

        public byte[]? Bytes()
        {
            int length = Length("byte array");
            if (length < 0) return null;
            byte[] value = _data.AsSpan(_position, length).ToArray();
            _position += length;
            return value;
        }

        private int Length(string what)
        {
            int length = Raw<int>();
            if (length < -1 || length > Remaining)
                throw new InvalidDataException($"A {what} length of {length} at byte {_position - 4} does not fit the {Remaining} bytes left.");
            return length;
        }
    }

    /// <summary>Builds per-type readers and writers as expression trees, once per type.</summary>
    private static class Field
    {
        public static bool Supports(Type type, HashSet<Type> visiting)
        {
            if (Primitive.Is(type) || type == typeof(string) || type == typeof(byte[])) return true;
            if (!visiting.Add(type)) return false; // recursive records would never end
            try
            {
                return Constructor(type) is { } ctor && ctor.GetParameters().All(p => Property(type, p) is not null && Supports(p.ParameterType, visiting));
            }
            finally
            {
                visiting.Remove(type);
            }
        }

        private static ConstructorInfo? Constructor(Type type)
        {
            if (type.IsAbstract || type.IsInterface || type.IsArray || type.IsPointer) return null;
            // Nullable<T> looks like a record of one Value, but its null has no Value to write: JSON carries it.
            if (Nullable.GetUnderlyingType(type) is not null) return null;
            ConstructorInfo[] ctors = type.GetConstructors();
            return ctors.Length == 1 && ctors[0].GetParameters().Length > 0 ? ctors[0] : null;
        }

        private static PropertyInfo? Property(Type type, ParameterInfo parameter) =>
            type.GetProperties(BindingFlags.Public | BindingFlags.Instance).FirstOrDefault(p =>
                string.Equals(p.Name, parameter.Name, StringComparison.OrdinalIgnoreCase) && p.PropertyType == parameter.ParameterType && p.CanRead);

        public static Action<T, Writer> CompileWriter<T>()
        {
            ParameterExpression item = Expression.Parameter(typeof(T), "item");
            ParameterExpression writer = Expression.Parameter(typeof(Writer), "writer");
            return Expression.Lambda<Action<T, Writer>>(WriteValue(item, writer), item, writer).Compile();
        }

        public static Func<Reader, T> CompileReader<T>()
        {
            ParameterExpression reader = Expression.Parameter(typeof(Reader), "reader");
            return Expression.Lambda<Func<Reader, T>>(ReadValue(typeof(T), reader), reader).Compile();
        }

        private static Expression WriteValue(Expression value, ParameterExpression writer)
        {
            Type type = value.Type;
            if (Primitive.Is(type)) return Expression.Call(writer, nameof(Writer.Raw), new[] { type }, value);
            if (type == typeof(string)) return Expression.Call(writer, nameof(Writer.String), null, value);
            if (type == typeof(byte[])) return Expression.Call(writer, nameof(Writer.Bytes), null, value);
            ConstructorInfo ctor = Constructor(type)!;
            var writes = ctor.GetParameters().Select(p => WriteValue(Expression.Property(value, Property(type, p)!), writer)).ToList();
            Expression body = Expression.Block(writes);
            if (type.IsValueType) return body;
            // A null record would lose its identity: refuse it clearly instead.
            return Expression.IfThenElse(
                Expression.Equal(value, Expression.Constant(null, type)),
                Expression.Throw(Expression.New(
                    typeof(InvalidDataException).GetConstructor(new[] { typeof(string) })!,
                    Expression.Constant($"The binary codec cannot carry a null {type.Name}; use the JSON codec for nullable records."))),
                body);
        }

        private static Expression ReadValue(Type type, ParameterExpression reader)
        {
            if (Primitive.Is(type)) return Expression.Call(reader, nameof(Reader.Raw), new[] { type });
            if (type == typeof(string)) return Expression.Call(reader, nameof(Reader.String), null);
            if (type == typeof(byte[])) return Expression.Call(reader, nameof(Reader.Bytes), null);
            ConstructorInfo ctor = Constructor(type)!;
            // Arguments are evaluated left to right, which is the order they were written in.
            return Expression.New(ctor, ctor.GetParameters().Select(p => ReadValue(p.ParameterType, reader)));
        }
    }
}
