namespace Millrace.Engine;

/// <summary>
/// Where one writer's batches of one stream go: one reader's lane of that stream, here or elsewhere.
/// A placement's <see cref="ITransport"/> makes one for each reader it carries; the writer's thread calls it.
/// </summary>
public abstract class Destination
{
    /// <summary>A destination towards <paramref name="readerName"/> for writer number <paramref name="writer"/> of the stream.</summary>
    protected Destination(string readerName, int writer, bool inSameCycle)
    {
        ReaderName = readerName;
        Writer = writer;
        InSameCycle = inSameCycle;
    }

    /// <summary>The reading process.</summary>
    public string ReaderName { get; }
    /// <summary>This writer's index among the stream's writers.</summary>
    public int Writer { get; }
    /// <summary>Reader and writer are in the same cycle (termination detection ends this link).</summary>
    public bool InSameCycle { get; }
    /// <summary>Termination detection ended this link; sending on it is an error. Writer thread only.</summary>
    internal bool Closed { get; set; }

    /// <summary>
    /// Takes a batch (<paramref name="count"/> items of <paramref name="items"/>, with their ids when the
    /// placement tracks ids) if the reader has room; otherwise returns false and wakes <paramref name="writer"/>
    /// (<see cref="ProcessRunner.WakeForRoom"/>) once there is. The array is the destination's to keep.
    /// </summary>
    public abstract bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer);

    /// <summary>Tells the reader this writer has ended.</summary>
    public abstract void SendEnd();

    /// <summary>
    /// Sends the marker of checkpoint <paramref name="checkpoint"/> after everything sent so far (the
    /// reader saves its state once markers have passed). Placements that do not carry markers refuse.
    /// </summary>
    public virtual void SendMarker(long checkpoint) =>
        throw new NotSupportedException($"This placement does not carry checkpoint markers (to '{ReaderName}').");

    /// <summary>Lets go of anything gathered for sending (the writer is about to wait).</summary>
    public virtual void Flush()
    {
    }

    /// <summary>For deadlock reports: how full the reader's queue is.</summary>
    public abstract string Fill { get; }

    /// <summary>
    /// Whether <see cref="TryEnqueue"/> keeps the arrays it is given (a reader in this OS process takes them as they are).
    /// Destinations that copy the items out before returning (they encode them) say false: when every destination of a
    /// stream copies, the writer reuses its arrays for the next batch.
    /// </summary>
    public virtual bool KeepsArrays => true;
}

/// <summary>A reader in this OS process: straight into its inbox.</summary>
internal sealed class LocalDestination : Destination
{
    private readonly ProcessRunner _reader;
    private readonly Lane _lane;

    public LocalDestination(ProcessRunner reader, Lane lane, int writer, bool inSameCycle) : base(reader.Name, writer, inSameCycle)
    {
        _reader = reader;
        _lane = lane;
    }

    public override bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer) =>
        _reader.Inbox.TryEnqueue(_lane, items, count, Writer, writer);

    public override void SendEnd() => _reader.Inbox.EnqueueControl(new Envelope(EnvelopeKind.End, _lane, null, 0, Writer));

    public override void SendMarker(long checkpoint) =>
        _reader.Inbox.EnqueueControl(new Envelope(EnvelopeKind.Marker, _lane, null, 0, Writer, Checkpoint: checkpoint));

    public override string Fill => $"{_lane.Queued} of {_lane.Capacity} items queued";
}

/// <summary>
/// Delivers one output's batches, in order, to every reader of its stream (broadcast). Batches a
/// full reader cannot take yet wait here; the process is then blocked until they are delivered.
/// </summary>
internal sealed class BatchSender
{
    private readonly ProcessRunner _writer;
    private readonly string _stream;
    private readonly Destination[] _destinations;
    private readonly Queue<(Array Items, ulong[]? Ids, int Count)> _pending = new();
    private readonly int _maxPending;
    private readonly bool _reusesArrays;
    private Array? _spareItems;
    private ulong[]? _spareIds;
    private int _nextDestination;
    private bool _ended;

    public BatchSender(ProcessRunner writer, string stream, Destination[] destinations, int batchSize, int maxPending)
    {
        _writer = writer;
        _stream = stream;
        _destinations = destinations;
        BatchSize = batchSize;
        _maxPending = maxPending;
        _reusesArrays = destinations.Length > 0 && destinations.All(d => !d.KeepsArrays);
    }

