using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using Millrace;
using Millrace.Hosting;
using OpenTelemetry.Exporter;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

// A worker service: sentences arrive (here: made up, one every Worker:IntervalMs), their words are counted, and the
// totals kept in a store; every Worker:NotifyEvery words a summary is posted to Worker:NotifyUrl (if set).
//   dotnet run --project examples/HostedWorker                                        # Ctrl+C (or SIGTERM) stops it gracefully, exit 0
//   curl http://127.0.0.1:5070/health      curl http://127.0.0.1:5070/totals
//   Millrace__Placement=processes dotnet run --project examples/HostedWorker          # or --Millrace:Placement processes
if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine("""
        HostedWorker: counts the words of sentences as they arrive, as a hosted service.
        Settings (appsettings.json; --Section:Key value on the command line; Section__Key in the environment):
          --Urls                     where /health and /totals answer [default: http://127.0.0.1:5070]
          --Worker:IntervalMs        milliseconds between sentences [default: 50]
          --Worker:NotifyEvery       post a summary every this many words [default: 100]
          --Worker:NotifyUrl         where summaries are posted [default: none]
          --Telemetry:Console        the Millrace meter and the logs to the console: true or false [default: false]
          --Telemetry:Otlp           an OTLP/HTTP collector, e.g. http://127.0.0.1:4318 [default: none]
          --Telemetry:ExportIntervalMs  milliseconds between metric exports [default: 10000]
        """);
    Console.WriteLine(MillraceServiceCollectionExtensions.ConfigurationHelp().Replace("  Millrace:", "  --Millrace:"));
    return 0;
}

// appsettings.json is read from beside the program, wherever it is started from.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });

// In the processes placement every OS process runs this program again to build the same graph: only the program the
// user started listens on the configured address; the others take any free port on 127.0.0.1.
if (!RunOptions.IsStarter) builder.WebHost.UseUrls("http://127.0.0.1:0");

// OpenTelemetry: the Millrace meter and the logs, to the console (--Telemetry:Console true) and to an OTLP collector
// (--Telemetry:Otlp http://127.0.0.1:4318, HTTP/protobuf), every Telemetry:ExportIntervalMs (default 10 s).
IConfigurationSection telemetry = builder.Configuration.GetSection("Telemetry");
bool toConsole = telemetry.GetValue("Console", false);
string? otlp = telemetry["Otlp"]?.TrimEnd('/');
int exportEvery = telemetry.GetValue("ExportIntervalMs", 10_000);
if (toConsole || otlp is not null)
{
    builder.Services.AddOpenTelemetry()
        .ConfigureResource(resource => resource.AddService("HostedWorker"))
        .WithMetrics(metrics =>
        {
            metrics.AddMeter("Millrace");
            if (toConsole) metrics.AddConsoleExporter((_, reader) => reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = exportEvery);
            if (otlp is not null)
                metrics.AddOtlpExporter((exporter, reader) =>
                {
                    exporter.Endpoint = new Uri($"{otlp}/v1/metrics");
                    exporter.Protocol = OtlpExportProtocol.HttpProtobuf;
                    reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = exportEvery;
                });
        });
    builder.Logging.AddOpenTelemetry(logging =>
    {
        logging.IncludeFormattedMessage = true;
        if (toConsole) logging.AddConsoleExporter();
        if (otlp is not null)
            logging.AddOtlpExporter(exporter =>
            {
                exporter.Endpoint = new Uri($"{otlp}/v1/logs");
                exporter.Protocol = OtlpExportProtocol.HttpProtobuf;
            });
    });
}

builder.Services.AddSingleton<WordTotals>();
builder.Services.AddHttpClient("notify");
builder.Services.AddMillrace((services, graph) =>
{
    IConfiguration config = services.GetRequiredService<IConfiguration>();
    var interval = TimeSpan.FromMilliseconds(config.GetValue("Worker:IntervalMs", 50));
    int notifyEvery = config.GetValue("Worker:NotifyEvery", 100);
    string? notifyUrl = config["Worker:NotifyUrl"];

    Stream<string> sentences = graph.Stream<string>("sentences");
    Stream<string> words = graph.Stream<string>("words");

    graph.Source("arrive", sentences, Sentences(interval, CancellationToken.None));
    graph.Process("count", p =>
    {
        var output = p.Output(words);
        p.On(sentences, sentence =>
        {
            foreach (string word in sentence.Split(' ', StringSplitOptions.RemoveEmptyEntries)) output.Emit(word.ToLowerInvariant());
        });
    });
    graph.Process("store", p =>
    {
        // Services from dependency injection, taken where the process runs (in its own OS process in the processes placement).
        var totals = services.GetRequiredService<WordTotals>();
        var log = services.GetRequiredService<ILogger<WordTotals>>();
        HttpClient http = services.GetRequiredService<IHttpClientFactory>().CreateClient("notify");
        p.On(words, async (word, ct) =>
        {
            long seen = totals.Add(word);
            if (seen % notifyEvery != 0) return;
            log.LogInformation("{Words} words so far; the most frequent: {Top}", seen, totals.Top(3));
            if (notifyUrl is not null)
                (await http.PostAsJsonAsync(notifyUrl, new { words = seen, top = totals.Top(3) }, ct)).EnsureSuccessStatusCode();
        });
    });
});

var app = builder.Build();
app.MapHealthChecks("/health");
app.MapGet("/totals", (WordTotals totals) => new { words = totals.Count, top = totals.Top(10) });
await app.RunAsync();
return Environment.ExitCode; // 0 stopped or completed, 1 failed, 2 could not start (set by Millrace.Hosting)

static async IAsyncEnumerable<string> Sentences(TimeSpan interval, [EnumeratorCancellation] CancellationToken ct)
{
    string[] words = ["the", "mill", "race", "turns", "a", "wheel", "of", "water"];
    for (long i = 0; ; i++)
    {
        await Task.Delay(interval, ct);
        yield return string.Join(' ', Enumerable.Range(0, 3 + (int)(i % 5)).Select(k => words[(i + k * 3) % words.Length]));
    }
}

/// <summary>The store (a DbContext would do the same job): word counts, kept in this OS process.</summary>
public sealed class WordTotals
{
    private readonly Dictionary<string, long> _counts = new();
    private long _total;

    public long Add(string word)
    {
        lock (_counts)
        {
            _counts[word] = _counts.GetValueOrDefault(word) + 1;
            return ++_total;
        }
    }

    public long Count
    {
        get { lock (_counts) return _total; }
    }

    public string[] Top(int n)
    {
        lock (_counts) return _counts.OrderByDescending(c => c.Value).ThenBy(c => c.Key).Take(n).Select(c => $"{c.Key} {c.Value}").ToArray();
    }
}
