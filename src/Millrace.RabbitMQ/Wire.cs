using System.Globalization;
using System.Text;

namespace Millrace.RabbitMQ;

/// <summary>
/// Names and message format of the broker placement (documented in docs/broker-placement.md, so
/// that programs in other languages can read and write Millrace streams).
/// </summary>
internal static class Wire
{
    /// <summary>Who wrote a message: the writing process's name.</summary>
    public const string WriterHeader = "millrace-writer";

    /// <summary>Ids of the items, in order: ranges "first:count" separated by commas (decimal, unsigned 64-bit).</summary>
    public const string IdsHeader = "millrace-ids";

    /// <summary>How many items the body holds (required for binary bodies; optional for JSON).</summary>
    public const string CountHeader = "millrace-count";

    /// <summary>With checkpoints on: the generation of the run that wrote the message (older ones are dropped).</summary>
    public const string GenerationHeader = "millrace-generation";

    /// <summary>A checkpoint marker's number.</summary>
    public const string CheckpointHeader = "millrace-checkpoint";

    public const string MarkerType = "marker";

    /// <summary>
    /// "INCARNATION:N": the message's place among those one incarnation of a process wrote to one stream (0, 1, 2...).
    /// A message the broker refused (a full queue) is published again after newer ones; readers put them back in order.
    /// </summary>
    public const string SequenceHeader = "millrace-seq";

    public const string DataType = "data";
    public const string EndType = "end";

    public static string Exchange(string prefix, string stream) => $"{prefix}.{stream}";

    public static string Queue(string prefix, string stream, string reader) => $"{prefix}.{stream}.{reader}";

    public static string ControlExchange(string prefix) => $"{prefix}.control";

    /// <summary>
    /// The run's dead-letter exchange and queue (the same name; a ':' no stream name has): messages its processes could not
    /// read, moved there with the reason in their headers (<see cref="BrokerOptions.PoisonMessages"/>).
    /// </summary>
    public static string DeadLetters(string prefix) => $"{prefix}:dead-letters";

    /// <summary>Headers a message moved to the dead-letter queue gets (its own stay as they were).</summary>
    public const string PoisonReasonHeader = "millrace-poison-reason";
    public const string PoisonProcessHeader = "millrace-poison-process";
    public const string PoisonStreamHeader = "millrace-poison-stream";
    public const string PoisonQueueHeader = "millrace-poison-queue";
    public const string PoisonMessageIdHeader = "millrace-poison-message-id";
    public const string PoisonTimeHeader = "millrace-poison-time";

    public static string ContentType(string codec) => codec == "json" ? "application/json" : $"application/vnd.millrace.{codec}";

    /// <summary>"first:count" ranges of consecutive ids.</summary>
    public static string EncodeIds(ulong[] ids, int count)
    {
        var text = new StringBuilder(32);
        int i = 0;
        while (i < count)
        {
            int run = 1;
            while (i + run < count && ids[i + run] == unchecked(ids[i] + (ulong)run)) run++;
            if (text.Length > 0) text.Append(',');
            text.Append(ids[i].ToString(CultureInfo.InvariantCulture)).Append(':').Append(run.ToString(CultureInfo.InvariantCulture));
            i += run;
        }
        return text.ToString();
    }

    /// <exception cref="FormatException">The header is not a list of ids and runs, or names another number of ids than <paramref name="count"/>.</exception>
    public static ulong[] DecodeIds(string text, int count)
    {
        // Parsed first, allocated after: the array's size is what the header really names, never a count it only claims.
        var ranges = new List<(ulong First, int Run)>();
        long n = 0;
        foreach (string range in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int colon = range.IndexOf(':');
            if (!ulong.TryParse(colon < 0 ? range : range[..colon], NumberStyles.None, CultureInfo.InvariantCulture, out ulong first))
                throw new FormatException($"header {IdsHeader}: '{Shorten(range)}' is not an id or an id:run");
            int run = 1;
            if (colon >= 0 && !int.TryParse(range[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out run))
                throw new FormatException($"header {IdsHeader}: '{Shorten(range)}' has no valid run after its ':'");
            n += run;
            if (run < 1 || n > count)
                throw new FormatException($"header {IdsHeader} names more ids than the body has items ({count})");
            ranges.Add((first, run));
        }
        if (n != count) throw new FormatException($"header {IdsHeader} names {n} ids for {count} items");
        var ids = new ulong[n];
        int i = 0;
        foreach ((ulong first, int run) in ranges)
        {
            for (int k = 0; k < run; k++) ids[i++] = unchecked(first + (ulong)k);
        }
        return ids;
    }

    private static string Shorten(string s) => s.Length <= 30 ? s : s[..30] + "…";

    public static string? Text(IDictionary<string, object?>? headers, string name) =>
        headers is not null && headers.TryGetValue(name, out object? value)
            ? value switch
            {
                byte[] bytes => Encoding.UTF8.GetString(bytes),
                string s => s,
                null => null,
                _ => Convert.ToString(value, CultureInfo.InvariantCulture),
            }
            : null;
}
