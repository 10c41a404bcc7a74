// Files over HTTP into a SQLite table, each durable before its 2xx, measured in one run:
//   millrace:     Millrace.Web (spool, fsync) -> a map (SHA-256) -> ToTable (a commit per file) -> release
//   aspnet-direct: what one writes by hand — an ASP.NET Core endpoint that hashes the body, writes and
//                  fsyncs it, inserts the row (a commit per file, one writer at a time) and then answers.
//   dotnet Uploads.dll [--files 2000] [--bytes 4096] [--clients 64] [--runs 3]
//   prints: uploads: millrace 1234 files/s, aspnet-direct 567 files/s (medians of 3, ...), ratio 2.18x
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Millrace;
using Millrace.Data;
using Millrace.Web;

int files = 2000, bytes = 4096, clients = 64, runs = 3;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--files": files = int.Parse(args[++i]); break;
        case "--bytes": bytes = int.Parse(args[++i]); break;
        case "--clients": clients = int.Parse(args[++i]); break;
        case "--runs": runs = int.Parse(args[++i]); break;
        default: Console.Error.WriteLine($"Uploads: unknown option {args[i]}. Options: --files N, --bytes B, --clients C, --runs R."); return 2;
    }
}

byte[][] contents = Enumerable.Range(0, files).Select(n =>
{
    var b = new byte[bytes];
    new Random(n).NextBytes(b);
    return b;
}).ToArray();
var results = new Dictionary<string, List<double>> { ["millrace"] = [], ["aspnet-direct"] = [] };
for (int r = 0; r < runs; r++)
{
    foreach (string system in results.Keys)
    {
        string dir = Directory.CreateTempSubdirectory("millrace-uploads-").FullName;
        try
        {
            string db = Path.Combine(dir, "files.db");
            double seconds = system == "millrace" ? await Millrace(dir, db) : await Direct(dir, db);
            long rows = Count(db);
            if (rows != files) throw new InvalidOperationException($"{system}: {rows} rows for {files} files");
            results[system].Add(files / seconds);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
double Median(List<double> xs) => xs.Order().ElementAt(xs.Count / 2);
Console.WriteLine($"uploads: millrace {Median(results["millrace"]):0} files/s, aspnet-direct {Median(results["aspnet-direct"]):0} files/s " +
    $"(medians of {runs}; {files} files of {bytes} bytes, {clients} clients), ratio {Median(results["millrace"]) / Median(results["aspnet-direct"]):0.00}x");
return 0;

async Task<double> Millrace(string dir, string db)
{
    var graph = new Graph();
    var incoming = graph.Stream<IncomingFile>("files");
    var rows = graph.Stream<(string Id, string Sha, long Bytes)>("rows");
    var stored = graph.Stream<string>("stored");
    var web = graph.Web("web", incoming, new WebOptions { Urls = "http://127.0.0.1:0", Spool = Path.Combine(dir, "spool"), Announce = false });
    graph.Map("hash", incoming, rows, f => (f.Id, Convert.ToHexStringLower(SHA256.HashData(f.Content)), (long)f.Content.Length));
    long done = 0;
    var all = new TaskCompletionSource();
    graph.ToTable("db", rows, stored, db, "files", x => x.Id,
        new Column<(string Id, string Sha, long Bytes)>("sha256", "TEXT", x => x.Sha),
        new Column<(string Id, string Sha, long Bytes)>("bytes", "BIGINT", x => x.Bytes));
    graph.Process("web-release", p => p.On(stored, id =>
    {
        File.Delete(Path.Combine(dir, "spool", "ready", id));
        if (Interlocked.Increment(ref done) == files) all.TrySetResult();
    }));
    using var stop = new CancellationTokenSource();
    Task<RunResult> run = graph.RunAsync(new RunOptions(), stop.Token);
    string url = await ListeningUrl(web, run);
    var clock = Stopwatch.StartNew();
    await Post(url);
    await all.Task.WaitAsync(TimeSpan.FromMinutes(5));
    double seconds = clock.Elapsed.TotalSeconds;
    stop.Cancel();
    await run;
    return seconds;
}

async Task<double> Direct(string dir, string db)
{
    using var connection = new SqliteConnection($"Data Source={db}");
    connection.Open();
    using (var setup = connection.CreateCommand())
    {
        setup.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE files (id TEXT PRIMARY KEY, sha256 TEXT, bytes BIGINT)";
        setup.ExecuteNonQuery();
    }
    var gate = new SemaphoreSlim(1);
    var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
    builder.Logging.ClearProviders();
    builder.WebHost.UseUrls("http://127.0.0.1:0");
    var app = builder.Build();
    string folder = Path.Combine(dir, "files");
    Directory.CreateDirectory(folder);
    app.MapPost("/streams/files", async (HttpContext context) =>
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body);
        byte[] content = body.ToArray();
        string id = Guid.NewGuid().ToString("N");
        await using (var file = new FileStream(Path.Combine(folder, id), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.Asynchronous))
        {
            await file.WriteAsync(content);
            file.Flush(flushToDisk: true);
        }
        string sha = Convert.ToHexStringLower(SHA256.HashData(content));
        await gate.WaitAsync();
        try
        {
            using var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO files (id, sha256, bytes) VALUES ($id, $sha, $bytes) ON CONFLICT (id) DO UPDATE SET sha256 = excluded.sha256";
            insert.Parameters.AddWithValue("$id", id);
            insert.Parameters.AddWithValue("$sha", sha);
            insert.Parameters.AddWithValue("$bytes", content.Length);
            insert.ExecuteNonQuery();
        }
        finally
        {
            gate.Release();
        }
        context.Response.StatusCode = 202;
        await context.Response.WriteAsync(id);
    });
    await app.StartAsync();
    string url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/streams/files";
    var clock = Stopwatch.StartNew();
    await Post(url);
    double seconds = clock.Elapsed.TotalSeconds;
    await app.StopAsync();
    await app.DisposeAsync();
    return seconds;
}

async Task Post(string url)
{
    using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = clients }) { Timeout = TimeSpan.FromMinutes(2) };
    int next = -1;
    await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
    {
        int n;
        while ((n = Interlocked.Increment(ref next)) < files)
        {
            while (true)
            {
                using HttpResponseMessage response = await client.PostAsync(url, new ByteArrayContent(contents[n]));
                if (response.IsSuccessStatusCode) break;
                if (response.StatusCode != HttpStatusCode.ServiceUnavailable) throw new InvalidOperationException($"POST answered {(int)response.StatusCode}");
                await Task.Delay(response.Headers.RetryAfter?.Delta ?? TimeSpan.FromSeconds(1));
            }
        }
    }));
}

static async Task<string> ListeningUrl(WebSource web, Task<RunResult> run)
{
    Task<IReadOnlyList<string>> task = web.Listening.Task;
    if (await Task.WhenAny(task, run, Task.Delay(TimeSpan.FromSeconds(30))) != task) throw new InvalidOperationException("the web source did not start");
    return (await task)[0] + "/streams/files";
}

static long Count(string db)
{
    using var connection = new SqliteConnection($"Data Source={db};Mode=ReadOnly");
    connection.Open();
    using var count = connection.CreateCommand();
    count.CommandText = "SELECT count(*) FROM files";
    return (long)count.ExecuteScalar()!;
}
