using System.Buffers;
using System.Text.Json;

namespace Millrace.Control;

/// <summary>
/// Control messages as JSON objects, <c>{"type":"halt","process":"db","reason":"..."}</c>, written and
/// read by hand with Utf8JsonWriter and Utf8JsonReader: the serializer's start-up (tens of
/// milliseconds of type metadata in every child OS process) is the largest single cost before a
/// child can say hello. Names are camelCase; defaults are left out. Reading never throws anything
/// but <see cref="InvalidDataException"/>, naming what was wrong.
/// </summary>
public static class ControlCodec
{
    private static readonly Dictionary<Type, string> Names = new()
    {
        [typeof(Hello)] = "hello",
        [typeof(Ready)] = "ready",
        [typeof(Poke)] = "poke",
        [typeof(StatusQuery)] = "status?",
        [typeof(StatusReport)] = "status",
        [typeof(BlockedQuery)] = "blocked?",
        [typeof(BlockedReport)] = "blocked",
        [typeof(HaltMessage)] = "halt",
        [typeof(FailureMessage)] = "error",
        [typeof(StopMessage)] = "stop",
        [typeof(ForceEnd)] = "force-end",
        [typeof(StatsReport)] = "stats",
        [typeof(FinalReport)] = "final",
        [typeof(CyclesClosed)] = "closed",
        [typeof(ReplicaMessage)] = "replica",
        [typeof(CheckpointRequest)] = "checkpoint?",
        [typeof(CheckpointStored)] = "checkpoint",
        [typeof(Rollback)] = "rollback",
    };

    /// <summary>The message as UTF-8 JSON.</summary>
    public static byte[] Write(ControlMessage message)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("type", Names[message.GetType()]);
            Text(w, "from", message.From);
            switch (message)
            {
                case Hello m:
                    w.WriteNumber("group", m.Group);
                    w.WriteNumber("pid", m.Pid);
                    break;
                case StatusQuery m:
                    w.WriteNumber("seq", m.Seq);
                    break;
                case StatusReport m:
                    w.WriteNumber("seq", m.Seq);
                    Reports(w, m.Processes);
                    break;
                case BlockedQuery m:
                    w.WriteNumber("seq", m.Seq);
                    break;
                case BlockedReport m:
                    w.WriteNumber("seq", m.Seq);
                    w.WriteString("text", m.Text);
                    break;
                case HaltMessage m:
                    w.WriteString("process", m.Process);
                    Text(w, "reason", m.Reason);
                    break;
                case FailureMessage m:
                    w.WriteString("process", m.Process);
                    Text(w, "stream", m.Stream);
                    if (m.ItemIndex is { } index) w.WriteNumber("itemIndex", index);
                    Text(w, "item", m.Item);
                    w.WriteString("message", m.Message);
                    Text(w, "exception", m.ExceptionType);
                    if (m.Group >= 0) w.WriteNumber("group", m.Group);
                    break;
                case StopMessage m:
                    if (m.Hard) w.WriteBoolean("hard", true);
                    break;
                case ForceEnd m:
                    w.WriteNumber("index", m.Process);
                    break;
                case StatsReport m:
                    Reports(w, m.Processes);
                    break;
                case FinalReport m:
                    Reports(w, m.Processes);
                    break;
                case CheckpointRequest m:
                    w.WriteNumber("checkpoint", m.Checkpoint);
                    if (m.Generation != 0) w.WriteNumber("generation", m.Generation);
                    break;
                case CheckpointStored m:
                    w.WriteNumber("checkpoint", m.Checkpoint);
                    w.WriteNumber("index", m.Process);
                    if (m.Generation != 0) w.WriteNumber("generation", m.Generation);
                    break;
                case Rollback m:
                    w.WriteNumber("generation", m.Generation);
                    w.WriteNumber("checkpoint", m.Checkpoint);
                    break;
                case ReplicaMessage m:
                    w.WriteString("step", m.Step.ToString());
                    w.WriteNumber("index", m.Process);
                    w.WriteString("instance", m.Instance);
                    if (m.Round != 0) w.WriteNumber("round", m.Round);
                    if (m.Ok) w.WriteBoolean("ok", true);
                    if (m.Lane != 0) w.WriteNumber("lane", m.Lane);
                    if (m.Writer != 0) w.WriteNumber("writer", m.Writer);
                    break;
            }
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static void Text(Utf8JsonWriter w, string name, string? value)
    {
        if (value is not null) w.WriteString(name, value);
    }

