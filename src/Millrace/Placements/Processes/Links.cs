using System.Net.Sockets;

namespace Millrace.Placements.Processes;

/// <summary>One writer-to-reader pair of one stream whose ends are in different OS processes.</summary>
internal sealed record LinkInfo(int Id, StreamInfo Stream, int WriterIndex, int Writer, int Reader);

/// <summary>
/// The streams that cross this child's boundary: a Unix socket per pair of OS processes, in each
/// direction that carries data. Room (credit) flows back on the same socket, so a writer never has
/// more than the stream capacity in flight towards one reader: backpressure crosses the boundary.
/// </summary>
internal sealed class ProcessLinks : ITransport, IDisposable
{
    private readonly GraphModel _model;
    private readonly int[] _groupOf;
    private readonly int _group;
    private readonly string _dir;
    private readonly RunContext _run;
    private readonly CodecSet _codecs;
    private readonly int _capacity;
    private readonly int _batchSize;
    private readonly LinkInfo[] _links;
    private readonly RemoteDestination?[] _outgoing;
    private readonly IncomingLink?[] _incoming;
    private readonly Connection?[] _toGroup;
    private readonly Connection?[] _fromGroup;
    private readonly List<Connection> _connections = new();
    private Socket? _listener;

    public ProcessLinks(GraphModel model, int[] groupOf, int group, string dir, RunContext run, RunOptions options)
    {
        _model = model;
        _groupOf = groupOf;
        _group = group;
        _dir = dir;
        _run = run;
        _codecs = new CodecSet(model.Codecs, options.Codec);
        _capacity = options.StreamCapacity;
        _batchSize = options.EffectiveBatchSize;
        _links = Table(model, groupOf);
        _outgoing = new RemoteDestination?[_links.Length];
        _incoming = new IncomingLink?[_links.Length];
        int groups = groupOf.Max() + 1;
        _toGroup = new Connection?[groups];
        _fromGroup = new Connection?[groups];
    }

    public static string SocketPath(string dir, int group) => Path.Combine(dir, $"g{group}.sock");

    /// <summary>Every cross-process link, numbered the same way in every OS process of the run.</summary>
    public static LinkInfo[] Table(GraphModel model, int[] groupOf)
    {
        var links = new List<LinkInfo>();
        foreach (StreamInfo stream in model.Streams.Values.OrderBy(s => s.Name, StringComparer.Ordinal))
            for (int k = 0; k < stream.Writers.Length; k++)
                foreach (int reader in stream.Readers)
                    if (groupOf[stream.Writers[k]] != groupOf[reader])
                        links.Add(new LinkInfo(links.Count, stream, k, stream.Writers[k], reader));
        return links.ToArray();
    }

    private LinkInfo Find(StreamShape stream, int writerIndex, int reader) =>
        _links.First(l => l.Stream.Name == stream.Name && l.WriterIndex == writerIndex && l.Reader == reader);

    private string Name(int process) => _model.Processes[process].Name;

    public Destination Outgoing(StreamShape stream, int writerIndex, int reader, bool inSameCycle)
    {
        LinkInfo link = Find(stream, writerIndex, reader);
        var destination = new RemoteDestination(this, link, _codecs.For(stream.ItemType), _capacity, Name(reader), inSameCycle);
        _outgoing[link.Id] = destination;
        return destination;
    }

    public RoomReturn? Incoming(StreamShape stream, int writerIndex, ProcessRunner reader, Lane lane)
    {
        LinkInfo link = Find(stream, writerIndex, _model.Shape.IndexOf(reader.Name));
        var incoming = new IncomingLink(link, reader, lane, _codecs.For(stream.ItemType));
        _incoming[link.Id] = incoming;
        // Room goes back half the capacity at a time, and all of it before the reader waits: each Room frame wakes the
        // writer's side twice (its link thread, then the writer), so fewer frames are fewer wake-ups (a quarter at a time,
        // one frame per full batch at the default sizes: 100M items 5% slower, 20% more context switches). Never more than
        // leaves a writer room for a whole batch: room held back below that could keep a writer waiting for as long as
        // another writer keeps this reader busy.
        int threshold = Math.Max(1, Math.Min(_capacity / 2, _capacity - _batchSize + 1));
        return new RoomReturn(count =>
        {
            incoming.RoomToReturn += count;
            if (incoming.RoomToReturn >= threshold) SendRoom(incoming);
        }, () =>
        {
            if (incoming.RoomToReturn > 0) SendRoom(incoming);
        })
        {
            // Items of a fixed size without references are decoded into the arrays of batches already handled: a new array per
            // batch costs the allocator fresh memory to clear and fault in (most of a processes run's page faults).
            Recycle = incoming.Codec.DecodesInto ? incoming.Spares.Return : null,
        };
    }

