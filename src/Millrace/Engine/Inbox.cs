using System.Diagnostics;

namespace Millrace.Engine;

internal enum EnvelopeKind : byte
{
    /// <summary>A batch of items of one input.</summary>
    Data,
    /// <summary>One writer of one input has ended.</summary>
    End,
    /// <summary>Termination detection found the process's cycle quiet: its writers inside the cycle count as ended.</summary>
    ForceEnd,
    /// <summary>An action posted to the process (a timer fired): it runs on the process's thread between items (not a counted message).</summary>
    Posted,
    /// <summary>A checkpoint's marker from one writer of one input: everything that writer sent before it belongs to the checkpoint.</summary>
    Marker,
}

/// <summary>One unit of a process's work: a batch, an end mark, a termination notice or a posted action.</summary>
/// <param name="Kind">What it is.</param>
/// <param name="Lane">The input a batch or end mark belongs to.</param>
/// <param name="Items">A batch's items (an array of the stream's item type).</param>
/// <param name="Count">How many of <paramref name="Items"/> are items.</param>
/// <param name="Writer">The writer (index among the stream's writers) a batch or end mark comes from.</param>
/// <param name="Receipt">For a transport that must know when a batch or end mark is handled (the broker acknowledges it then), else null.</param>
/// <param name="Action">A posted action.</param>
/// <param name="Counted">An end mark termination detection counted as received when a transport took it.</param>
/// <param name="Checkpoint">A checkpoint marker's number.</param>
internal readonly record struct Envelope(EnvelopeKind Kind, Lane? Lane, Array? Items, int Count, int Writer, Receipt? Receipt = null, Action? Action = null,
    bool Counted = false, long Checkpoint = 0)
{
    public static Envelope Posted(Action action) => new(EnvelopeKind.Posted, null, null, 0, -1, Action: action);
}

/// <summary>
/// What a transport wants to hear of a batch or end mark it delivered: the ids of its items, and a
/// call once the process has handled them and what they produced has left the process (the broker
/// acknowledges its message then, once that is confirmed).
/// </summary>
public abstract class Receipt
{
    /// <summary>Per item of the envelope, its id; null for an end mark.</summary>
    public ulong[]? Ids { get; set; }

    /// <summary>Process thread: every item is handled and what they produced has left the process.</summary>
    public abstract void Handled();
}

/// <summary>
/// One input stream of one reading process: its bound, the writers still open, and the writers
/// blocked waiting for room.
/// </summary>
public sealed class Lane
{
    private readonly bool[] _writerEnded;

    internal Lane(int index, InputSpec input, int capacity, int writers)
    {
        Index = index;
        Input = input;
        Capacity = capacity;
        _writerEnded = new bool[writers];
        WritersOpen = writers;
    }

    /// <summary>The input's place among the process's inputs.</summary>
    public int Index { get; }
    internal InputSpec Input { get; }

    /// <summary>The stream it reads.</summary>
    public string StreamName => Input.Stream.Name;
    internal int Capacity { get; }

    /// <summary>Items queued and not yet taken. Written under the inbox lock; read without it only for monitoring and diagnostics.</summary>
    internal int Queued;

    /// <summary>Writers waiting for room. Guarded by the inbox lock.</summary>
    internal List<ProcessRunner> Waiters
    {
        get
        {
            AssertInboxLock("Lane.Waiters");
            return _waiters;
        }
        set
        {
            AssertInboxLock("Lane.Waiters");
            _waiters = value;
        }
    }

    private List<ProcessRunner> _waiters = new();

#if DEBUG
    /// <summary>Debug builds: the reading process, once the lane is added to it (for the lock and thread asserts).</summary>
    internal ProcessRunner? Reader;
#endif

    [Conditional("DEBUG")]
    private void AssertInboxLock(string member)
    {
#if DEBUG
        Reader?.Inbox.AssertLocked(member);
#endif
    }

    /// <summary>Writer indexes inside this process's own cycle, ended by termination detection.</summary>
    internal int[] CycleWriters { get; set; } = Array.Empty<int>();

    /// <summary>Per writer index: where to return room once its batch is taken (writers in other OS processes), or null.</summary>
    internal Action<int>?[]? ReturnRoom { get; set; }

    /// <summary>Per writer index: where a batch's array goes once its items are handled (a transport fills it again), or null.</summary>
    internal Action<Array>?[]? Recycle { get; set; }

    /// <summary>Sends room gathered for writers in other OS processes, or null when there are none.</summary>
    internal Action? FlushRoom { get; set; }

    /// <summary>Items of this stream handled so far: the position of the next item. Reader thread only.</summary>
    internal long Position;

    internal int WritersOpen { get; private set; }

    internal bool Ended => WritersOpen == 0;