    /// <summary>Set by the output: its items are or hold references (a reused array is cleared first).</summary>
    public bool ItemsHoldReferences { get; set; } = true;

    /// <summary>
    /// The arrays of a batch every destination has copied out (null if none): the writer fills them again instead of
    /// allocating. Items of a type holding references were cleared, so that nothing stays reachable through them.
    /// </summary>
    public T[]? TakeSpareItems<T>()
    {
        var spare = _spareItems as T[];
        _spareItems = null;
        return spare is not null && spare.Length == BatchSize ? spare : null;
    }

    /// <inheritdoc cref="TakeSpareItems{T}"/>
    public ulong[]? TakeSpareIds()
    {
        ulong[]? spare = _spareIds;
        _spareIds = null;
        return spare is not null && spare.Length == BatchSize ? spare : null;
    }

    public int BatchSize { get; }

    public ProcessRunner Writer => _writer;
    public long ItemsOut { get; private set; }
    public bool HasPending => _pending.Count > 0;
    public IReadOnlyList<Destination> Destinations => _destinations;

    public void ThrowIfNotWritable()
    {
        if (_ended)
            throw new InvalidOperationException($"Process '{_writer.Name}' cannot emit to stream '{_stream}': its outputs have ended.");
        if (!_writer.Started)
            throw new InvalidOperationException(
                $"Process '{_writer.Name}' cannot emit to stream '{_stream}' yet: emit only while it runs (from its start action, a handler or its completion action).");
    }

    /// <summary>Takes ownership of a batch and delivers it, or queues it until readers have room.</summary>
    public void Send(Array items, ulong[]? ids, int count)
    {
        ItemsOut += count;
        _pending.Enqueue((items, ids, count));
        if (TryDeliver()) return;
        _writer.MarkBlocked();
        // A handler that emits a great deal per item must not grow memory without bound: wait here.
        if (_pending.Count > _maxPending) _writer.DrainBlocking();
    }

    /// <summary>Delivers what is pending, in order; false if some reader is still full.</summary>
    public bool TryDeliver()
    {
        while (_pending.TryPeek(out var batch))
        {
            for (; _nextDestination < _destinations.Length; _nextDestination++)
            {
                Destination d = _destinations[_nextDestination];
                if (d.Closed)
                {
                    throw new InvalidOperationException(
                        $"Process '{_writer.Name}' emitted to stream '{_stream}' after termination detection ended the cycle it shares with '{d.ReaderName}'. " +
                        "Items emitted on completion must go to streams outside the cycle.");
                }
                if (!d.TryEnqueue(batch.Items, batch.Ids, batch.Count, _writer)) return false;
                _writer.CountSent();
            }
            _pending.Dequeue();
            _nextDestination = 0;
            if (_reusesArrays)
            {
                // Copied out by every destination: nothing refers to these arrays any more.
                if (ItemsHoldReferences) Array.Clear(batch.Items, 0, batch.Count);
                _spareItems = batch.Items;
                _spareIds = batch.Ids;
            }
        }
        return true;
    }

    /// <summary>Sends what destinations have gathered (across OS processes); the writer is about to wait.</summary>
    public void FlushDestinations()
    {
        foreach (Destination d in _destinations) d.Flush();
    }

    /// <summary>Sends the end mark to every reader; call once everything pending is delivered.</summary>
    public void End()
    {
        _writer.AssertRunnerThread("BatchSender.End");
        if (_ended) return;
        _ended = true;
        foreach (Destination d in _destinations)
        {
            if (d.Closed) continue;
            d.SendEnd();
            _writer.CountSent();
            d.Flush();
        }
    }

    /// <summary>Sends a checkpoint's marker to every reader; call once everything pending is delivered.</summary>
    public void SendMarker(long checkpoint)
    {
        _writer.AssertRunnerThread("BatchSender.SendMarker");
        System.Diagnostics.Debug.Assert(_pending.Count == 0, "BatchSender.SendMarker: after every pending batch is delivered.");
        if (_ended) return;
        foreach (Destination d in _destinations)
        {
            if (d.Closed) continue;
            d.SendMarker(checkpoint);
            _writer.CountSent();
        }
    }

    /// <summary>After termination detection: links inside the cycle are closed; nothing more may be sent on them.</summary>
    public void CloseCycleLinks()
    {
        _writer.AssertRunnerThread("BatchSender.CloseCycleLinks");
        foreach (Destination d in _destinations)
        {
            if (d.InSameCycle) d.Closed = true;
        }
    }
}
