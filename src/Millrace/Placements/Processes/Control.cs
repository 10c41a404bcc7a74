using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Millrace.Placements.Processes;

/// <summary>
/// One line of JSON on the control connection between the coordinator and a child OS process.
/// Child to coordinator: hello, ready, poke, status, blocked, halt, error, stats (every 250 ms), final.
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

    /// <summary>Seconds spent handling items (stats and final reports).</summary>
    public double Busy { get; set; }

    /// <summary>Items waiting in this process's queue of each input stream (stats reports).</summary>
    public Dictionary<string, long>? Queued { get; set; }
}

/// <summary>
/// Control messages as JSON, written and read by hand with Utf8JsonWriter and Utf8JsonReader:
/// the serializer's start-up (tens of milliseconds of type metadata in every child OS process) is
/// the largest single cost before a child can say hello. Property names are camelCase; defaults
/// are left out.
/// </summary>
internal static class ControlJson
{
    public static byte[] Write(ControlMessage m)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("type", m.Type);
            if (m.Group != 0) w.WriteNumber("group", m.Group);
            if (m.Pid != 0) w.WriteNumber("pid", m.Pid);
            if (m.Seq != 0) w.WriteNumber("seq", m.Seq);
            if (m.Process != 0) w.WriteNumber("process", m.Process);
            if (m.Hard) w.WriteBoolean("hard", true);
            Text(w, "signature", m.Signature);
            Text(w, "name", m.Name);
            Text(w, "reason", m.Reason);
            Text(w, "stream", m.Stream);
            if (m.ItemIndex is { } index) w.WriteNumber("itemIndex", index);
            Text(w, "item", m.Item);
            Text(w, "message", m.Message);
            Text(w, "exception", m.Exception);
            Text(w, "text", m.Text);
            if (m.Processes is { } processes)
            {
                w.WriteStartArray("processes");
                foreach (ProcessReport p in processes)
                {
                    w.WriteStartObject();
                    if (p.Index != 0) w.WriteNumber("index", p.Index);
                    w.WriteString("state", p.State.ToString());
                    if (p.Sent != 0) w.WriteNumber("sent", p.Sent);
                    if (p.Received != 0) w.WriteNumber("received", p.Received);
                    if (p.ItemsIn != 0) w.WriteNumber("itemsIn", p.ItemsIn);
                    if (p.Outputs is { } outputs)
                    {
                        w.WriteStartObject("outputs");
                        foreach (var (stream, count) in outputs) w.WriteNumber(stream, count);
                        w.WriteEndObject();
                    }
                    if (p.Busy != 0) w.WriteNumber("busy", p.Busy);
                    if (p.Queued is { } queued)
                    {
                        w.WriteStartObject("queued");
                        foreach (var (stream, count) in queued) w.WriteNumber(stream, count);
                        w.WriteEndObject();
                    }
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static void Text(Utf8JsonWriter w, string name, string? value)
    {
        if (value is not null) w.WriteString(name, value);
    }

    public static ControlMessage Read(ReadOnlySpan<byte> json)
    {
        var r = new Utf8JsonReader(json);
        var m = new ControlMessage();
        Expect(ref r, JsonTokenType.StartObject);
        while (Next(ref r) == JsonTokenType.PropertyName)
        {
            string name = r.GetString()!;
            Next(ref r);
            switch (name)
            {
                case "type": m.Type = r.GetString() ?? ""; break;
                case "group": m.Group = r.GetInt32(); break;
                case "pid": m.Pid = r.GetInt32(); break;
                case "seq": m.Seq = r.GetInt32(); break;
                case "process": m.Process = r.GetInt32(); break;
                case "hard": m.Hard = r.GetBoolean(); break;
                case "signature": m.Signature = r.GetString(); break;
                case "name": m.Name = r.GetString(); break;
                case "reason": m.Reason = r.GetString(); break;
                case "stream": m.Stream = r.GetString(); break;
                case "itemIndex": m.ItemIndex = r.TokenType == JsonTokenType.Null ? null : r.GetInt64(); break;
                case "item": m.Item = r.GetString(); break;
                case "message": m.Message = r.GetString(); break;
                case "exception": m.Exception = r.GetString(); break;
                case "text": m.Text = r.GetString(); break;
                case "processes": m.Processes = ReadProcesses(ref r); break;
                default: r.Skip(); break;
            }
        }
        return m;
    }

    private static List<ProcessReport> ReadProcesses(ref Utf8JsonReader r)
    {
        if (r.TokenType != JsonTokenType.StartArray) throw new JsonException("'processes' is not an array.");
        var list = new List<ProcessReport>();
        while (Next(ref r) == JsonTokenType.StartObject)
        {
            var p = new ProcessReport();
            while (Next(ref r) == JsonTokenType.PropertyName)
            {
                string name = r.GetString()!;
                Next(ref r);
                switch (name)
                {
                    case "index": p.Index = r.GetInt32(); break;
                    case "state": p.State = Enum.Parse<RunnerState>(r.GetString()!); break;
                    case "sent": p.Sent = r.GetInt64(); break;
                    case "received": p.Received = r.GetInt64(); break;
                    case "itemsIn": p.ItemsIn = r.GetInt64(); break;
                    case "outputs": p.Outputs = ReadCounts(ref r, name); break;
                    case "queued": p.Queued = ReadCounts(ref r, name); break;
                    case "busy": p.Busy = r.GetDouble(); break;
                    default: r.Skip(); break;
                }
            }
            list.Add(p);
        }
        return list;
    }

    private static Dictionary<string, long> ReadCounts(ref Utf8JsonReader r, string name)
    {
        if (r.TokenType != JsonTokenType.StartObject) throw new JsonException($"'{name}' is not an object.");
        var counts = new Dictionary<string, long>();
        while (Next(ref r) == JsonTokenType.PropertyName)
        {
            string stream = r.GetString()!;
            Next(ref r);
            counts[stream] = r.GetInt64();
        }
        return counts;
    }

    private static JsonTokenType Next(ref Utf8JsonReader r) =>
        r.Read() ? r.TokenType : throw new JsonException("The control message ends too early.");

    private static void Expect(ref Utf8JsonReader r, JsonTokenType type)
    {
        if (Next(ref r) != type) throw new JsonException($"Expected {type}, found {r.TokenType}.");
    }
}

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
        byte[] line = ControlJson.Write(message);
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
        return ControlJson.Read(Encoding.UTF8.GetBytes(line));
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
