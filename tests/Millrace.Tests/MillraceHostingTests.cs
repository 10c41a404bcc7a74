using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Millrace.Hosting;

namespace Millrace.Tests;

/// <summary>Millrace.Hosting in the test's own process: services, configuration, the health check's states, the host's stop.</summary>
public class MillraceHostingTests
{
    private static IHost Host(Action<IServiceProvider, Graph> build, Dictionary<string, string?> settings, TimeSpan? queueFullFor = null)
    {
        HostApplicationBuilder builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddSingleton<List<long>>();
        builder.Services.AddMillrace(build, o =>
        {
            o.SetExitCode = false; // the test process's exit code is the test runner's
            if (queueFullFor is { } d) o.QueueFullFor = d;
        });
        return builder.Build();
    }

    /// <summary>Runs the host until it stops itself (bounded), without disposing it: its services are read afterwards.</summary>
    private static async Task RunToEnd(IHost host)
    {
        await host.StartAsync();
        await host.WaitForShutdownAsync().WaitAsync(TimeSpan.FromSeconds(60));
    }

    private static async Task<HealthCheckResult> Health(IHost host) =>
        await new MillraceHealthCheck(host.Services.GetRequiredService<MillraceRun>(), host.Services.GetRequiredService<MillraceHostingOptions>())
            .CheckHealthAsync(new HealthCheckContext());

    [Fact]
    public async Task A_completed_run_uses_injected_services_and_configured_options_then_stops_the_host_healthy()
    {
        RunOptions? seen = null;
        using IHost host = Host((services, graph) =>
        {
            var numbers = graph.Stream<long>("numbers");
            graph.Source("source", numbers, Enumerable.Range(1, 1000).Select(i => (long)i));
            graph.Process("sink", p =>
            {
                List<long> store = services.GetRequiredService<List<long>>();
                p.On(numbers, store.Add);
            });
        }, new() { ["Millrace:Capacity"] = "128", ["Millrace:Batch"] = "16", ["Millrace:OnError:sink"] = "skip" });
        host.Services.GetRequiredService<MillraceHostingOptions>().Configure = o => seen = o;

        await RunToEnd(host); // ends by itself: the run completed and stopped the host
        Assert.Equal(Enumerable.Range(1, 1000).Select(i => (long)i), host.Services.GetRequiredService<List<long>>());
        Assert.Equal((128, 16, true), (seen!.StreamCapacity, seen.BatchSize, seen.Quiet));
        Assert.Equal("skip", seen.ErrorPolicies["sink"].ToString());
        Assert.Same(host.Services.GetRequiredService<MillraceRun>(), Assert.Single(seen.Observers));
        MillraceRun run = host.Services.GetRequiredService<MillraceRun>();
        Assert.Equal(MillraceRunStatus.Completed, run.Status);
        Assert.Equal(HealthStatus.Healthy, (await Health(host)).Status);
    }

    [Fact]
    public async Task Health_is_degraded_while_a_queue_stays_full_unhealthy_after_a_failure_and_the_host_stop_is_a_graceful_stop()
    {
        TaskCompletionSource release = Waits.Signal();
        using IHost host = Host((_, graph) =>
        {
            var numbers = graph.Stream<long>("numbers");
            graph.Source("source", numbers, Helpers.Forever());
            graph.Process("slow", p => p.On(numbers, async (x, ct) => await release.Task.WaitAsync(ct)));
        }, new() { ["Millrace:Capacity"] = "64", ["Millrace:Batch"] = "8" }, queueFullFor: TimeSpan.FromMilliseconds(300));
        await host.StartAsync();
        MillraceRun run = host.Services.GetRequiredService<MillraceRun>();
        HealthCheckResult health = default;
        await Waits.Until(async () => (health = await Health(host)).Status == HealthStatus.Degraded, "a full queue seen as degraded");
        Assert.Contains("stream 'numbers' into 'slow'", health.Description);
        Assert.Equal(MillraceRunStatus.Running, run.Status);

        // The host's stop is a graceful stop: the source stops, the slow process is let go and drains.
        Task stopping = host.StopAsync();
        release.TrySetResult();
        await stopping.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(MillraceRunStatus.Stopped, run.Status);
        Assert.False(run.Result!.StoppedAtOnce);
        Assert.Equal(HealthStatus.Healthy, (await Health(host)).Status);

        using IHost failing = Host((_, graph) =>
        {
            var numbers = graph.Stream<long>("numbers");
            graph.Source("source", numbers, [1L, 2L, 3L]);
            graph.Process("picky", p => p.On(numbers, x => { if (x == 2) throw new InvalidOperationException("two"); }));
        }, new());
        await RunToEnd(failing);
        HealthCheckResult failed = await Health(failing);
        Assert.Equal(HealthStatus.Unhealthy, failed.Status);
        Assert.Contains("Process 'picky' failed", failed.Description);
    }

    [Fact]
    public async Task Settings_that_are_not_millrace_options_are_named_and_nothing_runs()
    {
        bool built = false;
        using IHost host = Host((_, _) => built = true, new() { ["Millrace:Placment"] = "processes" });
        await RunToEnd(host);
        MillraceRun run = host.Services.GetRequiredService<MillraceRun>();
        Assert.Equal(MillraceRunStatus.Failed, run.Status);
        Assert.Contains("Configuration 'Millrace:Placment' is not a Millrace option", run.StartFailure!.Message);
        Assert.False(built);
        Assert.Equal(HealthStatus.Unhealthy, (await Health(host)).Status);
    }

    [Fact]
    public async Task A_run_that_cannot_start_while_a_later_service_is_still_starting_lets_the_host_start_then_stops_it()
    {
        // Kestrel binding its port after the Millrace service had started: the graph's options were refused before the host had
        // started, and a stop asked for then cancelled the host's start (RunAsync threw, exit code 134 instead of 2).
        HostApplicationBuilder builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Millrace:Placment"] = "processes" });
        builder.Services.AddMillrace((_, _) => { }, o => o.SetExitCode = false);
        var late = new StartsAfterMillraceHasEnded();
        builder.Services.AddHostedService(services => late.With(services));
        using IHost host = builder.Build();

        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(60)); // throws TaskCanceledException when the start was cancelled
        Assert.False(late.StartWasCancelled);
        await host.WaitForShutdownAsync().WaitAsync(TimeSpan.FromSeconds(60)); // and the host still stops by itself
        Assert.Contains("Configuration 'Millrace:Placment' is not a Millrace option", host.Services.GetRequiredService<MillraceRun>().StartFailure!.Message);
    }

    /// <summary>A hosted service whose start ends only after the Millrace service's run has ended (here: could not start).</summary>
    private sealed class StartsAfterMillraceHasEnded : IHostedService
    {
        private IServiceProvider? _services;
        public bool StartWasCancelled { get; private set; }

        public StartsAfterMillraceHasEnded With(IServiceProvider services)
        {
            _services = services;
            return this;
        }

        public async Task StartAsync(CancellationToken cancellationToken)
        {
            BackgroundService millrace = _services!.GetServices<IHostedService>().OfType<BackgroundService>().Single();
            // Its ExecuteAsync has returned: whatever it asked of the host it has asked (the stop, before the fix, at once).
            await Waits.Until(() => millrace.ExecuteTask is { IsCompleted: true }, "the Millrace service's run to end");
            StartWasCancelled = cancellationToken.IsCancellationRequested;
            cancellationToken.ThrowIfCancellationRequested(); // as Kestrel's bind does
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
