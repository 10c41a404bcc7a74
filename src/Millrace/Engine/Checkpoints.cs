using System.Text.Json;
using Millrace.State;

namespace Millrace.Engine;

/// <summary>One named state of a process, as bytes (JSON, the process's codec for state).</summary>
internal interface IStateSlot
{
    string Name { get; }
    Type Type { get; }
    byte[] Save();
    void Load(byte[] data);
}

internal sealed class StateSlot<T>(ProcessState<T> state) : IStateSlot
{
    public string Name => state.Name;
    public Type Type => typeof(T);

    public byte[] Save() => StateJson<T>.Save(state.Value);

    public void Load(byte[] data) => state.Value = StateJson<T>.Load(data);
}

/// <summary>
/// A state's JSON: what the JSON codec writes for its type. Counts and totals (long, int, finite doubles, bool)
/// are written and read directly, without starting the serializer (tens of milliseconds of CPU in every OS
/// process that saves one); the same text either way.
/// </summary>
internal static class StateJson<T>
{
    public static byte[] Save(T value)
    {
        switch (value)
        {
            case long l: return System.Text.Encoding.UTF8.GetBytes(l.ToString(System.Globalization.CultureInfo.InvariantCulture));
            case int i: return System.Text.Encoding.UTF8.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            case bool b: return b ? "true"u8.ToArray() : "false"u8.ToArray();
            case double d when double.IsFinite(d) && typeof(T) == typeof(double):
            {
                var buffer = new System.Buffers.ArrayBufferWriter<byte>(32);
                using (var w = new Utf8JsonWriter(buffer)) w.WriteNumberValue(d);
                return buffer.WrittenSpan.ToArray();
            }
            default: return JsonSerializer.SerializeToUtf8Bytes(value, JsonCodec<T>.Defaults);
        }
    }

    public static T Load(byte[] data)
    {
        if (typeof(T) == typeof(long) || typeof(T) == typeof(int) || typeof(T) == typeof(bool) || typeof(T) == typeof(double))
        {
            var reader = new Utf8JsonReader(data);
            if (reader.Read() && reader.TokenType is JsonTokenType.Number or JsonTokenType.True or JsonTokenType.False)
            {
                object value = typeof(T) == typeof(long) ? reader.GetInt64()
                    : typeof(T) == typeof(int) ? reader.GetInt32()
                    : typeof(T) == typeof(bool) ? reader.GetBoolean()
                    : reader.GetDouble();
                return (T)value;
            }
        }
        return JsonSerializer.Deserialize<T>(data, JsonCodec<T>.Defaults)!;
    }
}

/// <summary>State a built-in operator keeps in its own variables: saved and loaded through two functions.</summary>
internal sealed class KeptSlot<T>(string name, Func<T> save, Action<T> load) : IStateSlot
{
    public string Name => name;
    public Type Type => typeof(T);

    public byte[] Save() => JsonSerializer.SerializeToUtf8Bytes(save(), JsonCodec<T>.Defaults);

    public void Load(byte[] data) => load(JsonSerializer.Deserialize<T>(data, JsonCodec<T>.Defaults)!);
}

/// <summary>What one process stored for one checkpoint.</summary>
internal sealed class ProcessPart
{
    public int Version { get; set; } = CheckpointStore.FormatVersion;

    /// <summary>Each declared state, by name: its JSON.</summary>
    public Dictionary<string, byte[]> States { get; set; } = new();

    /// <summary>A source: how many items it had taken when it sent the checkpoint's markers.</summary>
    public long? Position { get; set; }

    /// <summary>Items that were on their way to it when it took its snapshot (received after it, before the marker on their link), per link.</summary>
    public List<ChannelPart> Channels { get; set; } = new();

    /// <summary>The process had ended (its final part): resumed, it ends again at once, without its completion action.</summary>
    public bool Ended { get; set; }

    // Written and read by hand: starting System.Text.Json's serializer costs every OS process that stores a part tens
    // of milliseconds of CPU, and even its writer's first use (its default escaping) several, on the path of a run's
    // end. The bytes are the serializer's own, escapes included (tests compare them).

    public byte[] ToJson()
    {
        var w = new JsonBytes(256);
        w.Raw("{\"Version\":"u8);
        w.Number(Version);
        w.Raw(",\"States\":{"u8);
        bool first = true;
        foreach (var (name, data) in States)
        {
            if (!first) w.Raw(","u8);
            first = false;
            w.String(name);
            w.Raw(":"u8);
            w.Base64(data);
        }
        w.Raw("},\"Position\":"u8);
        if (Position is { } position) w.Number(position);
        else w.Raw("null"u8);
        w.Raw(",\"Channels\":["u8);
        for (int c = 0; c < Channels.Count; c++)
        {
            ChannelPart channel = Channels[c];
            w.Raw(c == 0 ? "{\"Stream\":"u8 : ",{\"Stream\":"u8);
            w.String(channel.Stream);
            w.Raw(",\"Writer\":"u8);
            w.Number(channel.Writer);
            w.Raw(",\"Batches\":["u8);
            for (int b = 0; b < channel.Batches.Count; b++)
            {
                if (b > 0) w.Raw(","u8);
                w.Base64(channel.Batches[b]);
            }
            w.Raw("]}"u8);
        }
        w.Raw("],\"Ended\":"u8);
        w.Raw(Ended ? "true"u8 : "false"u8);
        w.Raw("}"u8);
        return w.ToArray();
    }

