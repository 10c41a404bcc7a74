// The first seed's whole problem: files keep arriving from the web (HTTP, or dropped in a folder),
// pass through process1 and process2, and end in a database, each file exactly once.
//
//   web --files--> process1 (parse) --parsed--> process2 (summarize) --summaries--> db --stored--> web-release
//                      \--dead-letters--> rejected --stored--^
//
//   dotnet run --project examples/FileFlow -c Release -- [--urls http://127.0.0.1:5080] [--db fileflow.db]
//       [--watch DIR] [--spool DIR] [--placement threads|processes|broker]
//   curl -H 'Millrace-Item-Id: report-1' --data-binary @report.txt http://127.0.0.1:5080/streams/files
//   curl -F file=@photo.jpg http://127.0.0.1:5080/streams/files
//   sqlite3 fileflow.db 'select id, name, kind, lines, words, summary from files'
//   sqlite3 fileflow.db 'select id, process, error from rejected_files'     (files that say they are JSON and are not)
//
// It runs until Ctrl+C (or SIGTERM): the server stops taking files, what was accepted drains
// into the database, and whatever was accepted but not yet stored is sent again on the next start.
using System.CommandLine;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Millrace;
using Millrace.Data;
using Millrace.Web;

var urlsOption = new Option<string>("--urls") { Description = "Where the HTTP server listens.", DefaultValueFactory = _ => "http://127.0.0.1:5080" };
var dbOption = new Option<string>("--db") { Description = "The database: a SQLite file, or a PostgreSQL connection string.", DefaultValueFactory = _ => "fileflow.db" };
var watchOption = new Option<string?>("--watch") { Description = "A folder to take files from (as they are dropped there)." };
var spoolOption = new Option<string>("--spool") { Description = "Where accepted files wait until their row is committed.", DefaultValueFactory = _ => "fileflow-spool" };

// The command line parsed strictly (--help lists every option); a bad address or option is exit code 2, a failed run 1.
return await MillraceMain.RunAsync(args, "Files from the web and a folder, through process1 and process2, into a database, each once.",
    [urlsOption, dbOption, watchOption, spoolOption], async (cli, options) =>
{
    string urls = cli.GetValue(urlsOption)!, database = cli.GetValue(dbOption)!, spool = cli.GetValue(spoolOption)!;
    string? watch = cli.GetValue(watchOption);
    // Structured log events (run started and ended, failures, files the folder left alone, ...) to standard error.
    using ILoggerFactory logging = LoggerFactory.Create(b => b
        .AddSimpleConsole(c => c.SingleLine = true)
        .AddConsole(c => c.LogToStandardErrorThreshold = LogLevel.Trace)
        .SetMinimumLevel(LogLevel.Information));
    ILogger logger = logging.CreateLogger("Millrace");
    options.Logger = logger;

    var graph = new Graph();
    var files = graph.Stream<IncomingFile>("files");
    var parsed = graph.Stream<ParsedFile>("parsed");
    var summaries = graph.Stream<FileSummary>("summaries");
    var stored = graph.Stream<string>("stored");

    WebSource web = graph.Web("web", files, new WebOptions { Urls = urls, Spool = spool, Watch = watch, Logger = logger });

    // process1: parse — bytes, lines, words, the most frequent words, a content hash. A file that says it is JSON
    // and is not is bad data, not a bug: it becomes a dead letter (kept in the table 'rejected_files') and the run goes on.
    graph.Map("process1", files, parsed, FileWork.Parse);
    graph.OnError("process1", ErrorPolicy.DeadLetter(graph.DeadLetters));

    // process2: summarize — what kind of file it is, in one line.
    graph.Map("process2", parsed, summaries, FileWork.Summarize);

    // db: one row per file id, upserted (a file sent again is one row); each stored id goes back to the web source.
    graph.ToTable("db", summaries, stored, database, "files", s => s.Id,
        new Column<FileSummary>("name", "TEXT", s => s.Name),
        new Column<FileSummary>("origin", "TEXT", s => s.Origin),
        new Column<FileSummary>("received_at", "TEXT", s => s.ReceivedAt.ToString("O")),
        new Column<FileSummary>("bytes", "BIGINT", s => s.Bytes),
        new Column<FileSummary>("lines", "BIGINT", s => s.Lines),
        new Column<FileSummary>("words", "BIGINT", s => s.Words),
        new Column<FileSummary>("sha256", "TEXT", s => s.Sha256),
        new Column<FileSummary>("kind", "TEXT", s => s.Kind),
        new Column<FileSummary>("summary", "TEXT", s => s.Summary));

    // Files that could not be handled, with why; their ids go back to the web source too (else they would be sent again).
    graph.ToTable("rejected", graph.DeadLetters, stored, database, "rejected_files", FileWork.IdOf,
        new Column<DeadLetter>("process", "TEXT", d => d.Process),
        new Column<DeadLetter>("error", "TEXT", d => $"{d.ExceptionType}: {d.Message}"),
        new Column<DeadLetter>("failed_at", "TEXT", d => d.Time.ToString("O")));

    // The spool lets a file go once its row is committed.
    web.Release(stored);

    RunResult result = await graph.RunAsync(options);
    Console.WriteLine($"FileFlow: {result.Outcome} after {result.Duration.TotalSeconds:0.0} s; " +
        $"{(result.Processes.TryGetValue("db", out ProcessStats? db) ? db.ItemsIn : 0)} files stored in this run.");
    return result;
});

