using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Net.Http.Headers;

namespace Millrace.Web;

public sealed partial class WebSource
{
    /// <summary>The HTTP server and folder watcher of one run of the source.</summary>
    private sealed class Server : IAsyncDisposable
    {
        private readonly WebSource _source;
        private readonly WebOptions _options;
        private readonly Spool _spool;
        private readonly string _path;
        private readonly Channel<IncomingFile> _accepted = Channel.CreateUnbounded<IncomingFile>(new UnboundedChannelOptions { SingleReader = true });
        private readonly SemaphoreSlim _slots;
        private readonly SemaphoreSlim _uploads;
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _inProgress = new(StringComparer.Ordinal);
        private readonly CancellationTokenSource _stop = new();
        private WebApplication? _app;
        private Task _replay = Task.CompletedTask;
        private Task _watch = Task.CompletedTask;
        private int _spooled;
        private long _countedAt;

        public Server(WebSource source, WebOptions options, Spool spool)
        {
            _source = source;
            _options = options;
            _spool = spool;
            _path = "/streams/" + source.Stream.Name;
            _slots = new SemaphoreSlim(options.MaxWaiting, options.MaxWaiting);
            _uploads = new SemaphoreSlim(options.MaxUploads, options.MaxUploads);
        }

        public ChannelReader<IncomingFile> Accepted => _accepted.Reader;

        /// <summary>A file left the waiting line for the stream: its slot is free.</summary>
        public void Taken() => _slots.Release();

        private IDisposable? _spoolLock;

