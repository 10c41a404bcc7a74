using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Millrace.Hosting;

/// <summary>
/// <c>builder.Services.AddMillrace((services, graph) =&gt; ...)</c>: a graph run as a hosted service of the .NET generic host.
/// </summary>
/// <example>
/// <code>
/// var builder = Host.CreateApplicationBuilder(args);
/// builder.Services.AddSingleton&lt;WordStore&gt;();
/// builder.Services.AddMillrace((services, graph) =&gt;
/// {
///     var words = graph.Stream&lt;string&gt;("words");
///     graph.Source("read", words, File.ReadLines("input.txt"));
///     graph.Sink("store", words, services.GetRequiredService&lt;WordStore&gt;().Add);
/// });
/// await builder.Build().RunAsync();
/// </code>
/// </example>
public static class MillraceServiceCollectionExtensions
{
    /// <summary>
    /// Runs the graph <paramref name="build"/> declares as a hosted service. Its processes take what they need from
    /// <paramref name="build"/>'s service provider (loggers, stores, HTTP clients). The run's options come from the
    /// configuration section <c>Millrace</c> (appsettings.json, <c>Millrace__Placement=processes</c> in the environment,
    /// <c>--Millrace:Placement processes</c> on the command line), with the command line options' names:
    /// <c>Placement</c>, <c>Capacity</c>, <c>Batch</c>, <c>State</c>, <c>CheckpointInterval</c>, <c>OnError:NAME</c>, ...
    /// Log events go to the host's <see cref="ILogger"/> (category <c>Millrace</c>); the host's shutdown (SIGTERM, Ctrl+C,
    /// <see cref="IHostApplicationLifetime.StopApplication"/>) is a graceful stop; when the run ends the host stops, with exit
    /// code 1 if it failed. A health check named <c>millrace</c> reports it (<see cref="MillraceHealthCheck"/>).
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="build">Declares the graph's streams and processes; called once per run, in every OS process of it.</param>
    /// <param name="configure">Options of the hosting itself (optional).</param>
    public static IServiceCollection AddMillrace(this IServiceCollection services, Action<IServiceProvider, Graph> build,
        Action<MillraceHostingOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(build);
        var hosting = new MillraceHostingOptions();
        configure?.Invoke(hosting);
        services.AddSingleton(hosting);
        services.AddSingleton<MillraceRun>();
        services.AddHostedService(provider => new MillraceService(
            provider,
            build,
            hosting,
            provider.GetRequiredService<MillraceRun>(),
            provider.GetRequiredService<IConfiguration>(),
            provider.GetRequiredService<IHostApplicationLifetime>(),
            provider.GetService<ILoggerFactory>()));
        services.AddHealthChecks().AddCheck<MillraceHealthCheck>("millrace", tags: ["millrace"]);
        return services;
    }

    /// <summary>
    /// The Millrace settings a hosted program reads from configuration, one line each with its default, for its <c>--help</c>
    /// (as <c>--Millrace:Placement processes</c> on the command line, <c>Millrace__Placement</c> in the environment).
    /// </summary>
    public static string ConfigurationHelp(string section = "Millrace") => ConfigurationOptions.Help(section);

    /// <summary>The same, for a graph that needs no services.</summary>
    public static IServiceCollection AddMillrace(this IServiceCollection services, Action<Graph> build, Action<MillraceHostingOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(build);
        return services.AddMillrace((_, graph) => build(graph), configure);
    }
}

/// <summary>How the hosted graph fits its host.</summary>
public sealed class MillraceHostingOptions
{
    /// <summary>The configuration section the run's options are read from. Default <c>Millrace</c>.</summary>
    public string ConfigurationSection { get; set; } = "Millrace";

    /// <summary>Whether the host stops when the run ends (completed, halted, failed). Default true: the graph is the program.</summary>
    public bool StopHostWhenRunEnds { get; set; } = true;

    /// <summary>Whether the run's end sets the program's exit code (<see cref="Environment.ExitCode"/>: 1 failed, 2 could not start, 130 stopped at once). Default true.</summary>
    public bool SetExitCode { get; set; } = true;

    /// <summary>How long a queue may stay full before the health check calls the run degraded. Default 60 s.</summary>
    public TimeSpan QueueFullFor { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Changes the options read from configuration before the run (a logger of your own, observers, error policies).</summary>
    public Action<RunOptions>? Configure { get; set; }
}