    /// <exception cref="InvalidDataException">The bytes are not a part (named by <paramref name="where"/>).</exception>
    public static ProcessPart FromJson(byte[] json, string where)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(json);
            JsonElement root = document.RootElement;
            var part = new ProcessPart { Version = root.GetProperty("Version").GetInt32() };
            foreach (JsonProperty state in root.GetProperty("States").EnumerateObject()) part.States[state.Name] = state.Value.GetBytesFromBase64();
            JsonElement position = root.GetProperty("Position");
            part.Position = position.ValueKind == JsonValueKind.Null ? null : position.GetInt64();
            foreach (JsonElement channel in root.GetProperty("Channels").EnumerateArray())
                part.Channels.Add(new ChannelPart
                {
                    Stream = channel.GetProperty("Stream").GetString() ?? throw new InvalidDataException("a channel without a stream"),
                    Writer = channel.GetProperty("Writer").GetInt32(),
                    Batches = channel.GetProperty("Batches").EnumerateArray().Select(b => b.GetBytesFromBase64()).ToList(),
                });
            part.Ended = root.TryGetProperty("Ended", out JsonElement ended) && ended.GetBoolean();
            return part;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"The checkpoint file {where} is not a process's part: {e.Message}", e);
        }
    }
}

/// <summary>
/// JSON written into a growing array, as System.Text.Json's writer writes it with its default escaping: strings keep
/// printable ASCII except <c>" &amp; ' + &lt; &gt; ` \</c>; the rest is escaped (<c>\n \r \t \b \f \\</c> short, others
/// <c>\uXXXX</c> per UTF-16 unit). A string that is not valid UTF-16 (a lone surrogate) is refused, as there.
/// </summary>
internal struct JsonBytes(int capacity)
{
    private byte[] _buffer = new byte[capacity];
    private int _length;

    private Span<byte> Room(int bytes)
    {
        if (_buffer.Length - _length < bytes) Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + bytes));
        return _buffer.AsSpan(_length);
    }

    public void Raw(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(Room(bytes.Length));
        _length += bytes.Length;
    }

    public void Number(long value)
    {
        System.Buffers.Text.Utf8Formatter.TryFormat(value, Room(20), out int written);
        _length += written;
    }

    public void Base64(byte[] data)
    {
        Span<byte> room = Room(System.Buffers.Text.Base64.GetMaxEncodedToUtf8Length(data.Length) + 2);
        room[0] = (byte)'"';
        System.Buffers.Text.Base64.EncodeToUtf8(data, room[1..], out _, out int written);
        room[1 + written] = (byte)'"';
        _length += written + 2;
    }

    public void String(string text)
    {
        Span<byte> room = Room(text.Length * 6 + 2); // each UTF-16 unit at most \uXXXX
        int n = 0;
        room[n++] = (byte)'"';
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c is >= ' ' and < (char)0x7F and not ('"' or '&' or '\'' or '+' or '<' or '>' or '`' or '\\'))
            {
                room[n++] = (byte)c;
                continue;
            }
            byte brief = c switch { '\\' => (byte)'\\', '\n' => (byte)'n', '\r' => (byte)'r', '\t' => (byte)'t', '\b' => (byte)'b', '\f' => (byte)'f', _ => 0 };
            if (brief != 0)
            {
                room[n++] = (byte)'\\';
                room[n++] = brief;
                continue;
            }
            if (char.IsLowSurrogate(c) || (char.IsHighSurrogate(c) && (i + 1 == text.Length || !char.IsLowSurrogate(text[i + 1]))))
                throw new ArgumentException($"The name '{text}' is not valid UTF-16 text (a lone surrogate at {i}): it cannot be written in a checkpoint.");
            n += Escape(c, room[n..]);
            if (char.IsHighSurrogate(c)) n += Escape(text[++i], room[n..]);
        }
        room[n++] = (byte)'"';
        _length += n;
    }

    private static int Escape(char c, Span<byte> room)
    {
        room[0] = (byte)'\\';
        room[1] = (byte)'u';
        System.Buffers.Text.Utf8Formatter.TryFormat((ushort)c, room.Slice(2, 4), out _, new System.Buffers.StandardFormat('X', 4));
        return 6;
    }

    public readonly byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();
}

