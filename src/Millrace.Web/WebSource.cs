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

/// <summary>Web sources: files into a stream over HTTP (<c>POST /streams/NAME</c>) and from a watched folder.</summary>
public static class WebSources
{
    /// <summary>
    /// Declares a source process that listens on <see cref="WebOptions.Urls"/> and writes every
    /// file posted to <c>/streams/{stream's name}</c> (raw body or multipart) — and every file
    /// dropped into <see cref="WebOptions.Watch"/> — into <paramref name="output"/>. A file is
    /// written to the spool and flushed before its sender gets the 2xx with its id. The server
    /// starts with the run (in whichever OS process runs the source) and stops with it.
    /// </summary>
    /// <param name="graph">The graph.</param>
    /// <param name="name">The source process's name.</param>
    /// <param name="output">The stream files go to; its name is the path: <c>POST /streams/NAME</c>.</param>
    /// <param name="options">Where to listen and keep files, and the bounds; defaults when null.</param>
    /// <returns>The source, to say which stream tells it what is stored (<see cref="WebSource.Release"/>).</returns>
    public static WebSource Web(this Graph graph, string name, Stream<IncomingFile> output, WebOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(graph);
        ArgumentNullException.ThrowIfNull(output);
        options ??= new WebOptions();
        options.Check(name);
        var source = new WebSource(graph, name, output, options);
        graph.Source(name, output, source.RunAsync());
        return source;
    }
}

/// <summary>A declared web source (see <see cref="WebSources.Web"/>).</summary>
public sealed partial class WebSource
{
    /// <summary>The header a client sets to give a file its own id (retries with the same id are one file).</summary>
    public const string IdHeader = "Millrace-Item-Id";

    private readonly Graph _graph;
    private readonly WebOptions _options;
    private readonly Spool _spool;
    private bool _releasedByStream;

    internal WebSource(Graph graph, string name, Stream<IncomingFile> output, WebOptions options)
    {
        _graph = graph;
        Name = name;
        Stream = output;
        _options = options;
        _spool = new Spool(options.Spool);
    }

    /// <summary>The source process's name.</summary>
    public string Name { get; }

    /// <summary>The addresses listened on, once the server of the current run has started (in the OS process that runs the source).</summary>
    internal TaskCompletionSource<IReadOnlyList<string>> Listening { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The stream files go to.</summary>
    public Stream<IncomingFile> Stream { get; }

    /// <summary>
    /// Keeps every accepted file in the spool until its id comes by on <paramref name="stored"/>
    /// (a database sink writes there once the row is committed): after a crash or restart, every
    /// accepted file not yet stored is sent again. Declares the process <c>NAME-release</c>, which
    /// must run on the machine that holds the spool. Without this, a file leaves the spool once
    /// it has entered the stream.
    /// </summary>
    public void Release(Stream<string> stored)
    {
        ArgumentNullException.ThrowIfNull(stored);
        if (_releasedByStream) throw new InvalidOperationException($"Web source '{Name}': Release was already called.");
        _releasedByStream = true;
        Spool spool = _spool;
        _graph.Process(Name + "-release", p => p.On(stored, id => spool.Release(id)));
    }

    internal async IAsyncEnumerable<IncomingFile> RunAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var server = new Server(this, _options, _spool);
        try
        {
            await server.StartAsync(cancellationToken);
            ChannelReader<IncomingFile> accepted = server.Accepted;
            while (true)
            {
                bool more;
                try
                {
                    more = await accepted.WaitToReadAsync(cancellationToken);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    break; // a stop: what is accepted and not yet in the stream stays in the spool for the next run
                }
                if (!more) break;
                while (accepted.TryRead(out IncomingFile? file))
                {
                    server.Taken();
                    yield return file;
                    if (!_releasedByStream) _spool.Release(file.Id);
                }
            }
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}
