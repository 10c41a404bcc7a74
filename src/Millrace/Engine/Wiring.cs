namespace Millrace.Engine;

/// <summary>Links to processes hosted by other OS processes (the processes placement).</summary>
internal interface IRemoteLinks
{
    /// <summary>A destination for <paramref name="writer"/>'s batches of <paramref name="stream"/> to a reader elsewhere.</summary>
    Destination Outgoing(StreamInfo stream, int writer, int writerIndex, int reader, bool inSameCycle);

    /// <summary>
    /// Accepts batches of <paramref name="stream"/> from a writer elsewhere into <paramref name="lane"/>;
    /// returns how to give room back (gathered) and how to send what was gathered.
    /// </summary>
    (Action<int> ReturnRoom, Action FlushRoom)? Incoming(StreamInfo stream, int writerIndex, int readerIndex, ProcessRunner reader, Lane lane);

    /// <summary>
    /// Every stream goes through these links, even between processes of this OS process (the broker
    /// placement: replicas elsewhere compete for the same messages).
    /// </summary>
    bool CarriesEverything => false;
}

internal static class Wiring
{
    private const int MaxBatchBytes = 64 * 1024;

    /// <summary>
    /// Gives every hosted reader a lane per input stream, and every hosted writer a destination per
    /// reader. <paramref name="runners"/> has null for processes hosted elsewhere.
    /// </summary>
    public static void Wire(GraphModel model, ProcessRunner?[] runners, RunOptions options, IRemoteLinks? remote)
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
                    if (remote!.Incoming(stream, k, r, reader, lane) is not var (returnRoom, flushRoom)) continue;
                    lane.ReturnRoom ??= new Action<int>?[stream.Writers.Length];
                    lane.ReturnRoom[k] = returnRoom;
                    lane.FlushRoom += flushRoom;
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
                        : remote!.Outgoing(stream, w, writerIndex, r, model.InSameCycle(w, r)))
                    .ToArray();
                output.Attach(new BatchSender(writer, stream.Name, destinations, batchSize, maxPending));
            }
        }
    }
}