    /// <summary>Reader thread only (one reader per link).</summary>
    private void SendRoom(IncomingLink link)
    {
        int count = link.RoomToReturn;
        link.RoomToReturn = 0;
        try
        {
            _fromGroup[_groupOf[link.Info.Writer]]?.Send(FrameKind.Room, link.Info.Id, count);
        }
        catch (SocketException)
        {
            // The writer's OS process is gone; the coordinator reports that.
        }
    }

    internal void SendData(LinkInfo link, BatchCodec codec, Array items, int count) =>
        Guard(link, () =>
        {
            try
            {
                _toGroup[_groupOf[link.Reader]]!.SendData(link.Id, codec, items, count);
            }
            catch (Exception e) when (e is not SocketException)
            {
                throw new InvalidOperationException(
                    $"Process '{Name(link.Writer)}' could not encode a batch of stream '{link.Stream.Name}' for process '{Name(link.Reader)}' ({codec.Name} codec): {e.GetType().Name}: {e.Message}", e);
            }
        });

    internal void SendEnd(LinkInfo link) =>
        Guard(link, () => _toGroup[_groupOf[link.Reader]]!.Send(FrameKind.End, link.Id, 0));

    internal void SendMarker(LinkInfo link, long checkpoint) =>
        Guard(link, () =>
        {
            Connection connection = _toGroup[_groupOf[link.Reader]]!;
            connection.Send(FrameKind.Marker, link.Id, checked((int)checkpoint));
            connection.Flush();
        });

    internal void Flush(LinkInfo link) => Guard(link, () => _toGroup[_groupOf[link.Reader]]!.Flush());

    private void Guard(LinkInfo link, Action send)
    {
        try
        {
            send();
        }
        catch (SocketException e)
        {
            // The reader's OS process is gone. The coordinator sees it die and stops the run with that
            // as the reason; wait for that stop rather than report a second-hand error first.
            if (_run.HardToken.WaitHandle.WaitOne(TimeSpan.FromSeconds(10))) throw new OperationCanceledException(_run.HardToken);
            throw new IOException(
                $"Process '{Name(link.Writer)}' lost its connection to process '{Name(link.Reader)}' while writing stream '{link.Stream.Name}' (is its OS process gone?): {e.Message}", e);
        }
    }