/// <summary>Items of one link (an input stream and one of its writers), as JSON arrays in the stream's item type.</summary>
internal sealed class ChannelPart
{
    public string Stream { get; set; } = "";
    public int Writer { get; set; }

    /// <summary>The batches, each a JSON array of items.</summary>
    public List<byte[]> Batches { get; set; } = new();
}

/// <summary>
/// The checkpoints of a run in its <see cref="IStateStore"/> (<see cref="RunOptions.StatePath"/>): <c>FORMAT</c> says the
/// format's version; each checkpoint has a value <c>checkpoint-NNNNNNNNNN/PROCESS.json</c> per process and, once every
/// process has stored its part, <c>checkpoint-NNNNNNNNNN/COMPLETE</c>. Only complete checkpoints are read; older ones
/// are removed once a newer one is complete.
/// </summary>
internal sealed class CheckpointStore
{
    public const int FormatVersion = 1;
    private static readonly TimeSpan LockWait = TimeSpan.FromSeconds(30);
    private readonly IStateStore _store;

    public CheckpointStore(IStateStore store)
    {
        _store = store;
        byte[]? format = _store.Read("FORMAT");
        if (format is not null)
        {
            string text = System.Text.Encoding.UTF8.GetString(format).Trim();
            if (text != $"millrace-state {FormatVersion}")
                throw new InvalidOperationException($"The state store {_store.Where} holds '{text}', not Millrace's state format {FormatVersion}: use another --state.");
        }
        else
        {
            _store.Write("FORMAT", System.Text.Encoding.UTF8.GetBytes($"millrace-state {FormatVersion}\n"));
        }
    }

    public string Path_ => _store.Where;

    private static string Folder(long checkpoint) => $"checkpoint-{checkpoint:D10}/";