    /// <summary>How many writers the stream has.</summary>
    internal int Writers => _writerEnded.Length;

    /// <summary>Whether writer number <paramref name="writer"/> has ended.</summary>
    internal bool WriterEnded(int writer) => _writerEnded[writer];

    /// <summary>Marks one writer ended (once); returns true when this made the lane end. Reader thread only.</summary>
    internal bool EndWriter(int writer)
    {
#if DEBUG
        Reader?.AssertRunnerThread("Lane.EndWriter");
#endif
        if (_writerEnded[writer]) return false;
        _writerEnded[writer] = true;
        WritersOpen--;
        return WritersOpen == 0;
    }
}

/// <summary>
/// The single queue a process takes its work from: batches and end marks of all its inputs, in
/// arrival order. Each input (lane) holds at most its capacity in items; writers beyond that wait.
/// </summary>
internal sealed class Inbox
{
    private readonly object _lock = new();
    private readonly Queue<Envelope> _queue = new();
    private List<ProcessRunner> _spareWaiters = new();
    private readonly Waiter _waiter;
    private readonly ProcessRunner _owner;

    public Inbox(ProcessRunner owner)
    {
        _owner = owner;
        _waiter = new Waiter(_lock);
    }

    /// <summary>Debug builds: asserts that the inbox lock is held (what "guarded by the inbox lock" means).</summary>
    [Conditional("DEBUG")]
    internal void AssertLocked(string member) =>
        Debug.Assert(Monitor.IsEntered(_lock), $"{member}: guarded by the inbox lock of '{_owner.Name}'.");

    /// <summary>Wakes the owner: it counts as running from now on, so termination detection never takes it for idle.</summary>
    private void Wake()
    {
        _owner.MarkWoken();
        _waiter.Complete();
    }

    /// <summary>Enqueues a batch if its lane has room; otherwise registers <paramref name="writer"/> to be woken.</summary>
    public bool TryEnqueue(Lane lane, Array items, int count, int writerIndex, ProcessRunner writer)
    {
        bool wake;
        lock (_lock)
        {
            if (lane.Queued > 0 && lane.Queued + count > lane.Capacity)
            {
                if (!lane.Waiters.Contains(writer)) lane.Waiters.Add(writer);
                return false;
            }
            lane.Queued += count;
            _queue.Enqueue(new Envelope(EnvelopeKind.Data, lane, items, count, writerIndex));
            wake = _waiter.TryEnd();
        }
        if (wake) Wake();
        return true;
    }

    /// <summary>Enqueues a batch from a writer in another OS process; its room was reserved there (credits).</summary>
    public void EnqueueRemote(Lane lane, Array items, int count, int writerIndex, Receipt? receipt = null)
    {
        bool wake;
        lock (_lock)
        {
            lane.Queued += count;
            _queue.Enqueue(new Envelope(EnvelopeKind.Data, lane, items, count, writerIndex, receipt));
            wake = _waiter.TryEnd();
        }
        if (wake) Wake();
    }

    /// <summary>Enqueues an end mark or a termination notice; these never wait for room.</summary>
    public void EnqueueControl(Envelope envelope)
    {
        bool wake;
        lock (_lock)
        {
            _queue.Enqueue(envelope);
            wake = _waiter.TryEnd();
        }
        if (wake) Wake();
    }

    /// <summary>Takes the next envelope, if any. One reader: the owning process, on its thread.</summary>
    public bool TryTake(out Envelope envelope)
    {
        _owner.AssertRunnerThread("Inbox.TryTake");
        List<ProcessRunner>? toWake = null;
        lock (_lock)
        {
            if (!_queue.TryDequeue(out envelope)) return false;
            if (envelope.Kind == EnvelopeKind.Data)
            {
                Lane lane = envelope.Lane!;
                lane.Queued -= envelope.Count;
                if (lane.Waiters.Count > 0)
                {
                    toWake = lane.Waiters;
                    lane.Waiters = _spareWaiters;
                }
            }
        }
        if (toWake is not null)
        {
            foreach (ProcessRunner writer in toWake) writer.WakeForRoom();
            toWake.Clear();
            lock (_lock) _spareWaiters = toWake;
        }
        if (envelope.Kind == EnvelopeKind.Data && envelope.Lane!.ReturnRoom?[envelope.Writer] is { } returnRoom)
            returnRoom(envelope.Count);
        return true;
    }

    /// <summary>Completes when something is queued. One waiter: the owning process.</summary>
    public ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        _owner.AssertRunnerThread("Inbox.WaitAsync");
        lock (_lock)
        {
            if (_queue.Count > 0) return ValueTask.CompletedTask;
            _waiter.Begin();
        }
        return _waiter.Start(cancellationToken);
    }
}
