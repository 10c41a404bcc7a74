using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Millrace.Hosting;

/// <summary>
/// The hosted run's health: healthy while starting, running with its queues moving, and after it completed or was
/// stopped; degraded while a queue has been full for longer than <see cref="MillraceHostingOptions.QueueFullFor"/> (a
/// reader that keeps up no more) and after a halt; unhealthy once it failed (with the errors) or could not start.
/// </summary>
public sealed class MillraceHealthCheck : IHealthCheck
{
    private readonly MillraceRun _run;
    private readonly MillraceHostingOptions _options;

    /// <summary>Made by dependency injection (<see cref="MillraceServiceCollectionExtensions.AddMillrace(Microsoft.Extensions.DependencyInjection.IServiceCollection, Action{IServiceProvider, Graph}, Action{MillraceHostingOptions}?)"/>).</summary>
    public MillraceHealthCheck(MillraceRun run, MillraceHostingOptions options)
    {
        _run = run;
        _options = options;
    }

    /// <inheritdoc />
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object> { ["status"] = _run.Status.ToString() };
        HealthCheckResult result = _run.Status switch
        {
            MillraceRunStatus.Failed => HealthCheckResult.Unhealthy(
                _run.StartFailure is { } e
                    ? $"the run could not start: {e.Message}"
                    : $"the run failed: {string.Join("; ", _run.Result?.Errors.Select(f => f.Message) ?? [])}", _run.StartFailure, data),
            MillraceRunStatus.Halted => HealthCheckResult.Degraded($"halted by {_run.Result?.HaltedBy}: {_run.Result?.HaltReason}", data: data),
            MillraceRunStatus.Running when _run.QueuesFullFor(_options.QueueFullFor) is { Count: > 0 } full => HealthCheckResult.Degraded(
                $"full for over {_options.QueueFullFor.TotalSeconds:0} s: " +
                string.Join(", ", full.Select(q => $"stream '{q.Stream}' into '{q.Reader}' (since {q.Since:HH:mm:ss})")), data: data),
            _ => HealthCheckResult.Healthy(_run.Status.ToString().ToLowerInvariant(), data),
        };
        return Task.FromResult(result);
    }
}
