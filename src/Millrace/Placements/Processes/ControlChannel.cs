using System.Net.Sockets;
using System.Text;
using Millrace.Control;

namespace Millrace.Placements.Processes;

/// <summary>The control connection: JSON lines, sent under a lock, read by one reader.</summary>
internal sealed class ControlChannel : IDisposable
{

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly StreamReader _reader;
    private readonly object _sendLock = new();

    public ControlChannel(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _reader = new StreamReader(_stream, new UTF8Encoding(false));
    }

    public static ControlChannel Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(path));
        return new ControlChannel(socket);
    }

    /// <summary>Sends one message; false if the other side is gone.</summary>
    public bool Send(ControlMessage message)
    {
        byte[] line = ControlCodec.Write(message);
        lock (_sendLock)
        {
            try
            {
                _stream.Write(line);
                _stream.WriteByte((byte)'\n');
                return true;
            }
            catch (IOException)
            {
                return false;
            }
            catch (ObjectDisposedException)
            {
                return false;
            }
        }
    }

    /// <summary>The next message, or null when the other side has closed the connection.</summary>
    public async Task<ControlMessage?> ReadAsync(CancellationToken cancellationToken = default)
    {
        string? line;
        try
        {
            line = await _reader.ReadLineAsync(cancellationToken);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return null;
        }
        return Decode(line);
    }

    /// <summary>
    /// Blocking read for the child's control thread (its own thread: a blocking socket read, not an async one waited on,
    /// which spins first and costs two thread-pool hand-offs per message).
    /// </summary>
    public ControlMessage? Read()
    {
        string? line;
        try
        {
            line = _reader.ReadLine();
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return null;
        }
        return Decode(line);
    }

    private static ControlMessage? Decode(string? line) => line is null ? null : ControlCodec.Read(Encoding.UTF8.GetBytes(line));

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
        _reader.Dispose();
    }
}
