namespace Millrace;

/// <summary>
/// What a process does when its handler throws on an item (<see cref="ProcessBuilder.OnError"/>): stop the run
/// (the default), skip the item, put it on a dead-letter stream, or retry it first. Whatever the policy, more than
/// <see cref="MaxFailures"/> failures within <see cref="Window"/> stop the run: that many is a bug, not bad data.
/// </summary>
/// <example>
/// <code>
/// graph.Process("parse", p =>
/// {
///     p.OnError(ErrorPolicy.Retry(3, TimeSpan.FromMilliseconds(100), then: ErrorPolicy.DeadLetter(graph.DeadLetters)));
///     p.On(lines, line => o.Emit(Parse(line)));
/// });
/// graph.Sink("bad", graph.DeadLetters, d => Console.Error.WriteLine($"{d.Process}: {d.Message} ({d.Item})"));
/// </code>
/// </example>
public sealed record ErrorPolicy
{
    internal enum Kinds { Stop, Skip, DeadLetter, Retry }

    private ErrorPolicy(Kinds kind) => Kind = kind;

    internal Kinds Kind { get; }

    internal Stream<DeadLetter>? Target { get; private init; }

    internal int Attempts { get; private init; }

    internal TimeSpan FirstDelay { get; private init; }

    internal ErrorPolicy? Then { get; private init; }

    /// <summary>The run fails, naming the process, the stream, the item and the exception (the default).</summary>
    public static ErrorPolicy Stop { get; } = new(Kinds.Stop);

    /// <summary>The item is counted (<see cref="ProcessStats.ItemsSkipped"/>), logged with the process, stream, item index and exception, and passed over.</summary>
    public static ErrorPolicy Skip { get; } = new(Kinds.Skip);

    /// <summary>
    /// The item goes to <paramref name="to"/> (usually <see cref="Graph.DeadLetters"/>) as a <see cref="Millrace.DeadLetter"/>: the item as
    /// JSON, its id, the process, the input stream, the item's index, the exception's type and message, and the time; counted in
    /// <see cref="ProcessStats.ItemsDeadLettered"/>. Some process must read that stream.
    /// </summary>
    public static ErrorPolicy DeadLetter(Stream<DeadLetter> to)
    {
        ArgumentNullException.ThrowIfNull(to);
        return new ErrorPolicy(Kinds.DeadLetter) { Target = to };
    }

    /// <summary>
    /// The handler is called again for the item, up to <paramref name="attempts"/> more times, after <paramref name="firstDelay"/>
    /// and then twice as long each time (at most 30 s); while it waits, the process handles nothing else (the order of its items
    /// is kept). If every attempt fails, <paramref name="then"/> decides (Stop by default).
    /// </summary>
    /// <param name="attempts">1 to 20 more calls.</param>
    /// <param name="firstDelay">The pause before the first retry (0 to 30 s).</param>
    /// <param name="then">What happens after the last failed attempt: <see cref="Stop"/>, <see cref="Skip"/> or <see cref="DeadLetter"/>.</param>
    public static ErrorPolicy Retry(int attempts, TimeSpan firstDelay, ErrorPolicy? then = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(attempts, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(attempts, 20);
        if (firstDelay < TimeSpan.Zero || firstDelay > MaxDelay)
            throw new ArgumentOutOfRangeException(nameof(firstDelay), firstDelay, "The first delay must be 0 to 30 seconds.");
        if (then is { Kind: Kinds.Retry }) throw new ArgumentException("After retries comes Stop, Skip or DeadLetter, not more retries.", nameof(then));
        return new ErrorPolicy(Kinds.Retry) { Attempts = attempts, FirstDelay = firstDelay, Then = then ?? Stop, MaxFailures = then?.MaxFailures ?? 100, Window = then?.Window ?? TimeSpan.FromMinutes(1) };
    }

    internal static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A policy as the command line gives it (<c>--on-error NAME=POLICY</c>): <c>stop</c>, <c>skip</c>, <c>dead-letter</c> (to the
    /// dead-letter stream the process's code declared), or <c>retry:N</c> / <c>retry:N:THEN</c> (N more calls, 100 ms apart at first,
    /// then stop, skip or dead-letter).
    /// </summary>
    /// <exception cref="ArgumentException">The text is none of these; the message says what is allowed.</exception>
    public static ErrorPolicy Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] parts = text.Trim().ToLowerInvariant().Split(':');
        ErrorPolicy? Simple(string word) => word switch
        {
            "stop" => Stop,
            "skip" => Skip,
            "dead-letter" => new ErrorPolicy(Kinds.DeadLetter),
            _ => null,
        };
        if (parts.Length == 1 && Simple(parts[0]) is { } simple) return simple;
        if (parts[0] == "retry" && parts.Length is 2 or 3 &&
            int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int attempts) &&
            attempts is >= 1 and <= 20 && (parts.Length == 2 || Simple(parts[2]) is not null))
        {
            ErrorPolicy then = parts.Length == 3 ? Simple(parts[2])! : Stop;
            return new ErrorPolicy(Kinds.Retry) { Attempts = attempts, FirstDelay = TimeSpan.FromMilliseconds(100), Then = then };
        }
        throw new ArgumentException($"'{text}' is not an error policy: stop, skip, dead-letter, retry:N or retry:N:THEN (N from 1 to 20, THEN stop, skip or dead-letter).");
    }

    /// <summary>More failures than this within <see cref="Window"/> stop the run whatever the policy (default 100).</summary>
    public int MaxFailures { get; init; } = 100;

    /// <summary>The window <see cref="MaxFailures"/> counts in (default one minute).</summary>
    public TimeSpan Window { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>The policy that finally decides (after retries).</summary>
    internal ErrorPolicy Final => Kind == Kinds.Retry ? Then! : this;

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        Kinds.Retry => $"retry {Attempts} times, then {Then}",
        Kinds.DeadLetter => Target is null ? "dead-letter" : $"dead-letter to '{Target.Name}'",
        _ => Kind.ToString().ToLowerInvariant(),
    };
}

/// <summary>An item a process could not handle, with why (<see cref="ErrorPolicy.DeadLetter"/>).</summary>
/// <param name="Process">The process whose handler threw.</param>
/// <param name="Stream">The input stream the item came on.</param>
/// <param name="ItemIndex">The item's position in that stream, as this process counts it (from 0).</param>
/// <param name="Item">The item as JSON (or its text when it cannot be written as JSON).</param>
/// <param name="ItemId">The item's id where the placement gives items ids (the broker placement), else null.</param>
/// <param name="ExceptionType">The exception's type, in full.</param>
/// <param name="Message">The exception's message.</param>
/// <param name="Time">When it failed for the last time.</param>
public sealed record DeadLetter(string Process, string Stream, long ItemIndex, string Item, string? ItemId, string ExceptionType, string Message, DateTimeOffset Time);
