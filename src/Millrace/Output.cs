
namespace Millrace;

/// <summary>
/// The writer of one output stream of one process: <see cref="Emit"/> appends an item to the stream.
/// Get one from <see cref="ProcessBuilder.Output{T}(Stream{T})"/>.
/// </summary>
/// <remarks>
/// Emit is cheap and never blocks for long: items are gathered into batches that leave when full
/// or when the process has nothing else to do. When a reader's queue is full, the process is held
/// after the current handler returns until there is room (backpressure). Use it only from the
/// process's own start action, handlers and completion action, not from threads of your own:
/// it is not thread-safe, by design (it is the hot path).
/// </remarks>
public sealed class Output<T> : IOutputPort
{
    private T[] _items = Array.Empty<T>();
    private ulong[]? _ids;
    private int _count;
    private BatchSender? _sender;
    private bool _tracksIds;
    private ItemIdentity? _identity;
    private ulong _salt;
    private ulong _nextFreeId;
    private bool _discarding;

    internal Output(Stream<T> stream, string process)
    {
        Stream = stream;
        Process = process;
    }

    /// <summary>The stream this writer appends to.</summary>
    public Stream<T> Stream { get; }

    internal string Process { get; }

    IStreamReference IOutputPort.Stream => Stream;
    BatchSender IOutputPort.Sender => _sender ?? throw new InvalidOperationException("Output is not wired.");
    long IOutputPort.ItemsOut => _sender?.ItemsOut ?? 0;
    int IOutputPort.ItemSize => System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
    internal int BufferedCount => _count;

    /// <summary>Appends <paramref name="item"/> to the stream. Every reader of the stream will see it, in order.</summary>
    /// <exception cref="InvalidOperationException">Called before the process started or after its outputs ended.</exception>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public void Emit(T item)
    {
        T[] items = _items;
        int n = _count;
        if ((uint)n < (uint)items.Length)
        {
            items[n] = item;
            if (_ids is { } ids) ids[n] = NextId();
            _count = ++n;
            if (n == items.Length) SendBuffered();
            return;
        }
        EmitSlow(item);
    }

    private void EmitSlow(T item)
    {
        BatchSender sender = _sender ?? throw NotRunning();
        sender.ThrowIfNotWritable();
        _items = sender.TakeSpareItems<T>() ?? new T[sender.BatchSize];
        _items[0] = item;
        if (_tracksIds)
        {
            _ids = sender.TakeSpareIds() ?? new ulong[sender.BatchSize];
            _ids[0] = NextId();
        }
        _count = 1;
        if (_items.Length == 1) SendBuffered();
    }

    private void SendBuffered()
    {
        if (_discarding)
        {
            _count = 0;
            return;
        }
        T[] full = _items;
        ulong[]? ids = _ids;
        int count = _count;
        _items = Array.Empty<T>();
        _ids = null;
        _count = 0;
        _sender!.Send(full, ids, count);
    }

    /// <summary>The id of the next item (placements that may deliver twice only).</summary>
    private ulong NextId() => _identity!.NextId(_salt, ref _nextFreeId);

    void IOutputPort.Attach(BatchSender sender)
    {
        _sender = sender;
        sender.ItemsHoldReferences = System.Runtime.CompilerServices.RuntimeHelpers.IsReferenceOrContainsReferences<T>();
        _identity = sender.Writer.Identity;
        _tracksIds = _identity is not null;
        _salt = ItemIds.Hash(Process + "\n" + Stream.Name);
    }

    void IOutputPort.Flush()
    {
        if (_count > 0) SendBuffered();
    }

    void IOutputPort.Discard(bool on)
    {
        _discarding = on;
        _count = 0;
    }

    private InvalidOperationException NotRunning() => new(
        $"Process '{Process}' cannot emit to stream '{Stream.Name}' yet: emit only while it runs (from its start action, a handler or its completion action).");
}

/// <summary>An output of a process, whatever its item type.</summary>
internal interface IOutputPort
{
    IStreamReference Stream { get; }
    BatchSender Sender { get; }
    long ItemsOut { get; }
    /// <summary>Bytes per item in a batch array (a reference for reference types).</summary>
    int ItemSize { get; }
    void Attach(BatchSender sender);
    /// <summary>Sends the partial batch, if any.</summary>
    void Flush();
    /// <summary>While on, what is emitted is dropped (a start action run again when a run resumes from a checkpoint).</summary>
    void Discard(bool on);
}