    private static long Number(string key)
    {
        int slash = key.IndexOf('/');
        return slash > 0 && long.TryParse(key.AsSpan("checkpoint-".Length, slash - "checkpoint-".Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n) ? n : -1;
    }

    private IReadOnlyList<StateEntry> CheckpointKeys() => _store.List("checkpoint-");

    /// <summary>The newest complete checkpoint, or -1.</summary>
    public long LastComplete() => Newest(completeOnly: true);

    /// <summary>The newest checkpoint of any kind (complete or not), or -1: numbering goes on from it.</summary>
    public long LastStarted() => Newest(completeOnly: false);

    private long Newest(bool completeOnly)
    {
        long newest = -1;
        IReadOnlyList<StateEntry> keys = CheckpointKeys();
        for (int i = 0; i < keys.Count; i++)
        {
            string key = keys[i].Key;
            if (!completeOnly || key.EndsWith("/COMPLETE", StringComparison.Ordinal)) newest = Math.Max(newest, Number(key));
        }
        return newest;
    }

    public void SavePart(long checkpoint, string process, ProcessPart part) => _store.Write(Folder(checkpoint) + process + ".json", part.ToJson());

    /// <summary>Said of a process's final part (<see cref="SaveFinal"/>) where a checkpoint's number goes.</summary>
    public const long Final = long.MaxValue;

    /// <summary>A process ended: its final part, which later checkpoints hold for it (<see cref="CopyFinal"/>).</summary>
    public void SaveFinal(string process, ProcessPart part) => _store.Write($"ended/{process}.json", part.ToJson());

    /// <summary>Puts the final part of an ended process in <paramref name="checkpoint"/>, as its part.</summary>
    /// <exception cref="InvalidDataException">There is none.</exception>
    public void CopyFinal(string process, long checkpoint) =>
        _store.Write(Folder(checkpoint) + process + ".json",
            _store.Read($"ended/{process}.json") ?? throw new InvalidDataException($"Process '{process}' ended, but its final part is not in {_store.Where}."));

    public ProcessPart? LoadPart(long checkpoint, string process)
    {
        string key = Folder(checkpoint) + process + ".json";
        if (_store.Read(key) is not { } bytes) return null;
        string where = $"{key} in {_store.Where}";
        ProcessPart part = ProcessPart.FromJson(bytes, where);
        if (part.Version != FormatVersion)
            throw new InvalidDataException($"The checkpoint part {where} has format {part.Version}, not {FormatVersion}.");
        return part;
    }

    /// <summary>Bytes of the parts of <paramref name="checkpoint"/>.</summary>
    public long Size(long checkpoint)
    {
        IReadOnlyList<StateEntry> entries = _store.List(Folder(checkpoint));
        long size = 0;
        for (int i = 0; i < entries.Count; i++) size += entries[i].Length;
        return size;
    }

    /// <summary>
    /// Marks <paramref name="checkpoint"/> complete (every process stored its part) and removes older ones, except
    /// the one the current generation resumed from (the broker placement's processes may still read it).
    /// </summary>
    public void Complete(long checkpoint)
    {
        _store.Write(Folder(checkpoint) + "COMPLETE", System.Text.Encoding.UTF8.GetBytes(DateTimeOffset.UtcNow.ToString("O") + "\n"));
        long keep = ReadGeneration().Checkpoint;
        foreach (StateEntry entry in CheckpointKeys())
        {
            long n = Number(entry.Key);
            if (n >= 0 && n < checkpoint && n != keep) _store.Delete(entry.Key);
        }
    }

    /// <summary>The run completed: its checkpoints are of no more use (a program started again starts afresh).</summary>
    public void Clear()
    {
        // The marks of complete checkpoints first: a crash half-way leaves no complete checkpoint with parts missing.
        IReadOnlyList<StateEntry> entries = _store.List("");
        for (int i = 0; i < entries.Count; i++)
            if (entries[i].Key.EndsWith("/COMPLETE", StringComparison.Ordinal)) _store.Delete(entries[i].Key);
        for (int i = 0; i < entries.Count; i++)
            if (entries[i].Key != "FORMAT" && !entries[i].Key.EndsWith("/COMPLETE", StringComparison.Ordinal)) _store.Delete(entries[i].Key);
    }

    /// <summary>
    /// Holds the store's lock (between the OS processes that share it) until disposed: a new generation and a
    /// checkpoint's completion must not interleave. Waits at most 30 s.
    /// </summary>
    /// <exception cref="TimeoutException">Another OS process held the lock for 30 s.</exception>
    public IDisposable Lock() => _store.Lock("store", LockWait);

    /// <summary>
    /// Holds the locks of <paramref name="processes"/> until disposed: the OS process that runs them says so, and
    /// another that would run one of them too finds out (waiting up to <paramref name="wait"/> for one that is dying).
    /// </summary>
    /// <exception cref="InvalidOperationException">Another OS process runs one of them.</exception>
    public IDisposable Claim(IEnumerable<string> processes, TimeSpan wait)
    {
        var held = new List<IDisposable>();
        try
        {
            foreach (string process in processes)
            {
                try
                {
                    held.Add(_store.Lock("process-" + process, wait));
                }
                catch (TimeoutException e)
                {
                    throw new InvalidOperationException(
                        $"Process '{process}' already runs in another OS process of this run ({_store.Where} holds its lock): with checkpoints on, " +
                        "each process runs in one OS process at a time (several instances of one process, replicas, are not held yet: the second would " +
                        "take the run back to a checkpoint again and again). Start it in one place only, or run without checkpoints.", e);
                }
            }
            return new Held(held);
        }
        catch
        {
            foreach (IDisposable h in held) h.Dispose();
            throw;
        }
    }

    private sealed class Held(List<IDisposable> locks) : IDisposable
    {
        public void Dispose()
        {
            foreach (IDisposable l in locks) l.Dispose();
        }
    }

    // ---------------------------------------------------------------- generations (broker placement)
    // A run whose processes restart one by one goes back to a checkpoint as a whole: each time, a new
    // generation. GENERATION says which is current and the checkpoint it started from; live-NAME says the
    // generation a process last started in (found again there when it starts: it died, the run goes back);
    // ended-NAME the generation it ended in; COMPLETED that the run is over (the next start is a new run).

    /// <summary>The current generation and the checkpoint it started from (0 and -1 before any).</summary>
    public (long Generation, long Checkpoint) ReadGeneration()
    {
        string? text = ReadText("GENERATION");
        if (text is null) return (0, -1);
        string[] parts = text.Split(' ');
        return (long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture), long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
    }

    public void WriteGeneration(long generation, long checkpoint) => WriteText("GENERATION", $"{generation} {checkpoint}");

    public long? Mark(string kind, string process) => ReadText($"{kind}-{process}") is { } text ? long.Parse(text, System.Globalization.CultureInfo.InvariantCulture) : null;

    public void SetMark(string kind, string process, long generation) => WriteText($"{kind}-{process}", generation.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>Generation <paramref name="generation"/> ran to its end: what is stored here is of no more use.</summary>
    public void MarkCompleted(long generation)
    {
        WriteText("COMPLETED", generation.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (StateEntry entry in CheckpointKeys()) _store.Delete(entry.Key);
    }

    public long? CompletedGeneration => ReadText("COMPLETED") is { } text ? long.Parse(text, System.Globalization.CultureInfo.InvariantCulture) : null;

    private string? ReadText(string name) => _store.Read(name) is { } bytes ? System.Text.Encoding.UTF8.GetString(bytes).Trim() : null;

    private void WriteText(string name, string text) => _store.Write(name, System.Text.Encoding.UTF8.GetBytes(text + "\n"));
}

/// <summary>Where a process stores its part of a checkpoint and says it has.</summary>
internal interface ICheckpointPort
{
    CheckpointStore Store { get; }

    /// <summary><paramref name="runner"/> stored its part of <paramref name="checkpoint"/>. Its own thread.</summary>
    void Stored(long checkpoint, ProcessRunner runner);

    /// <summary>Checkpoints go on after processes end: a process that ends stores its final part (<see cref="SaveFinal"/>).</summary>
    bool KeepsFinalParts { get; }

    /// <summary>
    /// <paramref name="runner"/> ended: its final part, which stands for it in every later checkpoint. In the store
    /// (<see cref="CheckpointStore.SaveFinal"/>) where the checkpoints are completed in another OS process. Its own thread.
    /// </summary>
    void SaveFinal(ProcessRunner runner, ProcessPart part) => Store.SaveFinal(runner.Name, part);
}

/// <summary>
/// Takes the checkpoints of a run: every interval, asks the sources to send the markers of a new checkpoint
/// with their items (<paramref name="requestMarkers"/>); each process saves its part when the markers have
/// passed (<see cref="ProcessRunner"/>) and says so (<see cref="Stored(long, string)"/>); once all
/// <paramref name="participants"/> have, the checkpoint is complete. One checkpoint at a time; after some process has
/// ended, its final part stands for it (<see cref="GoesOnAfterEnds"/>), or none is taken (<paramref name="ended"/> names one). The threads placement runs
/// one beside its runners; the processes placement's coordinator runs one for all its children.
/// </summary>
internal sealed class CheckpointCoordinator(
    RunContext run, int participants, Action<long> requestMarkers, Func<string?> ended, CheckpointStore store, TimeSpan interval, long resumedFrom,
    Microsoft.Extensions.Logging.ILogger? logger)
    : ICheckpointPort
{
    // How long each checkpoint took, ms (an array: a list of doubles is compiled at run time, at the first checkpoint).
    private double[] _durations = new double[16];
    private int _taken;
    private long _lastSize;
    private long _lastNumber = resumedFrom;
    private string? _endedFirst;

    private bool AnyEnded() => (_endedFirst ??= ended()) is not null;
    private readonly System.Diagnostics.Stopwatch _sinceLast = System.Diagnostics.Stopwatch.StartNew();

    // By hand: Array.Sort of doubles is compiled at run time (milliseconds at the end of a run).
    internal static void HeapSort(double[] a)
    {
        for (int i = a.Length / 2 - 1; i >= 0; i--) SiftDown(a, i, a.Length);
        for (int end = a.Length - 1; end > 0; end--)
        {
            (a[0], a[end]) = (a[end], a[0]);
            SiftDown(a, 0, end);
        }
    }

    private static void SiftDown(double[] a, int i, int length)
    {
        while (2 * i + 1 < length)
        {
            int child = 2 * i + 1;
            if (child + 1 < length && a[child + 1] > a[child]) child++;
            if (a[i] >= a[child]) return;
            (a[i], a[child]) = (a[child], a[i]);
            i = child;
        }
    }

    /// <summary>How the checkpoints go, for the meter and the views. Any thread.</summary>
    public Monitoring.CheckpointSample Sample()
    {
        lock (_lock)
            return new(Completed, _lastNumber, _taken > 0 ? _durations[_taken - 1] : 0, _lastSize, _sinceLast.Elapsed.TotalSeconds);
    }
    private readonly object _lock = new();
    private readonly CancellationTokenSource _over = CancellationTokenSource.CreateLinkedTokenSource(run.HardToken);
    private TaskCompletionSource? _stored;
    private int _waiting;
    private long _current = Math.Max(0, Math.Max(resumedFrom, store.LastStarted())); // checkpoints count from 1

    public CheckpointStore Store { get; } = store;

    /// <summary>The checkpoint the run resumed from, or -1.</summary>
    public long ResumedFrom { get; } = resumedFrom;

    /// <summary>Checkpoints completed in this run.</summary>
    public int Completed { get; private set; }

    /// <summary>The first number this coordinator may give a checkpoint (the broker placement gives each generation numbers of its own).</summary>
    public long NumberFrom
    {
        init => _current = Math.Max(_current, value - 1);
    }

    /// <summary>Asked before a checkpoint is marked complete: false abandons it (the run went back meanwhile).</summary>
    public Func<bool>? StillCurrent { get; init; }

    /// <summary>
    /// Checkpoints go on after processes end (the threads and processes placements): an ended process's final part
    /// (<see cref="CheckpointStore.SaveFinal"/>) stands for it in every later checkpoint. Otherwise (the broker placement)
    /// none is taken once some process has ended.
    /// </summary>
    public bool GoesOnAfterEnds { get; init; }

    // Processes whose final part is stored, and those that stored their part of the current checkpoint.
    private readonly HashSet<string> _ended = new(StringComparer.Ordinal);
    private HashSet<string> _storedBy = new(StringComparer.Ordinal);

    void ICheckpointPort.Stored(long checkpoint, ProcessRunner runner) => Stored(checkpoint, runner.Name);

    // The threads placement: the final parts of its processes, kept here and written only into a checkpoint taken after
    // they ended (a run that ends first, as most do, never writes them; a crash loses them with the run's memory, and
    // the run goes back to its last complete checkpoint, which holds a copy of each it needed).
    private readonly Dictionary<string, ProcessPart> _finalParts = new(StringComparer.Ordinal);

    void ICheckpointPort.SaveFinal(ProcessRunner runner, ProcessPart part)
    {
        lock (_lock) _finalParts[runner.Name] = part;
    }

    bool ICheckpointPort.KeepsFinalParts => GoesOnAfterEnds;

    /// <summary>
    /// Process <paramref name="process"/> (null: one not named) stored its part of <paramref name="checkpoint"/>, or its
    /// final part (<see cref="CheckpointStore.Final"/>). Any thread.
    /// </summary>
    public void Stored(long checkpoint, string? process = null)
    {
        TaskCompletionSource? done = null;
        lock (_lock)
        {
            if (checkpoint == CheckpointStore.Final)
            {
                if (!GoesOnAfterEnds || process is null || !_ended.Add(process)) return;
                // Ended before storing its part of the checkpoint under way: its final part stands for it.
                if (_stored is null || _storedBy.Contains(process)) return;
            }
            else
            {
                if (checkpoint != _current || _stored is null) return;
                if (process is not null && !_storedBy.Add(process)) return;
            }
            if (--_waiting == 0) done = _stored;
        }
        done?.TrySetResult();
    }

    /// <summary>The run's processes have ended: take no more checkpoints, and do not wait for the next interval to say so.</summary>
    public void Stop() => _over.Cancel();

    public Task RunAsync() => Task.Run(async () =>
    {
        CancellationToken stop = _over.Token;
        try
        {
            while (!stop.IsCancellationRequested && !run.StopRequested)
            {
                // Stopping is not an exception here (the first one thrown in a process costs milliseconds, at the run's end).
                await Task.Delay(interval, stop).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                if (stop.IsCancellationRequested) return;
                if (run.StopRequested || (!GoesOnAfterEnds && AnyEnded())) return;
                long checkpoint;
                TaskCompletionSource stored = new(TaskCreationOptions.RunContinuationsAsynchronously);
                lock (_lock)
                {
                    checkpoint = ++_current;
                    _storedBy = new HashSet<string>(StringComparer.Ordinal);
                    _waiting = participants - _ended.Count;
                    _stored = stored;
                    if (_waiting == 0) return; // every process has ended: the run is over
                }
                long started = System.Diagnostics.Stopwatch.GetTimestamp();
                requestMarkers(checkpoint);
                // A process that ends meanwhile never stores its part: the checkpoint is abandoned.
                while (!stored.Task.IsCompleted)
                {
                    if (await Task.WhenAny(stored.Task, Task.Delay(interval, stop)) == stored.Task) break;
                    if ((!GoesOnAfterEnds && AnyEnded()) || run.StopRequested || stop.IsCancellationRequested) return;
                }
                // The processes that ended without storing a part of this checkpoint: their final parts are their parts.
                var finals = new List<string>();
                var parts = new List<ProcessPart?>();
                lock (_lock)
                {
                    foreach (string process in _ended)
                    {
                        if (_storedBy.Contains(process)) continue;
                        finals.Add(process);
                        parts.Add(_finalParts.GetValueOrDefault(process));
                    }
                }
                for (int i = 0; i < finals.Count; i++)
                {
                    // Kept here (this OS process's processes), or stored by the OS process that ran it.
                    if (parts[i] is { } part) Store.SavePart(checkpoint, finals[i], part);
                    else Store.CopyFinal(finals[i], checkpoint);
                }
                // The broker placement: a newer generation (another host went back to a checkpoint) makes this one's checkpoints void;
                // under the store's lock, so that a host starting a new generation reads the last complete checkpoint before or after this one.
                if (StillCurrent is { } stillCurrent)
                {
                    using (Store.Lock())
                    {
                        if (!stillCurrent()) return;
                        Store.Complete(checkpoint);
                    }
                }
                else
                {
                    Store.Complete(checkpoint);
                }
                long size = Store.Size(checkpoint);
                lock (_lock)
                {
                    if (_taken == _durations.Length)
                    {
                        var more = new double[_taken * 2];
                        Array.Copy(_durations, more, _taken);
                        _durations = more;
                    }
                    _durations[_taken++] = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                    _lastSize = size;
                    _lastNumber = checkpoint;
                    _sinceLast.Restart();
                    Completed++;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            run.Fail(new ProcessFailure("checkpoints", null, null, null, $"Checkpoints failed: {e.GetType().Name}: {e.Message}", e));
        }
        finally
        {
            double[] sorted;
            lock (_lock)
            {
                sorted = new double[_taken];
                Array.Copy(_durations, sorted, _taken);
            }
            HeapSort(sorted);
            if (sorted.Length > 0)
            {
                double P(double q) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
                Millrace.Monitoring.Log.Notice(logger, "checkpoints",
                    $"{sorted.Length} complete in this run, each took p50 {P(0.5):0.0} ms, p99 {P(0.99):0.0} ms, max {sorted[^1]:0.0} ms " +
                    $"(from asking the sources to the last part stored); the last holds {_lastSize:N0} bytes" +
                    (!GoesOnAfterEnds && _endedFirst is { } name ? $"; none after process '{name}' ended (checkpoints stop once any process has)" : ""));
            }
        }
    });
}

internal static class Checkpoints
{
    /// <summary>With checkpoints on: refuses a graph they cannot hold yet (every problem named) and opens the store. Null with checkpoints off.</summary>
    public static CheckpointStore? Open(GraphModel model, RunOptions options, bool warn = true)
    {
        if (!Check(model, options)) return null;
        return OpenStore(model, options, warn);
    }

    /// <summary>Whether checkpoints are on; with them on, refuses a graph they cannot hold yet (every problem named).</summary>
    /// <exception cref="GraphValidationException">The graph has processes checkpoints cannot hold.</exception>
    public static bool Check(GraphModel model, RunOptions options)
    {
        if (options.CheckpointEvery <= TimeSpan.Zero) return false;
        var problems = new List<string>();
        // Markers start at the sources and flow with the items: a process no source leads to never gets one.
        // (Arrays and loops: collections of ints and LINQ over them are compiled at run time, milliseconds at every start.)
        int count = model.Processes.Count;
        var reached = new bool[count];
        var frontier = new int[count];
        int waiting = 0;
        for (int p = 0; p < count; p++)
        {
            if (model.Processes[p].Source is null) continue;
            reached[p] = true;
            frontier[waiting++] = p;
        }
        while (waiting > 0)
        {
            int writer = frontier[--waiting];
            foreach (StreamInfo stream in model.Streams.Values)
            {
                if (!Holds(stream.Writers, writer)) continue;
                foreach (int reader in stream.Readers)
                {
                    if (reached[reader]) continue;
                    reached[reader] = true;
                    frontier[waiting++] = reader;
                }
            }
        }
        for (int p = 0; p < count; p++)
            if (!reached[p])
                problems.Add($"no source leads to process '{model.Processes[p].Name}', so no checkpoint marker would reach it (a loop started by a stream's initial items, a process without inputs): start it from a source");
        foreach (ProcessBuilder p in model.Processes)
        {
            if (p.Source is { Rewindable: false })
                problems.Add($"source '{p.Name}' cannot start again where a checkpoint left it (enumerables, Lines and timers can, for now)");
            if (p.UncheckpointedState is { } what)
                problems.Add($"process '{p.Name}' ({what}) keeps state that checkpoints do not hold yet");
            foreach (IStateSlot slot in p.States)
            {
                if (Codecs.JsonTypeCheck.WhyNot(slot.Type) is { } why)
                    problems.Add($"process '{p.Name}': its state '{slot.Name}' cannot be saved in a checkpoint: {why}");
            }
        }
        if (problems.Count > 0)
            throw new GraphValidationException(problems.Select(p => $"Checkpoints (--checkpoint-interval): {p}.").ToList());
        return true;
    }

    private static bool Holds(int[] indexes, int index)
    {
        foreach (int i in indexes)
            if (i == index) return true;
        return false;
    }

    /// <summary>Opens the store of a graph <see cref="Check"/> let through; <paramref name="warn"/>: says which processes keep variables of their own first.</summary>
    private static CheckpointStore OpenStore(GraphModel model, RunOptions options, bool warn)
    {
        if (warn) WarnOwnVariables(model, options);
        return new CheckpointStore(StateStores.Open(options.StatePath ?? "millrace-state", StateName(options)));
    }

    /// <summary>Says which processes keep variables of their own in their handlers (checkpoints do not save them).</summary>
    public static void WarnOwnVariables(GraphModel model, RunOptions options)
    {
        foreach (ProcessBuilder p in model.Processes)
        {
            if (OwnVariables(p) is { Count: > 0 } names)
                Millrace.Monitoring.Log.Notice(options.Logger, "checkpoints",
                    $"process '{p.Name}' keeps variables of its own in its handlers ({string.Join(", ", names)}); checkpoints do not save them: " +
                    "if they change as items arrive, keep them in p.State(...) instead, or a resumed run starts them afresh (docs/state-and-recovery.md)");
        }
    }

    /// <summary>What tells this program's state apart from others' in a shared database: the run id, or the program's name.</summary>
    public static string StateName(RunOptions options) =>
        options.RunId ?? System.Reflection.Assembly.GetEntryAssembly()?.GetName().Name ?? "millrace";

    /// <summary>
    /// Variables a process's handlers captured that look like state (numbers, structs, collections): the
    /// compiler keeps them as fields of the handlers' closure. Built-in operators (which keep theirs in the
    /// checkpoint) and what is shared with enclosing code are left out. A hint, not a proof.
    /// </summary>
    private static List<string> OwnVariables(ProcessBuilder p)
    {
        // Loops, not LINQ over the timers' tuples: a query over a list of structs is compiled at run time (milliseconds
        // at the start of every run with checkpoints).
        var names = new List<string>();
        foreach (InputSpec input in p.Inputs) AddOwnVariables(input.Handler, names);
        foreach (var (_, tick) in p.Timers) AddOwnVariables(tick, names);
        names.Sort(StringComparer.Ordinal);
        for (int i = names.Count - 1; i > 0; i--)
            if (names[i] == names[i - 1]) names.RemoveAt(i);
        return names;
    }

    private static void AddOwnVariables(Delegate? handler, List<string> names)
    {
        if (handler?.Target is not { } target) return;
        Type type = target.GetType();
        if (type.Assembly == typeof(Graph).Assembly || !type.Name.Contains("DisplayClass", StringComparison.Ordinal)) return;
        foreach (System.Reflection.FieldInfo field in type.GetFields(System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic))
        {
            if (field.Name.StartsWith('<') || field.IsInitOnly) continue;
            Type t = Nullable.GetUnderlyingType(field.FieldType) ?? field.FieldType;
            bool looksLikeState = t.IsPrimitive || t == typeof(decimal) || t.IsArray ||
                (t.IsValueType && !t.IsEnum && t.Namespace?.StartsWith("Millrace", StringComparison.Ordinal) != true) ||
                (t.IsGenericType && t.Namespace == "System.Collections.Generic");
            if (looksLikeState) names.Add(field.Name);
        }
    }

    /// <summary>Gives each of <paramref name="runners"/> where to store its parts and, when the run resumes from <paramref name="resumed"/>, its part of it.</summary>
    public static void Attach(IEnumerable<ProcessRunner> runners, CheckpointStore store, long resumed, ICheckpointPort port)
    {
        foreach (ProcessRunner runner in runners)
        {
            runner.Checkpoints = port;
            if (resumed >= 0)
                runner.Restore = store.LoadPart(resumed, runner.Name)
                    ?? throw new InvalidDataException($"Checkpoint {resumed} in {store.Path_} is complete but holds nothing for process '{runner.Name}': is this the same graph?");
        }
    }

    /// <summary>
    /// The threads placement, with checkpoints on: checks the graph for them, then opens their store on a thread of its own
    /// (null with checkpoints off), so that the caller can wire the run meanwhile (and say which processes keep
    /// variables of their own: <see cref="WarnOwnVariables"/>). Finding and
    /// opening the store, checking its format and finding its last complete checkpoint cost a run tens of milliseconds
    /// at start, most of it code run for the first time, on a core that is otherwise idle then.
    /// </summary>
    /// <exception cref="GraphValidationException">The graph has processes checkpoints cannot hold (at once, not in the task).</exception>
    public static Task<OpenedStore?> OpenAsync(GraphModel model, RunOptions options)
    {
        if (!Check(model, options)) return Task.FromResult<OpenedStore?>(null);
        // A thread of its own, not the pool's: the pool's first worker takes milliseconds to start at a program's start.
        // The run goes on on this thread once the store is open (continuations run at once, not on the pool).
        var opened = new TaskCompletionSource<OpenedStore?>();
        var thread = new Thread(() =>
        {
            OpenedStore store;
            try
            {
                CheckpointStore checkpoints = OpenStore(model, options, warn: false);
                store = new OpenedStore(checkpoints, checkpoints.LastComplete());
            }
            catch (Exception e)
            {
                opened.SetException(e);
                return;
            }
            opened.SetResult(store);
        })
        { IsBackground = true, Name = "millrace state store" };
        thread.Start();
        return opened.Task;
    }

    /// <summary>A store <see cref="OpenAsync"/> opened, and the checkpoint the run resumes from (-1: none).</summary>
    public sealed record OpenedStore(CheckpointStore Store, long Resumed);

    /// <summary>The threads placement: checkpoints of the runners of this OS process, in <paramref name="opened"/>.</summary>
    public static CheckpointCoordinator Prepare(OpenedStore opened, RunOptions options, RunHost host)
    {
        (CheckpointStore store, long resumed) = opened;
        ProcessRunner[] runners = host.Local;
        var coordinator = new CheckpointCoordinator(host.Run, runners.Length,
            checkpoint => { foreach (ProcessRunner source in runners.Where(r => r.IsSource)) source.RequestMarker(checkpoint); },
            () => runners.FirstOrDefault(r => r.HasEnded)?.Name, store, options.CheckpointEvery, resumed, options.Logger) { GoesOnAfterEnds = true };
        Attach(runners, store, resumed, coordinator);
        if (resumed >= 0) Millrace.Monitoring.Log.Notice(options.Logger, "checkpoints", $"resuming from checkpoint {resumed} in {store.Path_}");
        return coordinator;
    }
}
