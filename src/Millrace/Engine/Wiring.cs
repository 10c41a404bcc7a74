namespace Millrace.Engine;

/// <summary>
/// How a placement carries streams to and from processes hosted elsewhere (Unix sockets in the
/// processes placement, exchanges and queues on a broker). <see cref="RunHost.Wire"/> asks it for each
/// link that leaves or enters this OS process.
/// </summary>
public interface ITransport
{
    /// <summary>
    /// A destination for the batches that writer number <paramref name="writerIndex"/> of <paramref name="stream"/>
    /// (hosted here) sends to process <paramref name="reader"/> (hosted elsewhere, or anywhere when
    /// <see cref="CarriesEverything"/>); <paramref name="inSameCycle"/>: both are in one cycle.
    /// </summary>
    Destination Outgoing(StreamShape stream, int writerIndex, int reader, bool inSameCycle);

    /// <summary>
    /// Batches of <paramref name="stream"/> from writer number <paramref name="writerIndex"/> (elsewhere)
    /// to <paramref name="reader"/> (here) are to be handed to it through <paramref name="lane"/>
    /// (<see cref="ProcessRunner.Deliver"/>). Returns how the reader gives room back as it takes batches, or null.
    /// </summary>
    RoomReturn? Incoming(StreamShape stream, int writerIndex, ProcessRunner reader, Lane lane);

    /// <summary>
    /// Every stream goes through these links, even between processes of this OS process (the broker
    /// placement: replicas elsewhere compete for the same messages).
    /// </summary>
    bool CarriesEverything => false;
}

/// <summary>How a reader gives room back to a writer elsewhere: <see cref="Taken"/> as it takes each batch (items), <see cref="Flush"/> before it waits.</summary>
/// <param name="Taken">Called on the reader's thread with the items of each batch it takes from that writer.</param>
/// <param name="Flush">Called on the reader's thread before it waits: room gathered must go now.</param>
public sealed record RoomReturn(Action<int> Taken, Action Flush)
{
    /// <summary>
    /// Called on the reader's thread with a batch's array once its items are handled (nothing refers to it any more), or
    /// null: a transport that decodes into arrays can fill it again instead of allocating the next one.
    /// </summary>
    public Action<Array>? Recycle { get; init; }
}

internal static class Wiring
{
    private const int MaxBatchBytes = 64 * 1024;

    /// <summary>
    /// Gives every hosted reader a lane per input stream, and every hosted writer a destination per
    /// reader. <paramref name="runners"/> has null for processes hosted elsewhere.
    /// </summary>
    public static void Wire(GraphModel model, ProcessRunner?[] runners, RunOptions options, ITransport? remote)
    {
        bool all = remote?.CarriesEverything ?? false;
        var lanes = new Dictionary<(int Reader, string Stream), Lane>();
        for (int r = 0; r < runners.Length; r++)
        {
            if (runners[r] is not { } reader) continue;
            foreach (InputSpec input in model.Processes[r].Inputs)
            {
                StreamInfo stream = model.Streams[input.Stream.Name];
                Lane lane = reader.AddLane(input, options.StreamCapacity, stream.Writers.Length);
                lane.CycleWriters = Enumerable.Range(0, stream.Writers.Length)
                    .Where(k => model.InSameCycle(stream.Writers[k], r)).ToArray();
                for (int k = 0; k < stream.Writers.Length; k++)
                {
                    if (runners[stream.Writers[k]] is not null && !all) continue;
                    if (remote!.Incoming(model.Shape.Stream(stream.Name), k, reader, lane) is not { } room) continue;
                    lane.ReturnRoom ??= new Action<int>?[stream.Writers.Length];
                    lane.ReturnRoom[k] = room.Taken;
                    lane.FlushRoom += room.Flush;
                    if (room.Recycle is not null)
                    {
                        lane.Recycle ??= new Action<Array>?[stream.Writers.Length];
                        lane.Recycle[k] = room.Recycle;
                    }
                }
                lanes[(r, stream.Name)] = lane;
            }
        }
        for (int w = 0; w < runners.Length; w++)
        {
            if (runners[w] is not { } writer) continue;
            foreach (IOutputPort output in model.Processes[w].Outputs)
            {
                // Batch arrays stay below 64 KiB, clear of the large object heap, whatever the item size.
                int batchSize = Math.Min(options.EffectiveBatchSize, Math.Max(16, MaxBatchBytes / output.ItemSize));
                int maxPending = Math.Max(4, options.StreamCapacity / batchSize);
                StreamInfo stream = model.Streams[output.Stream.Name];
                int writerIndex = Array.IndexOf(stream.Writers, w);
                Destination[] destinations = stream.Readers
                    .Select(r => runners[r] is { } reader && !all
                        ? new LocalDestination(reader, lanes[(r, stream.Name)], writerIndex, model.InSameCycle(w, r))
                        : remote!.Outgoing(model.Shape.Stream(stream.Name), writerIndex, r, model.InSameCycle(w, r)))
                    .ToArray();
                output.Attach(new BatchSender(writer, stream.Name, destinations, batchSize, maxPending));
            }
        }
    }
}