        public async Task StartAsync(CancellationToken cancellationToken)
        {
            _spoolLock = _spool.Lock(_source.Name);
            _spool.Prepare();
            List<string> spooled = _spool.Ids();
            _spooled = spooled.Count;
            _countedAt = Environment.TickCount64;

            WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
            {
                Args = [],
                ContentRootPath = AppContext.BaseDirectory,
            });
            builder.Logging.ClearProviders();
            // The run handles Ctrl+C and SIGTERM (a graceful stop); the web host must not take them.
            builder.Services.AddSingleton<IHostLifetime, RunOwnedLifetime>();
            builder.WebHost.UseUrls(_options.Urls);
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.AddServerHeader = false;
                k.Limits.MaxRequestBodySize = _options.MaxFileBytes + 64 * 1024; // room for multipart framing
                k.Limits.MaxConcurrentConnections = _options.MaxConnections;
                k.Limits.MaxConcurrentUpgradedConnections = 0;
            });
            _app = builder.Build();
            _app.Run(HandleAsync);
            if (_options.Watch is not null) Directory.CreateDirectory(_options.Watch);
            try
            {
                await _app.StartAsync(cancellationToken);
            }
            catch (IOException e)
            {
                throw new InvalidOperationException($"Web source '{_source.Name}' cannot listen on {_options.Urls}: {e.Message}", e);
            }
            var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.ToList() ?? [];
            if (_source.Listening.Task.IsCompleted) _source.Listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
            _source.Listening.TrySetResult(addresses);
            if (_options.Announce)
            {
                foreach (string address in addresses)
                {
                    _options.Logger?.LogInformation("web source '{Source}': listening on {Address}, POST {Address}{Path}", _source.Name, address, address, _path);
                    Console.WriteLine($"{_source.Name}: listening on {address} (POST {address}{_path}){(spooled.Count > 0 ? $"; {spooled.Count} spooled files sent again" : "")}");
                }
            }
            _replay = Task.Run(() => FailRunOnErrorAsync(() => ReplayAsync(spooled, _stop.Token)));
            if (_options.Watch is not null) _watch = Task.Run(() => FailRunOnErrorAsync(() => WatchAsync(_options.Watch, _stop.Token)));
        }

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            if (_app is not null)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                try { await _app.StopAsync(timeout.Token); } catch (OperationCanceledException) { }
                await _app.DisposeAsync();
            }
            try { await Task.WhenAll(_replay, _watch); } catch (OperationCanceledException) { }
            _stop.Dispose();
            _spoolLock?.Dispose(); // last: nothing writes to the spool any more
        }

        /// <summary>An unexpected failure of the replay or the folder watcher ends the source with it (the run names it), never silently.</summary>
        private async Task FailRunOnErrorAsync(Func<Task> work)
        {
            try
            {
                await work();
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
            }
            catch (Exception e)
            {
                _accepted.Writer.TryComplete(new InvalidOperationException($"Web source '{_source.Name}': {e.Message}", e));
            }
        }

        /// <summary>Files accepted by an earlier run and not yet stored go into the stream again.</summary>
        private async Task ReplayAsync(List<string> ids, CancellationToken cancellationToken)
        {
            bool movedOne = false;
            foreach (string id in ids)
            {
                await _slots.WaitAsync(cancellationToken);
                IncomingFile? file = _spool.Read(id, Complain);
                bool send;
                try
                {
                    send = file is not null && _spool.CountReplay(id, _options.MaxReplays, ref movedOne, Complain);
                }
                catch (FileNotFoundException)
                {
                    send = false; // stored and released meanwhile
                }
                if (!send)
                {
                    _slots.Release();
                    continue;
                }
                _accepted.Writer.TryWrite(file!);
            }
        }

        private async Task WatchAsync(string folder, CancellationToken cancellationToken)
        {
            folder = Path.GetFullPath(folder);
            Directory.CreateDirectory(folder);
            // A settled file is first renamed into .taking/ (one atomic step), then read, spooled and deleted from
            // there: a file replaced under its name meanwhile is not lost, and one left by a crash is taken first.
            string taking = Path.Combine(folder, ".taking");
            Directory.CreateDirectory(taking);
            foreach (FileInfo left in new DirectoryInfo(taking).EnumerateFiles()) await TakeOneAsync(left, cancellationToken);
            var seen = new Dictionary<string, (long Size, DateTime Time, long Since)>(StringComparer.Ordinal);
            var told = new HashSet<string>(StringComparer.Ordinal);
            long settle = (long)_options.SettleTime.TotalMilliseconds;
            using var timer = new PeriodicTimer(_options.PollInterval);
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                var present = new HashSet<string>(StringComparer.Ordinal);
                foreach (FileInfo info in new DirectoryInfo(folder).EnumerateFiles())
                {
                    // Writers that write under a temporary name and rename are never read half-way.
                    if (info.Name.StartsWith('.') || info.Name.EndsWith(".tmp", StringComparison.OrdinalIgnoreCase)
                        || info.Name.EndsWith(".part", StringComparison.OrdinalIgnoreCase)) continue;
                    present.Add(info.Name);
                    // Only regular files with content: links could reach other files (or around the size limit),
                    // and an empty name may still be written to (pipes and devices look empty too).
                    string? why = info.LinkTarget is not null ? "it is a symbolic link"
                        : info.Length == 0 ? "it is empty (or not a regular file)"
                        : info.Length > _options.MaxFileBytes ? $"it has {info.Length} bytes, more than the {_options.MaxFileBytes} allowed"
                        : null;
                    if (why is not null)
                    {
                        if (told.Add(info.Name)) Complain($"the file '{info.FullName}' is left in the folder: {why}");
                        continue;
                    }
                    told.Remove(info.Name);
                    long now = Environment.TickCount64;
                    if (!seen.TryGetValue(info.Name, out var last) || last.Size != info.Length || last.Time != info.LastWriteTimeUtc)
                    {
                        seen[info.Name] = (info.Length, info.LastWriteTimeUtc, now); // new or still changing
                        continue;
                    }
                    if (now - last.Since < settle) continue;
                    seen.Remove(info.Name);
                    string claimed = Path.Combine(taking, info.Name);
                    try
                    {
                        File.Move(info.FullName, claimed, overwrite: false);
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                    {
                        if (told.Add(info.Name)) Complain($"the file '{info.FullName}' cannot be taken ({e.Message}); it stays and is tried again");
                        continue;
                    }
                    await TakeOneAsync(new FileInfo(claimed), cancellationToken);
                }
                foreach (string gone in seen.Keys.Where(k => !present.Contains(k)).ToList()) seen.Remove(gone);
                told.IntersectWith(present);
            }
        }

        /// <summary>Spools one file claimed into .taking/ and hands it on, waiting for room in the waiting line.</summary>
        private async Task TakeOneAsync(FileInfo claimed, CancellationToken cancellationToken)
        {
            await _slots.WaitAsync(cancellationToken);
            bool handed = false;
            try
            {
                byte[] content = await File.ReadAllBytesAsync(claimed.FullName, cancellationToken);
                if (content.Length > _options.MaxFileBytes) throw new IOException($"it grew to {content.Length} bytes, more than the {_options.MaxFileBytes} allowed");
                string id = ItemIds.ForFolderFile(claimed.Name, content);
                if (!_spool.Contains(id))
                {
                    var file = new IncomingFile(id, claimed.Name, "application/octet-stream", content, DateTimeOffset.UtcNow, "folder");
                    await _spool.WriteAsync(file, cancellationToken);
                    Interlocked.Increment(ref _spooled);
                    handed = _accepted.Writer.TryWrite(file);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Unreadable, too large, or the spool cannot be written: the file stays in .taking/ and is tried at the next start.
                Complain($"the file '{claimed.FullName}' could not be taken ({e.Message}); it stays there and is tried again at the next start");
                return;
            }
            finally
            {
                if (!handed) _slots.Release();
            }
            // In the spool now (or already, from a run that stopped before this line): it leaves the folder.
            try
            {
                File.Delete(claimed.FullName);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Complain($"the file '{claimed.FullName}' was taken but cannot be deleted ({e.Message}); it will be recognised, not taken twice");
            }
        }

        private void Complain(string message)
        {
            // Something a person should know (a file left in the folder, say): to the logger, else to standard error.
            if (_options.Logger is { } logger) logger.LogWarning("web source '{Source}': {Text}", _source.Name, message);
            else Console.Error.WriteLine($"[millrace] web source '{_source.Name}': {message}");
        }

        private async Task HandleAsync(HttpContext context)
        {
            HttpRequest request = context.Request;
            string path = request.Path.Value ?? "";
            if (path == "/" && HttpMethods.IsGet(request.Method))
            {
                await Answer(context, 200, new { streams = new[] { _source.Stream.Name }, post = _path, idHeader = IdHeader, maxFileBytes = _options.MaxFileBytes });
                return;
            }
            if (!path.StartsWith("/streams/", StringComparison.Ordinal) || path.IndexOf('/', "/streams/".Length) >= 0)
            {
                await Error(context, 404, $"No such address '{path}': post files to {_path}.");
                return;
            }
            if (path != _path)
            {
                await Error(context, 404, $"Unknown stream '{Uri.UnescapeDataString(path["/streams/".Length..])}': this server takes files for '{_source.Stream.Name}' at {_path}.");
                return;
            }
            if (!HttpMethods.IsPost(request.Method))
            {
                context.Response.Headers.Allow = "POST";
                await Error(context, 405, $"{request.Method} is not allowed on {_path}: POST a file.");
                return;
            }
            string idHeader = request.Headers.ContainsKey(IdHeader) ? IdHeader : "Idempotency-Key";
            if (request.Headers[idHeader].Count > 1)
            {
                await Error(context, 400, $"The request has {request.Headers[idHeader].Count} {idHeader} headers; send one: a file has one id.");
                return;
            }
            string? id = request.Headers[idHeader].FirstOrDefault();
            if (id is not null && !ItemIds.IsValid(id))
            {
                await Error(context, 400, $"The {idHeader} header '{Shorten(id)}' is not a valid id: 1 to {ItemIds.MaxLength} letters, digits, '.', '_' or '-', starting with a letter or digit.");
                return;
            }
            if (request.ContentLength > _options.MaxFileBytes + 64 * 1024)
            {
                await TooLarge(context, request.ContentLength.Value);
                return;
            }
            id ??= ItemIds.New();
            if (!_inProgress.TryAdd(id, 0))
            {
                context.Response.Headers.RetryAfter = RetrySeconds();
                await Error(context, 409, $"The file '{id}' is being uploaded by another request; try again when it is done.");
                return;
            }
            bool slot = false, uploading = false;
            try
            {
                if (_spool.Contains(id))
                {
                    await Answer(context, 200, new { id, stream = _source.Stream.Name, duplicate = true });
                    return;
                }
                if (!_uploads.Wait(0))
                {
                    await Busy(context, $"{_options.MaxUploads} uploads are in progress, the most this server takes at once. Try again later.");
                    return;
                }
                uploading = true;
                using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
                deadline.CancelAfter(_options.UploadTimeout);
                (byte[] Content, string Name, string ContentType)? body;
                try
                {
                    body = await ReadFileAsync(context, id, deadline.Token);
                }
                catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
                {
                    await Error(context, 408, $"The upload took longer than {_options.UploadTimeout.TotalSeconds:0} s; it was not accepted.");
                    return;
                }
                if (body is null) return; // answered
                // Room in the waiting line for the stream: a short wait smooths a burst; then the answer is 503.
                if (!await _slots.WaitAsync(TimeSpan.FromSeconds(1), context.RequestAborted))
                {
                    await Busy(context, $"Stream '{_source.Stream.Name}' is saturated: {_options.MaxWaiting} accepted files are waiting to enter it. Try again later.");
                    return;
                }
                slot = true;
                if (SpooledCount() >= _options.MaxSpooled)
                {
                    await Busy(context, $"The spool of '{_source.Name}' holds {_options.MaxSpooled} files not yet stored. Try again later.");
                    return;
                }
                var file = new IncomingFile(id, body.Value.Name, body.Value.ContentType, body.Value.Content, DateTimeOffset.UtcNow, "http");
                try
                {
                    await _spool.WriteAsync(file, context.RequestAborted);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    Complain($"a file could not be written to the spool: {e.Message}");
                    await Busy(context, $"The file could not be written to the spool ({e.Message}); it was not accepted. Try again later.");
                    return;
                }
                Interlocked.Increment(ref _spooled);
                _accepted.Writer.TryWrite(file);
                slot = false; // handed on: the stream's side frees it
                await Answer(context, 202, new { id, stream = _source.Stream.Name, name = file.Name, bytes = file.Content.Length });
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                // the client went away before the file was accepted
            }
            finally
            {
                if (slot) _slots.Release();
                if (uploading) _uploads.Release();
                _inProgress.TryRemove(id, out _);
            }
        }

        /// <summary>The file of a request (raw body or one multipart file part); null when the request was answered with an error.</summary>
        private async Task<(byte[] Content, string Name, string ContentType)?> ReadFileAsync(HttpContext context, string id, CancellationToken token)
        {
            HttpRequest request = context.Request;
            string? name = request.Query["name"].FirstOrDefault();
            try
            {
                if (IsMultipart(request))
                {
                    if (!MediaTypeHeaderValue.TryParse(request.ContentType, out MediaTypeHeaderValue? type)
                        || HeaderUtilities.RemoveQuotes(type.Boundary).Value is not { Length: > 0 } boundary)
                    {
                        await Error(context, 400, "Malformed multipart body: the Content-Type has no boundary.");
                        return null;
                    }
                    if (boundary.Length > 200)
                    {
                        await Error(context, 400, $"Malformed multipart body: the boundary has {boundary.Length} characters; at most 200 are allowed.");
                        return null;
                    }
                    var reader = new MultipartReader(boundary, request.Body);
                    (byte[] Content, string Name, string ContentType)? found = null;
                    MultipartSection? section;
                    while ((section = await reader.ReadNextSectionAsync(token)) is not null)
                    {
                        if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out ContentDispositionHeaderValue? disposition))
                        {
                            await Error(context, 400, "Malformed multipart body: a part has no Content-Disposition.");
                            return null;
                        }
                        string? fileName = disposition.FileNameStar.Value ?? HeaderUtilities.RemoveQuotes(disposition.FileName).Value;
                        if (string.IsNullOrEmpty(fileName) && disposition.Name.Value?.Trim('"') != "file")
                        {
                            await section.Body.CopyToAsync(System.IO.Stream.Null, token); // a plain form field
                            continue;
                        }
                        if (found is not null)
                        {
                            await Error(context, 400, "The multipart body holds more than one file: send one file per request.");
                            return null;
                        }
                        byte[]? content = await ReadLimitedAsync(section.Body, context, token);
                        if (content is null) return null;
                        found = (content, CleanName(fileName) ?? CleanName(name) ?? id, section.ContentType ?? "application/octet-stream");
                    }
                    if (found is null)
                    {
                        await Error(context, 400, "The multipart body holds no file: send a part with a file name (curl -F file=@PATH).");
                        return null;
                    }
                    if (found.Value.Content.Length == 0)
                    {
                        await Error(context, 400, $"The file '{found.Value.Name}' is empty: a file needs at least one byte.");
                        return null;
                    }
                    return found;
                }
                byte[]? raw = await ReadLimitedAsync(request.Body, context, token);
                if (raw is null) return null;
                if (raw.Length == 0)
                {
                    await Error(context, 400, "The body is empty: a file needs at least one byte.");
                    return null;
                }
                return (raw, CleanName(name) ?? id, request.ContentType ?? "application/octet-stream");
            }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                await TooLarge(context, request.ContentLength ?? -1);
                return null;
            }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status408RequestTimeout)
            {
                // Kestrel's minimum data rate: the body stalled (or came slower than 240 bytes a second after 5 s).
                await Error(context, 408, "The body arrived too slowly (less than 240 bytes a second); it was not accepted. Send it again.");
                return null;
            }
            catch (Exception e) when (e is InvalidDataException or IOException or BadHttpRequestException && !token.IsCancellationRequested)
            {
                await Error(context, 400, IsMultipart(request) ? $"Malformed multipart body: {e.Message.Trim()}" : $"Malformed request body: {e.Message.Trim()}");
                return null;
            }
        }

        private async Task<byte[]?> ReadLimitedAsync(System.IO.Stream body, HttpContext context, CancellationToken token)
        {
            using var buffer = new MemoryStream();
            byte[] chunk = new byte[81920];
            int read;
            while ((read = await body.ReadAsync(chunk, token)) > 0)
            {
                if (buffer.Length + read > _options.MaxFileBytes)
                {
                    await TooLarge(context, context.Request.ContentLength ?? -1);
                    return null;
                }
                buffer.Write(chunk, 0, read);
            }
            return buffer.ToArray();
        }

        private static bool IsMultipart(HttpRequest request) =>
            request.ContentType?.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase) == true;

        private int SpooledCount()
        {
            // The release process may run elsewhere (another OS process): count the folder again now and then.
            long now = Environment.TickCount64;
            if (Volatile.Read(ref _spooled) >= _options.MaxSpooled || now - Interlocked.Read(ref _countedAt) > 1000)
            {
                Interlocked.Exchange(ref _countedAt, now);
                Volatile.Write(ref _spooled, _spool.Count());
            }
            return Volatile.Read(ref _spooled);
        }

        private string RetrySeconds() => Math.Max(0, (int)Math.Ceiling(_options.RetryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);

        private Task Busy(HttpContext context, string message)
        {
            context.Response.Headers.RetryAfter = RetrySeconds();
            return Error(context, 503, message);
        }

        private Task TooLarge(HttpContext context, long length)
        {
            // The rest of the body is not read: the connection cannot carry another request; say so, or the client may reuse it.
            context.Response.Headers.Connection = "close";
            return Error(context, 413, length >= 0
                ? $"The request has {length} bytes; files of at most {_options.MaxFileBytes} bytes are accepted."
                : $"The file is larger than the {_options.MaxFileBytes} bytes accepted.");
        }

        private static Task Error(HttpContext context, int status, string message) => Answer(context, status, new { error = message });

        private static async Task Answer(HttpContext context, int status, object body)
        {
            if (context.Response.HasStarted) return;
            context.Response.StatusCode = status;
            context.Response.ContentType = "application/json; charset=utf-8";
            // Answered without reading the whole body (an error, a duplicate): the connection is not reused.
            HttpRequest request = context.Request;
            if (status != StatusCodes.Status202Accepted && (request.ContentLength > 0 || request.Headers.TransferEncoding.Count > 0))
                context.Response.Headers.Connection = "close";
            await context.Response.WriteAsync(JsonSerializer.Serialize(body, AnswerJson), context.RequestAborted);
        }

        private static readonly JsonSerializerOptions AnswerJson = new(JsonSerializerDefaults.Web)
        {
            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        };

        /// <summary>
        /// A file name as the item carries it: the last part of a path, without control characters (a newline in a name
        /// would split a log line or a CSV row); null when nothing is left.
        /// </summary>
        internal static string? CleanName(string? name)
        {
            if (string.IsNullOrEmpty(name)) return null;
            string last = name[(name.LastIndexOfAny(['/', '\\']) + 1)..];
            string clean = new string(last.Where(c => !char.IsControl(c)).ToArray()).Trim();
            return clean.Length == 0 || clean is "." or ".." ? null : clean;
        }

        private static string Shorten(string s) => s.Length <= 40 ? s : s[..40] + "…";
    }
}
