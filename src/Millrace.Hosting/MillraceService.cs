using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Millrace.Hosting;

/// <summary>The hosted service that runs the graph: built with the host's services, options from configuration, stopped with the host.</summary>
internal sealed class MillraceService : BackgroundService
{
    private readonly IServiceProvider _services;
    private readonly Action<IServiceProvider, Graph> _build;
    private readonly MillraceHostingOptions _hosting;
    private readonly MillraceRun _run;
    private readonly IConfiguration _configuration;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILogger? _logger;

    public MillraceService(IServiceProvider services, Action<IServiceProvider, Graph> build, MillraceHostingOptions hosting, MillraceRun run,
        IConfiguration configuration, IHostApplicationLifetime lifetime, ILoggerFactory? loggers)
    {
        _services = services;
        _build = build;
        _hosting = hosting;
        _run = run;
        _configuration = configuration;
        _lifetime = lifetime;
        _logger = loggers?.CreateLogger("Millrace");
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Not on the host's starting thread: a long graph build or run never delays the other services' start.
        await Task.Yield();
        RunResult result;
        var started = new System.Runtime.CompilerServices.StrongBox<bool>();
        RunStart.Current.Value = started;
        try
        {
            RunOptions options = ConfigurationOptions.Read(_configuration.GetSection(_hosting.ConfigurationSection));
            options.Logger ??= _logger;
            // The host owns Ctrl+C and SIGTERM: its shutdown cancels stoppingToken, which is the graceful stop.
            options.HandleStopSignals = false;
            options.Observers.Add(_run);
            _hosting.Configure?.Invoke(options);
            var graph = new Graph();
            _build(_services, graph);
            result = await graph.RunAsync(options, stoppingToken);
        }
        catch (Exception e)
        {
            // Nothing ran (an invalid graph, options that are not valid, a library the options need that is missing: exit code
            // 2), or the graph's own code threw while it was built (1). Said, never a host that goes on as if all were well.
            bool usage = !started.Value && e is GraphValidationException or ArgumentException;
            _run.CouldNotStart(e);
            if (_logger is not null) Log.CouldNotStart(_logger, e.Message, e);
            else Console.Error.WriteLine($"millrace: the graph could not start: {e}");
            if (_hosting.SetExitCode) Environment.ExitCode = usage ? ExitCodes.Usage : ExitCodes.Failed;
            if (_hosting.StopHostWhenRunEnds) StopHostOnceStarted();
            return;
        }
        _run.Ended(result);
        if (_hosting.SetExitCode && result.Outcome == RunOutcome.Failed) Environment.ExitCode = ExitCodes.Failed;
        else if (_hosting.SetExitCode && result.StoppedAtOnce) Environment.ExitCode = ExitCodes.StoppedAtOnce;
        if (_logger is not null) Log.Ended(_logger, result.ToString());
        if (_hosting.StopHostWhenRunEnds) StopHostOnceStarted();
    }

    /// <summary>
    /// Stops the host, but not while it is still starting: the host links its start to the stopping token, so a stop asked for
    /// while a later service starts (Kestrel binding its port, say) cancels that start, and the host's RunAsync throws a
    /// TaskCanceledException instead of returning the exit code set here. Once started (at once if it already has), the host stops.
    /// </summary>
    private void StopHostOnceStarted() =>
        _lifetime.ApplicationStarted.Register(static lifetime => ThreadPool.QueueUserWorkItem(
            static l => l.StopApplication(), (IHostApplicationLifetime)lifetime!, preferLocal: false), _lifetime);
}

internal static partial class Log
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Error, Message = "The graph could not start: {Reason}")]
    public static partial void CouldNotStart(ILogger logger, string reason, Exception exception);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "The hosted run ended: {Result}")]
    public static partial void Ended(ILogger logger, string result);
}
