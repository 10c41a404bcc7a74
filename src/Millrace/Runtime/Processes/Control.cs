using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Millrace.Runtime.Processes;

/// <summary>
/// One line of JSON on the control connection between the coordinator and a child OS process.
/// Child to coordinator: hello, ready, poke, status, blocked, halt, error, final.
/// Coordinator to child: status, describe-blocked, force-end, stop.
/// </summary>
internal sealed class ControlMessage
{
    public string Type { get; set; } = "";
    public int Group { get; set; }
    public int Pid { get; set; }
    public int Seq { get; set; }
    public int Process { get; set; }
    public bool Hard { get; set; }
    public string? Signature { get; set; }
    public string? Name { get; set; }
    public string? Reason { get; set; }
    public string? Stream { get; set; }
    public long? ItemIndex { get; set; }
    public string? Item { get; set; }
    public string? Message { get; set; }
    public string? Exception { get; set; }
    public string? Text { get; set; }
    public List<ProcessReport>? Processes { get; set; }
}

/// <summary>One process's status and counts, as a child reports them.</summary>
internal sealed class ProcessReport
{
    public int Index { get; set; }
    public RunnerState State { get; set; }
    public long Sent { get; set; }
    public long Received { get; set; }
    public long ItemsIn { get; set; }
    public Dictionary<string, long>? Outputs { get; set; }
}

/// <summary>Serialization code generated at build time: children start faster without reflection.</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingDefault, UseStringEnumConverter = true)]
[JsonSerializable(typeof(ControlMessage))]
internal sealed partial class ControlJson : JsonSerializerContext;

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
        byte[] line = JsonSerializer.SerializeToUtf8Bytes(message, ControlJson.Default.ControlMessage);
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
        catch (IOException)
        {
            return null;
        }
        catch (ObjectDisposedException)
        {
            return null;
        }
        if (line is null) return null;
        return JsonSerializer.Deserialize(line, ControlJson.Default.ControlMessage)
            ?? throw new InvalidDataException("A control message was the JSON literal null.");
    }

    /// <summary>Blocking read for the child's control thread.</summary>
    public ControlMessage? Read() => ReadAsync().GetAwaiter().GetResult();

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
