using Microsoft.Extensions.Hosting;

namespace Millrace.Dashboard;

/// <summary>A web host whose lifetime belongs to the run: no Ctrl+C or SIGTERM handling of its own (the run stops gracefully on those).</summary>
internal sealed class RunOwnedLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
