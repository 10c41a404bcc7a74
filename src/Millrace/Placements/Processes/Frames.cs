using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;

namespace Millrace.Placements.Processes;

/// <summary>
/// Frames on a data connection between two OS processes (little-endian):
/// <c>u32 length</c> (of what follows), <c>u8 kind</c>, <c>u16 link</c>, <c>u32 count</c>, then the payload.
/// Hello: link = the sender's group, no payload. Data: count items of the link's stream, encoded by
/// the stream's codec. End: the link's writer has ended. Room: the reader took count items; the
/// writer may send that many more. Marker: count is a checkpoint's number; everything the writer sent
/// on the link before it belongs before the checkpoint.
/// </summary>
internal enum FrameKind : byte
{
    Hello = 1,
    Data = 2,
    End = 3,
    Room = 4,
    Marker = 5,
}

internal static class Frame
{
    public const int HeaderSize = 11;
    /// <summary>Anything larger is not a frame this runtime wrote.</summary>
    public const int MaxPayload = 256 << 20;

    public static void WriteHeader(Span<byte> span, FrameKind kind, int link, int count, int payloadLength)
    {
        BinaryPrimitives.WriteInt32LittleEndian(span, HeaderSize - 4 + payloadLength);
        span[4] = (byte)kind;
        BinaryPrimitives.WriteUInt16LittleEndian(span[5..], checked((ushort)link));
        BinaryPrimitives.WriteInt32LittleEndian(span[7..], count);
    }
}

/// <summary>A growable byte buffer of frames; codecs write payloads straight into it.</summary>
internal sealed class FrameBuffer : IBufferWriter<byte>
{
    private byte[] _data = new byte[128 * 1024];
    private int _length;

    public ReadOnlySpan<byte> Written => _data.AsSpan(0, _length);
    public int Length => _length;

    public void Clear() => _length = 0;

    public void Truncate(int length) => _length = length;

    /// <summary>Reserves room for a frame header; returns where the frame starts.</summary>
    public int StartFrame()
    {
        Ensure(Frame.HeaderSize);
        int start = _length;
        _length += Frame.HeaderSize;
        return start;
    }

    public Span<byte> FrameHeader(int start) => _data.AsSpan(start, Frame.HeaderSize);

    public void Advance(int count) => _length += count;

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _data.AsMemory(_length);
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _data.AsSpan(_length);
    }

    private void Ensure(int sizeHint)
    {
        int need = _length + Math.Max(sizeHint, 256);
        if (need <= _data.Length) return;
        Array.Resize(ref _data, Math.Max(need, _data.Length * 2));
    }
}

/// <summary>
/// One socket between two OS processes of a run. Frames are gathered in a send buffer and leave
/// together (one system call for many batches) when it is full or when the writer flushes: before
/// it waits for anything. Frames come in on a reader thread.
/// </summary>
internal sealed class Connection : IDisposable
{
    /// <summary>Gathered frames leave once they reach this size.</summary>
    private const int SendThreshold = 64 * 1024;

    private readonly Socket _socket;
    private readonly object _sendLock = new();
    private readonly FrameBuffer _buffer = new();

    public Connection(Socket socket) => _socket = socket;

    /// <summary>Sends a frame without payload (Hello, End, Room) at once, with whatever is gathered before it.</summary>
    public void Send(FrameKind kind, int link, int count)
    {
        lock (_sendLock)
        {
            int start = _buffer.StartFrame();
            Frame.WriteHeader(_buffer.FrameHeader(start), kind, link, count, 0);
            SendGathered();
        }
    }

    /// <summary>Encodes a batch with its stream's codec and gathers it as one Data frame.</summary>
    public void SendData(int link, BatchCodec codec, Array items, int count)
    {
        lock (_sendLock)
        {
            int start = _buffer.StartFrame();
            try
            {
                codec.Encode(items, count, _buffer);
            }
            catch
            {
                // Leave no half frame behind for the next writer on this connection.
                _buffer.Truncate(start);
                throw;
            }
            Frame.WriteHeader(_buffer.FrameHeader(start), FrameKind.Data, link, count, _buffer.Length - start - Frame.HeaderSize);
            if (_buffer.Length >= SendThreshold) SendGathered();
        }
    }

    /// <summary>Sends whatever frames are gathered.</summary>
    public void Flush()
    {
        lock (_sendLock)
        {
            if (_buffer.Length > 0) SendGathered();
        }
    }

    private void SendGathered()
    {
        SendAll(_buffer.Written);
        _buffer.Clear();
    }

    private void SendAll(ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            int sent = _socket.Send(bytes, SocketFlags.None);
            bytes = bytes[sent..];
        }
    }

    /// <summary>Reads frames until the peer closes the connection (returns) or sends something that is not a frame (throws).</summary>
    public void ReadFrames(Action<FrameKind, int, int, ReadOnlySpan<byte>> onFrame)
    {
        byte[] buffer = new byte[1 << 20];
        int start = 0, end = 0;
        while (true)
        {
            while (end - start >= 4)
            {
                int length = BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(start));
                if (length < Frame.HeaderSize - 4 || length > Frame.MaxPayload + Frame.HeaderSize - 4)
                    throw new InvalidDataException($"A frame announces {length} bytes, which no Millrace frame has: the connection carries something else, or is corrupt.");
                if (end - start < 4 + length) break;
                var kind = (FrameKind)buffer[start + 4];
                if (kind is < FrameKind.Hello or > FrameKind.Marker)
                    throw new InvalidDataException($"A frame has kind {(byte)kind}, which no Millrace frame has: the connection is corrupt.");
                int link = BinaryPrimitives.ReadUInt16LittleEndian(buffer.AsSpan(start + 5));
                int count = BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(start + 7));
                onFrame(kind, link, count, buffer.AsSpan(start + Frame.HeaderSize, length - (Frame.HeaderSize - 4)));
                start += 4 + length;
            }
            if (start == end)
            {
                start = end = 0;
            }
            else if (buffer.Length - end < 64 * 1024)
            {
                int pending = end - start;
                int needed = end - start >= 4 ? 4 + BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(start)) : 4;
                byte[] target = needed > buffer.Length ? new byte[Math.Max(needed, buffer.Length * 2)] : buffer;
                Buffer.BlockCopy(buffer, start, target, 0, pending);
                buffer = target;
                start = 0;
                end = pending;
            }
            int read;
            try
            {
                read = _socket.Receive(buffer, end, buffer.Length - end, SocketFlags.None);
            }
            catch (SocketException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            if (read == 0) return;
            end += read;
        }
    }

    public void Dispose()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        _socket.Dispose();
    }
}