/// <summary>What process1 learns of a file.</summary>
public sealed record ParsedFile(string Id, string Name, string Origin, DateTimeOffset ReceivedAt, string ContentType,
    long Bytes, long Lines, long Words, string Sha256, bool IsText, string[] TopWords, string Start);

/// <summary>What process2 makes of it: one row.</summary>
public sealed record FileSummary(string Id, string Name, string Origin, DateTimeOffset ReceivedAt,
    long Bytes, long Lines, long Words, string Sha256, string Kind, string Summary);

public static class FileWork
{
    public static ParsedFile Parse(IncomingFile file)
    {
        byte[] content = file.Content;
        if (file.Name.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || file.ContentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                using var json = System.Text.Json.JsonDocument.Parse(content);
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new InvalidDataException($"'{file.Name}' says it is JSON and is not: {e.Message}");
            }
        }
        string sha = Convert.ToHexStringLower(SHA256.HashData(content));
        bool isText = Array.IndexOf(content, (byte)0) < 0 && IsUtf8(content);
        long lines = 0, words = 0;
        string[] top = [];
        string start = "";
        if (isText)
        {
            string text = Encoding.UTF8.GetString(content);
            foreach (char c in text) if (c == '\n') lines++;
            if (text.Length > 0 && text[^1] != '\n') lines++;
            var counts = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (string word in text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
            {
                words++;
                string w = new string(word.Where(char.IsLetter).ToArray()).ToLowerInvariant();
                if (w.Length > 2) counts[w] = counts.GetValueOrDefault(w) + 1;
            }
            top = counts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Take(3).Select(kv => kv.Key).ToArray();
            start = text.Length <= 64 ? text : text[..64];
        }
        return new ParsedFile(file.Id, file.Name, file.Origin, file.ReceivedAt, file.ContentType, content.Length, lines, words, sha, isText, top, start);
    }

    public static FileSummary Summarize(ParsedFile f)
    {
        string trimmed = f.Start.TrimStart();
        string kind = !f.IsText ? "binary"
            : trimmed.StartsWith('{') || trimmed.StartsWith('[') ? "json"
            : f.Name.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) || (f.Start.Contains(',') && f.Lines > 1) ? "csv"
            : "text";
        string summary = kind == "binary"
            ? $"binary, {f.Bytes} bytes"
            : $"{kind}, {f.Lines} lines, {f.Words} words" + (f.TopWords.Length > 0 ? $", mostly '{string.Join("', '", f.TopWords)}'" : "");
        return new FileSummary(f.Id, f.Name, f.Origin, f.ReceivedAt, f.Bytes, f.Lines, f.Words, f.Sha256, kind, summary);
    }

    /// <summary>The id of the file a dead letter is about (its item is the file, as JSON).</summary>
    public static string IdOf(DeadLetter d)
    {
        try
        {
            using var item = System.Text.Json.JsonDocument.Parse(d.Item);
            if (item.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object && (item.RootElement.TryGetProperty("id", out var id) || item.RootElement.TryGetProperty("Id", out id)) &&
                id.GetString() is { Length: > 0 } text) return text;
        }
        catch (System.Text.Json.JsonException)
        {
        }
        return $"{d.Process}:{d.Stream}:{d.ItemIndex}";
    }

    private static bool IsUtf8(byte[] content)
    {
        try
        {
            _ = new UTF8Encoding(false, throwOnInvalidBytes: true).GetCharCount(content);
            return true;
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
    }
}