    /// <summary>Starts accepting connections from writers in other OS processes.</summary>
    public void Listen()
    {
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath(_dir, _group)));
        _listener.Listen(64);
        StartThread("accept", () =>
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = _listener.Accept();
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    return;
                }
                var connection = new Connection(socket);
                lock (_connections) _connections.Add(connection);
                StartThread("in", () => ReadIncoming(connection));
            }
        });
    }

    /// <summary>
    /// Connects to every OS process that reads a stream written here, waiting (briefly, a few
    /// milliseconds at a time) for those that have not started listening yet.
    /// </summary>
    public void ConnectOutgoing(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + timeout;
        foreach (int group in _links.Where(l => _groupOf[l.Writer] == _group).Select(l => _groupOf[l.Reader]).Distinct())
        {
            Socket socket;
            string path = SocketPath(_dir, group);
            while (true)
            {
                // Its reader starts at the same time: until its socket exists, look again (a failed connect throws, and
                // an exception costs a starting runtime far more CPU than a look at the folder).
                if (!File.Exists(path))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    if (DateTime.UtcNow > deadline)
                        throw new TimeoutException($"The OS process of {Names(group)} did not listen for connections within {timeout.TotalSeconds:0} s.");
                    Thread.Sleep(2);
                    continue;
                }
                socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    socket.Connect(new UnixDomainSocketEndPoint(path));
                    break;
                }
                catch (SocketException e)
                {
                    socket.Dispose();
                    cancellationToken.ThrowIfCancellationRequested();
                    if (DateTime.UtcNow > deadline)
                        throw new TimeoutException($"The OS process of {Names(group)} did not accept connections within {timeout.TotalSeconds:0} s: {e.Message}");
                    Thread.Sleep(2);
                }
            }
            var connection = new Connection(socket);
            lock (_connections) _connections.Add(connection);
            connection.Send(FrameKind.Hello, _group, 0);
            _toGroup[group] = connection;
            StartThread("out", () => ReadOutgoing(connection, group));
        }
    }

    private string Names(int group) =>
        string.Join(", ", Enumerable.Range(0, _groupOf.Length).Where(p => _groupOf[p] == group).Select(p => $"'{Name(p)}'"));

    private void ReadIncoming(Connection connection)
    {
        int from = -1;
        var received = new long[_links.Length];
        try
        {
            connection.ReadFrames((kind, linkId, count, payload) =>
            {
                if (from < 0)
                {
                    if (kind != FrameKind.Hello || linkId >= _fromGroup.Length)
                        throw new InvalidDataException($"A connection began with a {kind} frame instead of saying which OS process it comes from.");
                    from = linkId;
                    _fromGroup[from] = connection;
                    return;
                }
                IncomingLink link = linkId < _incoming.Length && _incoming[linkId] is { } l && _groupOf[l.Info.Writer] == from
                    ? l
                    : throw new InvalidDataException($"A {kind} frame names link {linkId}, which does not lead from that OS process to this one.");
                switch (kind)
                {
                    case FrameKind.Data:
                        Array items;
                        try
                        {
                            items = link.Spares.Take(count) is { } spare ? link.Codec.Decode(payload, count, spare) : link.Codec.Decode(payload, count);
                        }
                        catch (Exception e)
                        {
                            string reader = link.Reader.Name, stream = link.Info.Stream.Name;
                            _run.Fail(new ProcessFailure(reader, stream, received[linkId], null,
                                $"Process '{reader}' could not decode a batch of stream '{stream}' from process '{Name(link.Info.Writer)}' " +
                                $"(items {received[linkId]} to {received[linkId] + count - 1} of that writer, {payload.Length} bytes, {link.Codec.Name} codec): {e.GetType().Name}: {e.Message}", e));
                            throw new OperationCanceledException();
                        }
                        received[linkId] += count;
                        link.Reader.Inbox.EnqueueRemote(link.Lane, items, count, link.Info.WriterIndex);
                        break;
                    case FrameKind.End:
                        link.Reader.Inbox.EnqueueControl(new Envelope(EnvelopeKind.End, link.Lane, null, 0, link.Info.WriterIndex));
                        break;
                    case FrameKind.Marker when link.Reader.Checkpoints is not null:
                        link.Reader.Inbox.EnqueueControl(new Envelope(EnvelopeKind.Marker, link.Lane, null, 0, link.Info.WriterIndex, Checkpoint: count));
                        break;
                    default:
                        throw new InvalidDataException($"A {kind} frame came on a connection that carries data to this OS process.");
                }
            });
        }
        catch (OperationCanceledException)
        {
        }
        catch (InvalidDataException e)
        {
            FailCorrupt(from, e);
        }
    }

    private void ReadOutgoing(Connection connection, int group)
    {
        try
        {
            connection.ReadFrames((kind, linkId, count, _) =>
            {
                if (kind != FrameKind.Room || linkId >= _outgoing.Length || _outgoing[linkId] is not { } destination)
                    throw new InvalidDataException($"A {kind} frame for link {linkId} came back on a connection that only returns room.");
                destination.AddRoom(count);
            });
        }
        catch (InvalidDataException e)
        {
            FailCorrupt(group, e);
        }
    }

    private void FailCorrupt(int fromGroup, Exception e)
    {
        string here = string.Join(", ", Enumerable.Range(0, _groupOf.Length).Where(p => _groupOf[p] == _group).Select(p => $"'{Name(p)}'"));
        string there = fromGroup < 0 ? "an unknown OS process" : "the OS process of " + Names(fromGroup);
        _run.Fail(new ProcessFailure(here.Replace("'", ""), null, null, null,
            $"Process {here} received a corrupt frame from {there}: {e.Message}", e));
    }

    private static void StartThread(string what, Action body) =>
        new Thread(() => body()) { IsBackground = true, Name = "millrace link " + what }.Start();

    public void Dispose()
    {
        _listener?.Dispose();
        lock (_connections)
        {
            foreach (Connection c in _connections) c.Dispose();
        }
    }

    private sealed record IncomingLink(LinkInfo Info, ProcessRunner Reader, Lane Lane, BatchCodec Codec)
    {
        /// <summary>Arrays of handled batches, to decode the next ones into.</summary>
        public SpareArrays Spares { get; } = new();

        /// <summary>Room taken but not yet returned to the writer. Reader thread only.</summary>
        public int RoomToReturn { get; set; }
    }
}