    private static void Reports(Utf8JsonWriter w, IReadOnlyList<ProcessReport> reports)
    {
        w.WriteStartArray("processes");
        foreach (ProcessReport p in reports)
        {
            w.WriteStartObject();
            if (p.Index != 0) w.WriteNumber("index", p.Index);
            w.WriteString("state", p.State.Name());
            if (p.Sent != 0) w.WriteNumber("sent", p.Sent);
            if (p.Received != 0) w.WriteNumber("received", p.Received);
            if (p.ItemsIn != 0) w.WriteNumber("itemsIn", p.ItemsIn);
            Counts(w, "outputs", p.Outputs);
            if (p.Busy != 0) w.WriteNumber("busy", p.Busy);
            Counts(w, "queued", p.Queued);
            Counts(w, "capacity", p.Capacity);
            if (p.Pid != 0) w.WriteNumber("pid", p.Pid);
            if (p.Skipped != 0) w.WriteNumber("skipped", p.Skipped);
            if (p.DeadLettered != 0) w.WriteNumber("deadLettered", p.DeadLettered);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static void Counts(Utf8JsonWriter w, string name, IReadOnlyDictionary<string, long>? counts)
    {
        if (counts is null) return;
        w.WriteStartObject(name);
        foreach (var (key, count) in counts) w.WriteNumber(key, count);
        w.WriteEndObject();
    }

    /// <summary>Reads one message.</summary>
    /// <exception cref="InvalidDataException">It is not a control message this runtime writes: not JSON, a field of the wrong type, an unknown type, a required field missing.</exception>
    public static ControlMessage Read(ReadOnlySpan<byte> json)
    {
        try
        {
            return ReadMessage(json);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or ArgumentException or OverflowException)
        {
            throw new InvalidDataException($"Not a valid control message ({json.Length} bytes): {e.Message}", e);
        }
    }

    private static ControlMessage ReadMessage(ReadOnlySpan<byte> json)
    {
        var r = new Utf8JsonReader(json);
        if (Next(ref r) != JsonTokenType.StartObject) throw new JsonException($"Expected an object, found {r.TokenType}.");
        string? type = null, from = null, reason = null, stream = null, item = null, message = null, exception = null, text = null, process = null;
        string? instance = null, step = null;
        int group = -1, pid = 0, seq = 0, index = 0, round = 0, lane = 0, writer = 0;
        long? itemIndex = null;
        long checkpoint = 0, generation = 0;
        bool hard = false, ok = false;
        List<ProcessReport>? reports = null;
        while (Next(ref r) == JsonTokenType.PropertyName)
        {
            string name = r.GetString()!;
            Next(ref r);
            try
            {
                ReadField(ref r, name);
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException)
            {
                throw new JsonException($"'{name}' is not what a control message has there ({r.TokenType}): {e.Message}", e);
            }
        }

        void ReadField(ref Utf8JsonReader r, string name)
        {
            switch (name)
            {
                case "type": type = r.GetString(); break;
                case "from": from = r.GetString(); break;
                case "group": group = r.GetInt32(); break;
                case "pid": pid = r.GetInt32(); break;
                case "seq": seq = r.GetInt32(); break;
                case "index": index = r.GetInt32(); break;
                case "hard": hard = r.GetBoolean(); break;
                case "process": process = r.GetString(); break;
                case "reason": reason = r.GetString(); break;
                case "stream": stream = r.GetString(); break;
                case "itemIndex": itemIndex = r.TokenType == JsonTokenType.Null ? null : r.GetInt64(); break;
                case "item": item = r.GetString(); break;
                case "message": message = r.GetString(); break;
                case "exception": exception = r.GetString(); break;
                case "text": text = r.GetString(); break;
                case "step": step = r.GetString(); break;
                case "instance": instance = r.GetString(); break;
                case "round": round = r.GetInt32(); break;
                case "ok": ok = r.GetBoolean(); break;
                case "lane": lane = r.GetInt32(); break;
                case "writer": writer = r.GetInt32(); break;
                case "checkpoint": checkpoint = r.GetInt64(); break;
                case "generation": generation = r.GetInt64(); break;
                case "processes": reports = ReadReports(ref r); break;
                default: r.Skip(); break;
            }
        }
        if (r.TokenType != JsonTokenType.EndObject) throw new JsonException($"Expected a property name, found {r.TokenType}.");
        ControlMessage result = type switch
        {
            "hello" => new Hello(group, pid),
            "ready" => new Ready(),
            "poke" => new Poke(),
            "status?" => new StatusQuery(seq),
            "status" => new StatusReport(seq, reports ?? Missing<List<ProcessReport>>("processes")),
            "blocked?" => new BlockedQuery(seq),
            "blocked" => new BlockedReport(seq, text ?? ""),
            "halt" => new HaltMessage(process ?? Missing<string>("process"), reason),
            "error" => new FailureMessage(process ?? Missing<string>("process"), stream, itemIndex, item, message ?? Missing<string>("message"), exception, group),
            "stop" => new StopMessage(hard),
            "force-end" => new ForceEnd(index),
            "stats" => new StatsReport(reports ?? Missing<List<ProcessReport>>("processes")),
            "final" => new FinalReport(reports ?? Missing<List<ProcessReport>>("processes")),
            "closed" => new CyclesClosed(),
            "checkpoint?" => new CheckpointRequest(checkpoint, generation),
            "checkpoint" => new CheckpointStored(checkpoint, index, generation),
            "rollback" => new Rollback(generation, checkpoint),
            "replica" => new ReplicaMessage(Parse<ReplicaStep>(step ?? Missing<string>("step")), index, instance ?? Missing<string>("instance"), round, ok, lane, writer),
            null => throw new JsonException("It has no type."),
            _ => throw new JsonException($"Its type '{type}' is not one this runtime knows."),
        };
        return result with { From = from };

        T Missing<T>(string field) => throw new JsonException($"A '{type}' message needs '{field}'.");
    }

    private static List<ProcessReport> ReadReports(ref Utf8JsonReader r)
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
                p = name switch
                {
                    "index" => p with { Index = r.GetInt32() },
                    "state" => p with { State = RunnerStates.Parse(r.GetString() ?? "") is { } state ? state : throw new JsonException($"'{r.GetString()}' is not a {nameof(RunnerState)}.") },
                    "sent" => p with { Sent = r.GetInt64() },
                    "received" => p with { Received = r.GetInt64() },
                    "itemsIn" => p with { ItemsIn = r.GetInt64() },
                    "outputs" => p with { Outputs = ReadCounts(ref r, name) },
                    "queued" => p with { Queued = ReadCounts(ref r, name) },
                    "capacity" => p with { Capacity = ReadCounts(ref r, name) },
                    "busy" => p with { Busy = r.GetDouble() },
                    "pid" => p with { Pid = r.GetInt32() },
                    "skipped" => p with { Skipped = r.GetInt64() },
                    "deadLettered" => p with { DeadLettered = r.GetInt64() },
                    _ => Skip(ref r, p),
                };
            }
            if (r.TokenType != JsonTokenType.EndObject) throw new JsonException($"Expected a property name, found {r.TokenType}.");
            list.Add(p);
        }
        if (r.TokenType != JsonTokenType.EndArray) throw new JsonException($"Expected a process report, found {r.TokenType}.");
        return list;
    }

    private static ProcessReport Skip(ref Utf8JsonReader r, ProcessReport p)
    {
        r.Skip();
        return p;
    }

    private static Dictionary<string, long> ReadCounts(ref Utf8JsonReader r, string name)
    {
        if (r.TokenType != JsonTokenType.StartObject) throw new JsonException($"'{name}' is not an object.");
        var counts = new Dictionary<string, long>();
        while (Next(ref r) == JsonTokenType.PropertyName)
        {
            string key = r.GetString()!;
            Next(ref r);
            counts[key] = r.GetInt64();
        }
        if (r.TokenType != JsonTokenType.EndObject) throw new JsonException($"Expected a count in '{name}', found {r.TokenType}.");
        return counts;
    }

    /// <summary>A name of <typeparamref name="T"/>, exactly: no numbers, no combinations.</summary>
    private static T Parse<T>(string name) where T : struct, Enum =>
        Enum.TryParse(name, out T value) && Enum.IsDefined(value) && value.ToString() == name
            ? value
            : throw new JsonException($"'{name}' is not a {typeof(T).Name}.");

    private static JsonTokenType Next(ref Utf8JsonReader r) =>
        r.Read() ? r.TokenType : throw new JsonException("The control message ends too early.");
}
