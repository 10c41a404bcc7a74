using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;

namespace Millrace;

/// <summary>
/// Items the host program pushes into a stream from any thread (an HTTP handler, a UI, a callback
/// API): get one from <see cref="Graph.Writer{T}(string, Stream{T}, int)"/>. Writing waits while
/// the stream's source has <c>capacity</c> items not yet taken (backpressure); <see cref="Complete"/>
/// ends the stream.
/// </summary>
/// <remarks>
/// The items reach the graph in the OS process that runs the writer's source process: with the
/// threads placement, the program itself. In the processes and broker placements the program's
/// code runs again in each OS process, so write only where that process runs (in the broker
/// placement, on the host started with <c>--processes</c> naming it).
/// </remarks>
public sealed class SourceWriter<T>
{
    private readonly Channel<T> _channel;

    internal SourceWriter(string name, int capacity)
    {
        Name = name;
        _channel = Channel.CreateBounded<T>(new BoundedChannelOptions(capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    }

    /// <summary>The source process's name.</summary>
    public string Name { get; }

    /// <summary>Writes an item, waiting while the source is full.</summary>
    /// <exception cref="InvalidOperationException">After <see cref="Complete"/>.</exception>
    public async ValueTask WriteAsync(T item, CancellationToken cancellationToken = default)
    {
        try
        {
            await _channel.Writer.WriteAsync(item, cancellationToken);
        }
        catch (ChannelClosedException)
        {
            throw new InvalidOperationException($"Source '{Name}' is complete; nothing more can be written to it.");
        }
    }

    /// <summary>Writes an item if the source has room now; false if it is full.</summary>
    public bool TryWrite(T item) => _channel.Writer.TryWrite(item);

    /// <summary>Ends the stream: the source ends once what was written has been emitted.</summary>
    public void Complete() => _channel.Writer.TryComplete();

    internal async IAsyncEnumerable<T> Items([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        try
        {
            await foreach (T item in _channel.Reader.ReadAllAsync(cancellationToken)) yield return item;
        }
        finally
        {
            // The source has ended (or the run stopped): writers waiting for room must not wait for ever.
            _channel.Writer.TryComplete();
        }
    }
}

public sealed partial class Graph
{
    /// <summary>
    /// Declares a source process fed by the host program through the returned <see cref="SourceWriter{T}"/>:
    /// at most <paramref name="capacity"/> items wait to be emitted.
    /// </summary>
    public SourceWriter<T> Writer<T>(string name, Stream<T> output, int capacity = 1024)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (capacity < 1) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"Writer '{name}': the capacity must be at least 1.");
        var writer = new SourceWriter<T>(name, capacity);
        Source(name, output, writer.Items());
        return writer;
    }

    /// <summary>
    /// Declares a source process that emits the lines of a text file (UTF-8, without their line
    /// ends). With <paramref name="follow"/>, it keeps waiting for lines appended to the file, like
    /// <c>tail -f</c>, until the run is stopped; a line is emitted only once its line end is written
    /// (never half a line), and a file that shrinks (truncated or replaced) is read again from its start.
    /// With checkpoints, a resumed run reads the file again and passes over the lines it had emitted: the
    /// file must still begin with them (a file that is only appended to).
    /// </summary>
    public void Lines(string name, Stream<string> output, string path, bool follow = false)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentException.ThrowIfNullOrEmpty(path);
        // Rewindable: a checkpoint keeps how many lines it emitted; a resumed run reads the file again and passes over them.
        Process(name, p => p.SetSource(new Engine.AsyncEnumerableSource<string>(p.Output(output), ReadLines(path, follow), rewindable: true)));
    }

    private static async IAsyncEnumerable<string> ReadLines(string path, bool follow, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var pending = new List<byte>();
        var buffer = new byte[64 * 1024];
        long position = 0;
        while (true)
        {
            if (follow && !File.Exists(path))
            {
                // Not there yet, or being rotated: wait for it.
                await Task.Delay(100, cancellationToken);
                continue;
            }
            await using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, useAsync: true))
            {
                if (file.Length < position)
                {
                    // Truncated or replaced: start again.
                    position = 0;
                    pending.Clear();
                }
                file.Position = position;
                int read;
                while ((read = await file.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    position += read;
                    int start = 0;
                    for (int i = 0; i < read; i++)
                    {
                        if (buffer[i] != (byte)'\n') continue;
                        pending.AddRange(buffer.AsSpan(start, i - start).ToArray());
                        yield return Line(pending);
                        pending.Clear();
                        start = i + 1;
                    }
                    pending.AddRange(buffer.AsSpan(start, read - start).ToArray());
                }
            }
            if (!follow)
            {
                if (pending.Count > 0) yield return Line(pending); // the last line may have no line end
                yield break;
            }
            await Task.Delay(100, cancellationToken);
        }

        static string Line(List<byte> bytes)
        {
            int count = bytes.Count > 0 && bytes[^1] == (byte)'\r' ? bytes.Count - 1 : bytes.Count;
            return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes)[..count]);
        }
    }
}
