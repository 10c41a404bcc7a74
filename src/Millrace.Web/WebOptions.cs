namespace Millrace.Web;

/// <summary>How a web source listens, where it keeps what it accepted, and its bounds.</summary>
public sealed class WebOptions
{
    /// <summary>Where to listen, e.g. <c>http://127.0.0.1:5080</c> (port 0: any free port, announced on standard output). Several separated by ';'.</summary>
    public string Urls { get; set; } = "http://127.0.0.1:5080";

    /// <summary>
    /// The spool folder: every accepted file is written and flushed here before its sender hears
    /// it was accepted, and stays until it is released (see <see cref="WebSource.Release"/>), so
    /// a restart sends again whatever was not yet stored. One folder per web source.
    /// </summary>
    public string Spool { get; set; } = "millrace-spool";

    /// <summary>A folder to watch (optional): files dropped there are taken once each, moved into the spool.</summary>
    public string? Watch { get; set; }

    /// <summary>The largest file accepted, in bytes (larger: 413). Default 16 MiB.</summary>
    public long MaxFileBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>Files accepted and waiting to enter the stream (more: 503 with Retry-After, after a wait of up to a second). Default 256.</summary>
    public int MaxWaiting { get; set; } = 256;

    /// <summary>Uploads being received at once (more: 503 with Retry-After). Each holds up to <see cref="MaxFileBytes"/> in memory. Default 64.</summary>
    public int MaxUploads { get; set; } = 64;

    /// <summary>The longest an upload may take to arrive (longer: 408). Default 5 minutes.</summary>
    public TimeSpan UploadTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Files in the spool not yet released (more: 503 with Retry-After). Default 100,000.</summary>
    public int MaxSpooled { get; set; } = 100_000;

    /// <summary>
    /// Starts at which a spooled file is sent again without being stored; at the next it is moved to
    /// the spool's <c>damaged/</c> folder and named on standard error (a file that makes the pipeline
    /// fail would otherwise fail every start). Default 5.
    /// </summary>
    public int MaxReplays { get; set; } = 5;

    /// <summary>Open connections at most. Default 4,096.</summary>
    public int MaxConnections { get; set; } = 4096;

    /// <summary>What a 503 tells the client to wait before trying again. Default 1 s.</summary>
    public TimeSpan RetryAfter { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>A folder file is taken once its size and time have not changed for this long. Default 1 s.</summary>
    public TimeSpan SettleTime { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How often the watched folder is looked at. Default 250 ms.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Where the source's notices go (a file left in the folder, a spool that cannot be written), as structured log events; standard error when null.</summary>
    public Microsoft.Extensions.Logging.ILogger? Logger { get; set; }

    /// <summary>Print the address listened on to standard output when it starts. Default true.</summary>
    public bool Announce { get; set; } = true;

    internal void Check(string source)
    {
        string where = $"Web source '{source}'";
        if (string.IsNullOrWhiteSpace(Urls)) throw new ArgumentException($"{where}: Urls is empty; give e.g. http://127.0.0.1:5080.");
        foreach (string url in Urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            if (!Uri.TryCreate(url, UriKind.Absolute, out Uri? uri) || uri.Scheme != Uri.UriSchemeHttp)
                throw new ArgumentException($"{where}: '{url}' is not an http:// address such as http://127.0.0.1:5080.");
        if (string.IsNullOrWhiteSpace(Spool)) throw new ArgumentException($"{where}: Spool is empty; give a folder.");
        if (MaxFileBytes < 1) throw new ArgumentException($"{where}: MaxFileBytes must be at least 1, not {MaxFileBytes}.");
        if (MaxWaiting < 1) throw new ArgumentException($"{where}: MaxWaiting must be at least 1, not {MaxWaiting}.");
        if (MaxReplays < 1) throw new ArgumentException($"{where}: MaxReplays must be at least 1, not {MaxReplays}.");
        if (MaxUploads < 1) throw new ArgumentException($"{where}: MaxUploads must be at least 1, not {MaxUploads}.");
        if (UploadTimeout <= TimeSpan.Zero) throw new ArgumentException($"{where}: UploadTimeout must be positive.");
        if (MaxFileBytes > int.MaxValue - 1024 * 1024) throw new ArgumentException($"{where}: MaxFileBytes can be at most {int.MaxValue - 1024 * 1024} (files are held in memory), not {MaxFileBytes}.");
        if (MaxSpooled < 1) throw new ArgumentException($"{where}: MaxSpooled must be at least 1, not {MaxSpooled}.");
        if (MaxConnections < 1) throw new ArgumentException($"{where}: MaxConnections must be at least 1, not {MaxConnections}.");
        if (RetryAfter < TimeSpan.Zero) throw new ArgumentException($"{where}: RetryAfter cannot be negative.");
        if (PollInterval <= TimeSpan.Zero) throw new ArgumentException($"{where}: PollInterval must be positive.");
        if (SettleTime < TimeSpan.Zero) throw new ArgumentException($"{where}: SettleTime cannot be negative.");
    }
}
