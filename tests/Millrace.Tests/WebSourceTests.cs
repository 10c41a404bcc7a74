using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Net.Http.Headers;
using System.Text;
using Millrace.Data;
using Millrace.Web;

namespace Millrace.Tests;

/// <summary>The web source in the threads placement, driven from the test: uploads, bad requests, saturation, the folder, the spool.</summary>
public sealed class WebSourceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("millrace-web-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string Database => Path.Combine(_dir, "files.db");

    private WebOptions Options(Action<WebOptions>? change = null)
    {
        var options = new WebOptions
        {
            Urls = "http://127.0.0.1:0",
            Spool = Path.Combine(_dir, "spool"),
            Announce = false,
            PollInterval = TimeSpan.FromMilliseconds(50),
            SettleTime = TimeSpan.FromMilliseconds(300),
        };
        change?.Invoke(options);
        return options;
    }

    /// <summary>web → files → hash (a map) → rows → db (stored) → web-release; the gate, when given, holds the map.</summary>
    private (Graph Graph, WebSource Web) FileGraph(WebOptions options, ManualResetEventSlim? gate = null)
    {
        var graph = new Graph();
        var files = graph.Stream<IncomingFile>("files");
        var rows = graph.Stream<(string Id, string Sha, string Name)>("rows");
        var stored = graph.Stream<string>("stored");
        WebSource web = graph.Web("web", files, options);
        graph.Map("hash", files, rows, f =>
        {
            gate?.Wait(TimeSpan.FromSeconds(60));
            return (f.Id, Uploads.Sha(f.Content), f.Name);
        });
        graph.ToTable("db", rows, stored, Database, "files", r => r.Id,
            new Column<(string Id, string Sha, string Name)>("sha256", "TEXT", r => r.Sha),
            new Column<(string Id, string Sha, string Name)>("name", "TEXT", r => r.Name));
        web.Release(stored);
        return (graph, web);
    }

    private static async Task<string> UrlOf(WebSource web, Task<RunResult> run)
    {
        Task started = await Task.WhenAny(web.Listening.Task, run, Task.Delay(TimeSpan.FromSeconds(30)));
        if (started == run) throw new InvalidOperationException($"The run ended before the server started: {await run}");
        if (started != web.Listening.Task) throw new TimeoutException("The web source did not start listening within 30 s.");
        return (await web.Listening.Task)[0] + "/streams/files";
    }

    [Fact]
    public async Task A_thousand_concurrent_uploads_become_a_thousand_correct_rows_and_a_repeated_id_stays_one_row()
    {
        var (graph, web) = FileGraph(Options());
        using var stop = new CancellationTokenSource();
        Task<RunResult> run = graph.RunWithin(token: stop.Token, seconds: 150);
        string url = await UrlOf(web, run);
        using HttpClient client = Uploads.NewClient();

        var expected = new ConcurrentDictionary<string, string>();
        await Task.WhenAll(Enumerable.Range(0, 1000).Select(async n =>
        {
            byte[] content = Uploads.Content(n);
            string? id = n % 3 == 0 ? $"client-{n}" : null;      // a third name their own id
            var (status, answered) = await Uploads.PostAsync(client, url, content, $"f{n}.txt", id, multipart: n % 2 == 0);
            Assert.Equal(HttpStatusCode.Accepted, status);
            if (id is not null) Assert.Equal(id, answered);
            Assert.True(expected.TryAdd(answered, Uploads.Sha(content)), $"The id {answered} was given twice.");
        }));
        var rows = await Uploads.WaitForRowsAsync(Database, expected.Keys);

        // The same file posted again with the same id (a client's retry): still one row.
        byte[] again = Uploads.Content(3);
        var (againStatus, againId) = await Uploads.PostAsync(client, url, again, "f3.txt", "client-3");
        Assert.Equal("client-3", againId);
        Assert.True(againStatus is HttpStatusCode.OK or HttpStatusCode.Accepted);
        // Two posts with one id at once: one row.
        await Task.WhenAll(Uploads.PostAsync(client, url, again, "f3.txt", "twice"), Uploads.PostAsync(client, url, again, "f3.txt", "twice"));
        expected["twice"] = Uploads.Sha(again);
        rows = await Uploads.WaitForRowsAsync(Database, expected.Keys);

        stop.Cancel();
        RunResult result = await run;
        Assert.Equal(RunOutcome.Stopped, result.Outcome);
        Assert.Equal(1001, rows.Count);
        foreach (var (id, sha) in expected) Assert.Equal(sha, rows[id].Sha);
        Assert.Equal("f7.txt", rows.Single(r => r.Value.Sha == Uploads.Sha(Uploads.Content(7))).Value.Name);
        // Every stored file was released from the spool.
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_dir, "spool", "ready")));
    }

    [Fact]
    public async Task Bad_requests_get_a_clear_4xx_and_the_pipeline_keeps_running()
    {
        // One upload and one waiting file at a time: a slot lost on any error path would turn the good file at the end away.
        var (graph, web) = FileGraph(Options(o =>
        {
            o.MaxFileBytes = 1000;
            o.MaxWaiting = 1;
            o.MaxUploads = 1;
        }));
        using var stop = new CancellationTokenSource();
        Task<RunResult> run = graph.RunWithin(token: stop.Token, seconds: 60);
        string url = await UrlOf(web, run);
        using HttpClient client = Uploads.NewClient();

        async Task Expect(HttpStatusCode status, string text, HttpRequestMessage request)
        {
            using HttpResponseMessage response = await client.SendAsync(request);
            string body = await response.Content.ReadAsStringAsync();
            Assert.True(status == response.StatusCode, $"{request.Method} {request.RequestUri}: {(int)response.StatusCode} {body}");
            Assert.Contains(text, body);
        }
        HttpRequestMessage Post(string to, HttpContent? content, string? id = null)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, to) { Content = content };
            if (id is not null) request.Headers.Add("Millrace-Item-Id", id);
            return request;
        }

        await Expect(HttpStatusCode.BadRequest, "The body is empty", Post(url, new ByteArrayContent([])));
        await Expect(HttpStatusCode.RequestEntityTooLarge, "files of at most 1000 bytes", Post(url, new ByteArrayContent(new byte[5000])));
        await Expect(HttpStatusCode.RequestEntityTooLarge, "The request has 100000 bytes", Post(url, new ByteArrayContent(new byte[100_000])));
        var badKey = Post(url, new ByteArrayContent([1]));
        badKey.Headers.Add("Idempotency-Key", "no spaces allowed");
        await Expect(HttpStatusCode.BadRequest, "The Idempotency-Key header 'no spaces allowed' is not a valid id", badKey);
        await Expect(HttpStatusCode.NotFound, "Unknown stream 'photos'", Post(url.Replace("/files", "/photos"), new ByteArrayContent([1])));
        await Expect(HttpStatusCode.NotFound, "No such address", Post(url.Replace("/streams/files", "/upload"), new ByteArrayContent([1])));
        await Expect(HttpStatusCode.MethodNotAllowed, "POST a file", new HttpRequestMessage(HttpMethod.Get, url));
        await Expect(HttpStatusCode.BadRequest, "is not a valid id", Post(url, new ByteArrayContent([1]), id: "../etc/passwd"));
        var garbage = new ByteArrayContent(Encoding.ASCII.GetBytes("this is not multipart at all"));
        garbage.Headers.ContentType = MediaTypeHeaderValue.Parse("multipart/form-data; boundary=xyz");
        await Expect(HttpStatusCode.BadRequest, "Malformed multipart body", Post(url, garbage));
        var truncated = new ByteArrayContent(Encoding.ASCII.GetBytes("--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhalf a fi"));
        truncated.Headers.ContentType = MediaTypeHeaderValue.Parse("multipart/form-data; boundary=xyz");
        await Expect(HttpStatusCode.BadRequest, "Malformed multipart body", Post(url, truncated));
        await Expect(HttpStatusCode.BadRequest, "holds no file", Post(url, new MultipartFormDataContent { { new StringContent("x"), "note" } }));
        var twoFiles = new MultipartFormDataContent { { new ByteArrayContent([1]), "file", "a" }, { new ByteArrayContent([2]), "file", "b" } };
        await Expect(HttpStatusCode.BadRequest, "more than one file", Post(url, twoFiles));
        var bigPart = new MultipartFormDataContent { { new ByteArrayContent(new byte[3000]), "file", "big.bin" } };
        await Expect(HttpStatusCode.RequestEntityTooLarge, "1000 bytes", Post(url, bigPart));

        // Nothing of that reached the stream, and a good file still goes through.
        var (status, id) = await Uploads.PostAsync(client, url, Uploads.Content(1), "good.txt");
        Assert.Equal(HttpStatusCode.Accepted, status);
        var rows = await Uploads.WaitForRowsAsync(Database, [id]);
        stop.Cancel();
        RunResult result = await run;
        Assert.Empty(result.Errors);
        Assert.Single(rows);
        Assert.Equal(1, result.Processes["db"].ItemsIn);
    }

    [Fact]
    public async Task Mutated_multipart_bodies_are_accepted_whole_or_refused_with_a_4xx_and_nothing_else_reaches_the_stream()
    {
        // Iterations: MILLRACE_FUZZ_ITERATIONS / 100 (default 200 requests).
        int iterations = Math.Max(20, Helpers.Iterations("MILLRACE_FUZZ_ITERATIONS", 20_000) / 100);
        var (graph, web) = FileGraph(Options(o => o.MaxFileBytes = 4000));
        using var stop = new CancellationTokenSource();
        Task<RunResult> run = graph.RunWithin(token: stop.Token, seconds: 600);
        string url = await UrlOf(web, run);
        using HttpClient client = Uploads.NewClient();
        client.Timeout = TimeSpan.FromSeconds(60); // a hang fails the test
        var random = new Random(20261204);
        var accepted = new List<string>();
        var statuses = new Dictionary<HttpStatusCode, int>();
        for (int i = 0; i < iterations; i++)
        {
            string boundary = "b" + random.Next(1_000_000);
            byte[] body = Encoding.UTF8.GetBytes(
                $"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n" +
                $"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{i}.txt\"\r\nContent-Type: text/plain\r\n\r\n")
                .Concat(Uploads.Content(i)).Concat(Encoding.UTF8.GetBytes($"\r\n--{boundary}--\r\n")).ToArray();
            byte[] sent = Fuzz.Mutate(body, random);
            string contentType = $"multipart/form-data; boundary={boundary}";
            // Sometimes the header is mutated too (within what HTTP lets a client send: printable ASCII).
            if (random.Next(10) == 0)
                contentType = new string(Fuzz.Mutate(Encoding.ASCII.GetBytes(contentType), random).Select(b => b is >= 0x20 and < 0x7f ? (char)b : 'x').ToArray());
            string id = $"fuzz-{i}";
            for (int attempt = 0; ; attempt++)
            {
                using var content = new ByteArrayContent(sent);
                content.Headers.TryAddWithoutValidation("Content-Type", contentType);
                using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = content };
                request.Headers.Add("Millrace-Item-Id", id);
                using HttpResponseMessage response = await client.SendAsync(request);
                string answer = await response.Content.ReadAsStringAsync();
                if (response.StatusCode == HttpStatusCode.ServiceUnavailable && attempt < 100)
                {
                    await Task.Delay(response.Headers.RetryAfter?.Delta ?? TimeSpan.FromMilliseconds(200));
                    continue;
                }
                statuses[response.StatusCode] = statuses.GetValueOrDefault(response.StatusCode) + 1;
                Assert.True(response.StatusCode is HttpStatusCode.Accepted or HttpStatusCode.BadRequest or HttpStatusCode.RequestEntityTooLarge
                        or HttpStatusCode.UnsupportedMediaType,
                    $"request {i}: {(int)response.StatusCode} {answer}");
                // Every answer is JSON: an id, or an error that says what was wrong.
                using var json = System.Text.Json.JsonDocument.Parse(answer);
                if (response.StatusCode == HttpStatusCode.Accepted) accepted.Add(id);
                else Assert.False(string.IsNullOrWhiteSpace(json.RootElement.GetProperty("error").GetString()), answer);
                break;
            }
        }

        // A good file still goes through; every accepted file is one row, and nothing refused became one.
        var (status, good) = await Uploads.PostAsync(client, url, Uploads.Content(1), "good.txt", multipart: true);
        Assert.Equal(HttpStatusCode.Accepted, status);
        accepted.Add(good);
        var rows = await Uploads.WaitForRowsAsync(Database, accepted);
        stop.Cancel();
        RunResult result = await run;
        Assert.Empty(result.Errors);
        Assert.Equal(accepted.Order(), Uploads.Rows(Database).Keys.Order());
        Assert.True(statuses.GetValueOrDefault(HttpStatusCode.BadRequest) > 0 && accepted.Count > 1,
            $"the mutations should give both outcomes: {string.Join(", ", statuses.Select(s => $"{(int)s.Key}: {s.Value}"))}");
    }

    [Fact]
    public async Task A_saturated_pipeline_answers_503_with_Retry_After_and_loses_nothing_it_accepted()
    {
        using var gate = new ManualResetEventSlim(false);
        var (graph, web) = FileGraph(Options(o => o.MaxWaiting = 2), gate);
        using var stop = new CancellationTokenSource();
        Task<RunResult> run = graph.RunWithin(new RunOptions { StreamCapacity = 1, BatchSize = 1 }, stop.Token, seconds: 60);
        string url = await UrlOf(web, run);
        using HttpClient client = Uploads.NewClient();

        var accepted = new List<string>();
        HttpResponseMessage? busy = null;
        for (int n = 0; n < 50 && busy is null; n++)
        {
            HttpResponseMessage response = await client.PostAsync(url, new ByteArrayContent(Uploads.Content(n)));
            if (response.StatusCode == HttpStatusCode.ServiceUnavailable) busy = response;
            else
            {
                Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
                accepted.Add(System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!);
                response.Dispose();
            }
        }
        Assert.NotNull(busy);
        Assert.Equal(TimeSpan.FromSeconds(1), busy!.Headers.RetryAfter?.Delta);
        Assert.Contains("saturated", await busy.Content.ReadAsStringAsync());
        // Bounded: the held map, the stream's lanes and the waiting line hold a handful, not 50.
        Assert.InRange(accepted.Count, 2, 12);

        gate.Set();
        // Once the pipeline moves again, files are accepted again.
        var (status, late) = await Uploads.PostAsync(client, url, Uploads.Content(1000), "late.txt");
        Assert.Equal(HttpStatusCode.Accepted, status);
        accepted.Add(late);
        var rows = await Uploads.WaitForRowsAsync(Database, accepted);
        stop.Cancel();
        await run;
        Assert.Equal(accepted.Order(), rows.Keys.Order());
    }

    [Fact]
    public async Task Files_dropped_in_the_folder_are_taken_whole_and_once_also_across_a_restart()
    {
        string inbox = Path.Combine(_dir, "inbox");
        Directory.CreateDirectory(inbox);
        // A folder file is taken once it has not changed for SettleTime: a clock by design. The slow
        // writer below pauses 2 polls between pieces (so that a watcher that took a file seen unchanged
        // twice would take it half-way); 3 s of settling holds on a machine 10 times slower than that.
        WebOptions options = Options(o =>
        {
            o.Watch = inbox;
            o.SettleTime = TimeSpan.FromSeconds(3);
        });
        var (graph, web) = FileGraph(options);
        using (var stop = new CancellationTokenSource())
        {
            Task<RunResult> run = graph.RunWithin(token: stop.Token, seconds: 60);
            await UrlOf(web, run);
            // A file written slowly, in pieces: never read half-way.
            byte[] slow = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Range(0, 2000).Select(i => $"line {i}\n")));
            await using (var writer = new FileStream(Path.Combine(inbox, "slow.log"), FileMode.CreateNew))
            {
                for (int i = 0; i < slow.Length; i += 2000)
                {
                    writer.Write(slow, i, Math.Min(2000, slow.Length - i));
                    writer.Flush();
                    await Task.Delay(2 * options.PollInterval);
                }
            }
            // What is not a regular file with content stays where it is: a link (to a file outside), an empty file.
            string outside = Path.Combine(_dir, "secret.txt");
            await File.WriteAllTextAsync(outside, "not for the database");
            File.CreateSymbolicLink(Path.Combine(inbox, "link.txt"), outside);
            await File.WriteAllBytesAsync(Path.Combine(inbox, "empty.txt"), []);
            // Files written under a temporary name and renamed: the safe way.
            for (int n = 0; n < 20; n++)
            {
                string part = Path.Combine(inbox, $"drop{n}.txt.part");
                await File.WriteAllBytesAsync(part, Uploads.Content(n));
                File.Move(part, Path.Combine(inbox, $"drop{n}.txt"));
            }
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (Uploads.Rows(Database).Count < 21 && DateTime.UtcNow < deadline) await Task.Delay(100);
            stop.Cancel();
            RunResult first = await run;
            var rows = Uploads.Rows(Database);
            Assert.Equal(21, rows.Count);
            Assert.Equal(Uploads.Sha(slow), rows.Values.Single(r => r.Name == "slow.log").Sha);
            for (int n = 0; n < 20; n++) Assert.Equal(Uploads.Sha(Uploads.Content(n)), rows.Values.Single(r => r.Name == $"drop{n}.txt").Sha);
            Assert.Equal(21, first.Processes["db"].ItemsIn);
            Assert.Equal(["empty.txt", "link.txt"], Directory.EnumerateFileSystemEntries(inbox).Select(Path.GetFileName).Where(n => !n!.StartsWith('.')).Order());
            Assert.Empty(Directory.EnumerateFiles(Path.Combine(inbox, ".taking")));
            File.Delete(Path.Combine(inbox, "link.txt"));
            File.Delete(Path.Combine(inbox, "empty.txt"));
            // A file a crash left half-taken (claimed, not yet spooled) is taken at the next start.
            await File.WriteAllBytesAsync(Path.Combine(inbox, ".taking", "claimed.txt"), Uploads.Content(77));
        }

        // Started again on the same folders: nothing is taken twice; a new file is taken.
        var (again, web2) = FileGraph(options);
        using (var stop = new CancellationTokenSource())
        {
            Task<RunResult> run = again.RunWithin(token: stop.Token, seconds: 60);
            await UrlOf(web2, run);
            await File.WriteAllBytesAsync(Path.Combine(inbox, "late.txt"), Uploads.Content(99));
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (Uploads.Rows(Database).Count < 23 && DateTime.UtcNow < deadline) await Task.Delay(100);
            stop.Cancel();
            RunResult second = await run;
            var rows = Uploads.Rows(Database);
            Assert.Equal(23, rows.Count);
            Assert.Equal(Uploads.Sha(Uploads.Content(77)), rows.Values.Single(r => r.Name == "claimed.txt").Sha);
            Assert.Equal(2, second.Processes["db"].ItemsIn);
        }
    }

    [Fact]
    public async Task Files_accepted_but_not_stored_before_a_crash_are_sent_again_at_the_next_start()
    {
        // What a crash leaves: accepted files in the spool (never released), and a half-written one in tmp/.
        var spool = new Spool(Path.Combine(_dir, "spool"));
        spool.Prepare();
        var left = Enumerable.Range(0, 30).Select(n => new IncomingFile($"left-{n}", $"l{n}.txt", "text/plain", Uploads.Content(n), DateTimeOffset.UtcNow, "http")).ToList();
        foreach (IncomingFile file in left) await spool.WriteAsync(file, CancellationToken.None);
        await File.WriteAllTextAsync(Path.Combine(_dir, "spool", "tmp", "half-1.ABCD"), "{\"id\":\"half-1\"");
        await File.WriteAllTextAsync(Path.Combine(_dir, "spool", "ready", "broken-1"), "no header here");

        var (graph, web) = FileGraph(Options());
        using var stop = new CancellationTokenSource();
        Task<RunResult> run = graph.RunWithin(token: stop.Token, seconds: 60);
        await UrlOf(web, run);
        var rows = await Uploads.WaitForRowsAsync(Database, left.Select(f => f.Id).ToList());
        stop.Cancel();
        await run;
        Assert.Equal(30, rows.Count);
        foreach (IncomingFile file in left) Assert.Equal(Uploads.Sha(file.Content), rows[file.Id].Sha);
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_dir, "spool", "ready")));
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_dir, "spool", "tmp")));
        Assert.True(File.Exists(Path.Combine(_dir, "spool", "damaged", "broken-1")), "A damaged spool file is kept aside, not lost.");
    }

    [Fact]
    public async Task A_port_already_in_use_fails_the_run_naming_the_source_and_the_address()
    {
        var taken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        try
        {
            int port = ((IPEndPoint)taken.LocalEndpoint).Port;
            var (graph, _) = FileGraph(Options(o => o.Urls = $"http://127.0.0.1:{port}"));
            RunResult result = await graph.RunWithin(seconds: 30);
            Assert.Equal(RunOutcome.Failed, result.Outcome);
            Assert.Contains(result.Errors, e => e.Process == "web" && e.Message.Contains($"Web source 'web' cannot listen on http://127.0.0.1:{port}"));
        }
        finally
        {
            taken.Stop();
        }
    }

    [Fact]
    public async Task An_upload_that_does_not_arrive_in_time_gets_408_and_a_second_program_cannot_take_the_same_spool()
    {
        var (graph, web) = FileGraph(Options(o =>
        {
            o.UploadTimeout = TimeSpan.FromSeconds(1);
            o.MaxUploads = 1;
        }));
        using var stop = new CancellationTokenSource();
        Task<RunResult> run = graph.RunWithin(token: stop.Token, seconds: 60);
        var uri = new Uri(await UrlOf(web, run));
        using (var slow = new System.Net.Sockets.TcpClient())
        {
            await slow.ConnectAsync(IPAddress.Loopback, uri.Port);
            NetworkStream stream = slow.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"POST {uri.AbsolutePath} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nten bytes."));
            var answer = new byte[4096];
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            int read = await stream.ReadAsync(answer, wait.Token);
            string text = Encoding.ASCII.GetString(answer, 0, read);
            Assert.StartsWith("HTTP/1.1 408", text);
            Assert.Contains("The upload took longer than 1 s", text);
        }
        // The slow upload's place is free again.
        using HttpClient client = Uploads.NewClient();
        var (status, _) = await Uploads.PostAsync(client, uri.ToString(), Uploads.Content(1), "after.txt");
        Assert.Equal(HttpStatusCode.Accepted, status);

        // Another program (here: another run) on the same spool is refused by name.
        var (other, _) = FileGraph(Options());
        RunResult refused = await other.RunWithin(seconds: 30);
        Assert.Equal(RunOutcome.Failed, refused.Outcome);
        Assert.Contains(refused.Errors, e => e.Message.Contains("is in use by another program"));
        stop.Cancel();
        await run;
    }

    /// <summary>Sends <paramref name="head"/> and <paramref name="body"/> on a connection of its own and reads the answer (bounded).</summary>
    private static async Task<string> RawAsync(Uri uri, string head, string body)
    {
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, uri.Port);
        NetworkStream stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head + "\r\n" + body));
        var answer = new byte[8192];
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        int read = await stream.ReadAsync(answer, wait.Token);
        return Encoding.ASCII.GetString(answer, 0, read);
    }

    [Fact]
    public async Task A_stalled_body_gets_408_two_ids_get_400_and_control_characters_leave_file_names()
    {
        var (graph, web) = FileGraph(Options(o => o.MaxUploads = 1));
        using var stop = new CancellationTokenSource();
        Task<RunResult> run = graph.RunWithin(token: stop.Token, seconds: 120);
        var uri = new Uri(await UrlOf(web, run));

        // A body that stops arriving (well within the upload timeout): Kestrel's minimum data rate notices after its grace period.
        string stalled = await RawAsync(uri, $"POST {uri.AbsolutePath} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n", "ten bytes.");
        Assert.StartsWith("HTTP/1.1 408", stalled);
        Assert.Contains("The body arrived too slowly", stalled);

        // Two id headers: which one would be the file's id? Neither: 400.
        string twoIds = await RawAsync(uri,
            $"POST {uri.AbsolutePath} HTTP/1.1\r\nHost: 127.0.0.1\r\nMillrace-Item-Id: first\r\nMillrace-Item-Id: second\r\nContent-Length: 1\r\nConnection: close\r\n", "x");
        Assert.StartsWith("HTTP/1.1 400", twoIds);
        Assert.Contains("The request has 2 Millrace-Item-Id headers", twoIds);

        // Control characters and a path leave a file's name (query and multipart alike).
        using HttpClient client = Uploads.NewClient();
        using (HttpResponseMessage response = await client.PostAsync(uri + "?name=" + Uri.EscapeDataString("../dir\\ev\nil\t.txt"), new ByteArrayContent([1, 2])))
        {
            string body = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
            Assert.Contains("\"name\":\"evil.txt\"", body);
        }
        var part = new ByteArrayContent([3]);
        part.Headers.ContentDisposition = new ContentDispositionHeaderValue("form-data") { Name = "file", FileNameStar = "bad\rname\u0007.txt" };
        using (HttpResponseMessage response = await client.PostAsync(uri, new MultipartFormDataContent { part }))
        {
            string body = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
            Assert.Contains("\"name\":\"badname.txt\"", body);
        }
        stop.Cancel();
        RunResult result = await run;
        Assert.Empty(result.Errors);
    }

    [Fact]
    public async Task A_spooled_file_that_fails_the_pipeline_at_every_start_is_moved_aside_after_MaxReplays()
    {
        var spool = new Spool(Path.Combine(_dir, "spool"));
        spool.Prepare();
        await spool.WriteAsync(new IncomingFile("poison", "poison.txt", "text/plain", "boom"u8.ToArray(), DateTimeOffset.UtcNow, "http"), CancellationToken.None);
        await spool.WriteAsync(new IncomingFile("fine", "fine.txt", "text/plain", "fine"u8.ToArray(), DateTimeOffset.UtcNow, "http"), CancellationToken.None);
        var outcomes = new List<RunOutcome>();
        for (int start = 0; start < 3; start++)
        {
            var graph = new Graph();
            var files = graph.Stream<IncomingFile>("files");
            var stored = graph.Stream<string>("stored");
            WebSource web = graph.Web("web", files, Options(o => o.MaxReplays = 2));
            graph.Process("db", p =>
            {
                var ids = p.Output(stored);
                p.On(files, f =>
                {
                    if (f.Id == "poison") throw new InvalidOperationException("cannot store this one");
                    ids.Emit(f.Id);
                });
            });
            web.Release(stored);
            // A start that fails on the poison file ends by itself; one that has moved it aside runs
            // on, and is stopped once the file behind it was stored and released.
            using var stop = new CancellationTokenSource();
            Task<RunResult> run = graph.RunWithin(token: stop.Token, seconds: 60);
            await Waits.Until(() => run.IsCompleted || (File.Exists(Path.Combine(_dir, "spool", "damaged", "poison"))
                && !File.Exists(Path.Combine(_dir, "spool", "ready", "fine")) && !File.Exists(Path.Combine(_dir, "spool", "replays", "fine"))),
                $"start {start + 1} to fail, or to move the poison file aside and release the fine one", seconds: 50);
            stop.Cancel();
            outcomes.Add((await run).Outcome);
        }
        // Two starts fail on it; the third moves it aside and runs on.
        Assert.Equal([RunOutcome.Failed, RunOutcome.Failed, RunOutcome.Stopped], outcomes);
        Assert.True(File.Exists(Path.Combine(_dir, "spool", "damaged", "poison")));
        // The file behind it was not to blame: it was stored (released), not moved aside.
        Assert.False(File.Exists(Path.Combine(_dir, "spool", "damaged", "fine")));
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_dir, "spool", "ready")));
        Assert.False(File.Exists(Path.Combine(_dir, "spool", "replays", "fine")), "A stored file's replay count goes with it.");
    }

    [Fact]
    public void Bad_options_are_named()
    {
        var graph = new Graph();
        var files = graph.Stream<IncomingFile>("files");
        var e = Assert.Throws<ArgumentException>(() => graph.Web("web", files, new WebOptions { Urls = "ftp://127.0.0.1:21" }));
        Assert.Contains("Web source 'web': 'ftp://127.0.0.1:21' is not an http:// address", e.Message);
        e = Assert.Throws<ArgumentException>(() => graph.Web("web", files, new WebOptions { MaxWaiting = 0 }));
        Assert.Contains("MaxWaiting must be at least 1, not 0", e.Message);
    }
}