/// <summary>A reader in another OS process: batches leave as Data frames, within the room the reader has granted.</summary>
internal sealed class RemoteDestination : Destination
{
    private readonly ProcessLinks _links;
    private readonly LinkInfo _link;
    private readonly BatchCodec _codec;
    private readonly int _capacity;
    private readonly object _lock = new();
    private int _outstanding;
    private ProcessRunner? _waiter;

    public RemoteDestination(ProcessLinks links, LinkInfo link, BatchCodec codec, int capacity, string readerName, bool inSameCycle)
        : base(readerName, link.WriterIndex, inSameCycle)
    {
        _links = links;
        _link = link;
        _codec = codec;
        _capacity = capacity;
    }

    public override bool TryEnqueue(Array items, ulong[]? ids, int count, ProcessRunner writer)
    {
        lock (_lock)
        {
            if (_outstanding > 0 && _outstanding + count > _capacity)
            {
                _waiter = writer;
                return false;
            }
            _outstanding += count;
        }
        try
        {
            _links.SendData(_link, _codec, items, count);
        }
        catch
        {
            lock (_lock) _outstanding -= count;
            throw;
        }
        return true;
    }

    public override void SendEnd() => _links.SendEnd(_link);

    /// <summary>The items are encoded into the connection's buffer before TryEnqueue returns.</summary>
    public override bool KeepsArrays => false;

    public override void SendMarker(long checkpoint) => _links.SendMarker(_link, checkpoint);

    public override void Flush() => _links.Flush(_link);

    public void AddRoom(int count)
    {
        ProcessRunner? waiter;
        lock (_lock)
        {
            _outstanding -= count;
            waiter = _waiter;
            _waiter = null;
        }
        waiter?.WakeForRoom();
    }

    public override string Fill
    {
        get { lock (_lock) return $"{_outstanding} of {_capacity} items in flight or queued"; }
    }
}

/// <summary>
/// Arrays of one link's batches that its reader has handled (the reader's thread returns them), for the link's thread to
/// decode the next batches into. Only arrays of the longest batch length seen are kept (full batches), at most a few.
/// </summary>
internal sealed class SpareArrays
{
    private const int Most = 8;
    private readonly object _lock = new();
    private readonly Array?[] _arrays = new Array?[Most];
    private int _count;
    private int _length;

    /// <summary>An array of exactly <paramref name="length"/> items to fill, or null.</summary>
    public Array? Take(int length)
    {
        lock (_lock)
        {
            if (_count == 0 || length != _length) return null;
            Array array = _arrays[--_count]!;
            _arrays[_count] = null;
            return array;
        }
    }

    /// <summary>Keeps an array whose items are all handled (dropped when there are enough, or it is shorter than full batches).</summary>
    public void Return(Array array)
    {
        lock (_lock)
        {
            if (array.Length > _length)
            {
                Array.Clear(_arrays);
                _count = 0;
                _length = array.Length;
            }
            if (array.Length == _length && _count < Most) _arrays[_count++] = array;
        }
    }
}
