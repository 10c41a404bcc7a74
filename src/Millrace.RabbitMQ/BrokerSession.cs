using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using System.Net.Sockets;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;

namespace Millrace.RabbitMQ;

/// <summary>The broker could not be reached, or was lost and not found again in time.</summary>
internal sealed class BrokerUnreachableException : Exception
{
    public BrokerUnreachableException(string message, Exception? inner) : base(message, inner)
    {
    }
}

/// <summary>
/// This host's connection to the broker. When the connection is lost (the broker restarts, an
/// operator closes it, the network drops), it connects again with backoff, bounded in time, and
/// tells its users to set their channels up again: they republish what was not confirmed and the
/// broker redelivers what was not acknowledged.
/// </summary>
internal sealed class BrokerSession : IAsyncDisposable
{
    private readonly ConnectionFactory _factory;
    private readonly string _where;
    private readonly TimeSpan _reconnectFor;
    private readonly object _lock = new();
    private IConnection _connection;
    private TaskCompletionSource<IConnection> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _closing;
    private int _setupFailures;

    /// <summary>Where notices (a lost connection, a reconnection) go; standard error when null.</summary>
    public Microsoft.Extensions.Logging.ILogger? Logger { get; set; }

    private BrokerSession(ConnectionFactory factory, string where, TimeSpan reconnectFor, IConnection connection)
    {
        _factory = factory;
        _where = where;
        _reconnectFor = reconnectFor;
        _connection = connection;
        _ready.SetResult(connection);
        Watch(connection);
    }

    /// <summary>Which connection this is: 1 for the first, one more after every reconnection.</summary>
    public long Generation { get; private set; } = 1;

    /// <summary>The connection was lost and is being made again (generation it lost).</summary>
    public event Action<long>? Lost;

    /// <summary>A new connection is up: set channels up again on it.</summary>
    public event Func<Task>? Reconnected;

    /// <summary>The connection was lost and could not be made again: the run cannot go on.</summary>
    public event Action<Exception>? Failed;

    public string Where => _where;

    public static async Task<BrokerSession> ConnectAsync(string uri, string clientName, TimeSpan connectFor, TimeSpan reconnectFor, CancellationToken cancellationToken)
    {
        ConnectionFactory factory;
        string where;
        try
        {
            factory = new ConnectionFactory
            {
                Uri = new Uri(uri),
                AutomaticRecoveryEnabled = false,
                TopologyRecoveryEnabled = false,
                RequestedConnectionTimeout = TimeSpan.FromSeconds(5),
                ClientProvidedName = clientName,
            };
            where = $"{factory.HostName}:{factory.Port} (virtual host '{factory.VirtualHost}')";
        }
        catch (Exception e) when (e is UriFormatException or ArgumentException)
        {
            throw new BrokerUnreachableException($"The broker address '{uri}' is not an AMQP URI like amqp://user:password@host:5672/vhost: {e.Message}", e);
        }
        IConnection connection = await OpenAsync(factory, where, connectFor, cancellationToken);
        return new BrokerSession(factory, where, reconnectFor, connection);
    }

    private static async Task<IConnection> OpenAsync(ConnectionFactory factory, string where, TimeSpan within, CancellationToken cancellationToken)
    {
        DateTime deadline = DateTime.UtcNow + within;
        TimeSpan pause = TimeSpan.FromMilliseconds(100);
        while (true)
        {
            try
            {
                return await factory.CreateConnectionAsync(cancellationToken);
            }
            catch (Exception e) when (e is BrokerUnreachableException or global::RabbitMQ.Client.Exceptions.BrokerUnreachableException or
                                          SocketException or IOException or TimeoutException or OperationInterruptedException or ConnectFailureException)
            {
                // Wrong credentials or virtual host do not get better by waiting.
                if (DateTime.UtcNow + pause > deadline || Refused(e))
                    throw new BrokerUnreachableException($"Cannot reach the RabbitMQ broker at {where}: {Reason(e)}", e);
            }
            await Task.Delay(pause, cancellationToken);
            pause = TimeSpan.FromMilliseconds(Math.Min(pause.TotalMilliseconds * 2, 2000));
        }
    }

    private static bool Refused(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is AuthenticationFailureException or PossibleAuthenticationFailureException) return true;
            if (x is OperationInterruptedException { ShutdownReason.ReplyCode: 530 or 403 }) return true;
        }
        return false;
    }

    /// <summary>The innermost useful message: "Connection refused", "ACCESS_REFUSED ...", "not allowed to access vhost".</summary>
    public static string Reason(Exception e)
    {
        var parts = new List<string>();
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            string text = x is OperationInterruptedException { ShutdownReason: { } r } ? $"{r.ReplyCode} {r.ReplyText}" : x.Message;
            if (!string.IsNullOrWhiteSpace(text) && !parts.Contains(text)) parts.Add(text);
        }
        return parts.Count == 0 ? e.GetType().Name : string.Join(": ", parts.TakeLast(2));
    }

    /// <summary>The current connection, waiting (bounded by the reconnect time) while it is being made again.</summary>
    public Task<IConnection> ConnectionAsync()
    {
        lock (_lock) return _ready.Task;
    }

    public async Task<IChannel> CreateChannelAsync(CreateChannelOptions? options = null)
    {
        IConnection connection = await ConnectionAsync();
        return await connection.CreateChannelAsync(options);
    }

    private void Watch(IConnection connection)
    {
        connection.ConnectionShutdownAsync += (_, e) =>
        {
            if (!_closing && e.Initiator != ShutdownInitiator.Application)
                _ = Task.Run(() => ReconnectAsync(connection, e.ReplyText));
            return Task.CompletedTask;
        };
    }

    private async Task ReconnectAsync(IConnection lost, string reason)
    {
        long generation;
        lock (_lock)
        {
            if (!ReferenceEquals(lost, _connection) || _closing) return;
            generation = Generation;
            _ready = new TaskCompletionSource<IConnection>(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        Lost?.Invoke(generation);
        Notices.Say(Logger, $"lost the broker connection to {_where} ({reason}); connecting again");
        IConnection connection;
        try
        {
            connection = await OpenAsync(_factory, _where, _reconnectFor, CancellationToken.None);
        }
        catch (Exception e)
        {
            var failure = new BrokerUnreachableException(
                $"Lost the connection to the RabbitMQ broker at {_where} ({reason}) and could not connect again within {_reconnectFor.TotalSeconds:0} s: {Reason(e)}", e);
            lock (_lock) _ready.TrySetException(failure);
            Failed?.Invoke(failure);
            return;
        }
        TaskCompletionSource<IConnection> ready;
        lock (_lock)
        {
            _connection = connection;
            Generation = generation + 1;
            ready = _ready;
        }
        Watch(connection);
        ready.SetResult(connection);
        lost.Dispose();
        try
        {
            if (Reconnected is { } handlers)
                foreach (Func<Task> handler in handlers.GetInvocationList().Cast<Func<Task>>())
                    await handler();
            Notices.Say(Logger, $"connected to the broker at {_where} again");
        }
        catch (Exception e) when (!_closing)
        {
            // Usually the new connection went too, and its own shutdown starts the next attempt; if it
            // is still open, drop it and start one here. Bounded: a few attempts, then the run fails.
            Notices.Say(Logger, $"setting up again after reconnecting failed: {Reason(e)}");
            if (++_setupFailures > 10)
            {
                var failure = new BrokerUnreachableException($"Could not set up again on the broker at {_where} after reconnecting: {Reason(e)}", e);
                Failed?.Invoke(failure);
                return;
            }
            if (connection.IsOpen)
            {
                await Task.Delay(200);
                try
                {
                    await connection.AbortAsync();
                }
                catch (Exception)
                {
                }
                await ReconnectAsync(connection, "setting up again failed");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _closing = true;
        IConnection connection;
        lock (_lock) connection = _connection;
        try
        {
            await connection.CloseAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception e) when (e is AlreadyClosedException or IOException or OperationInterruptedException or TimeoutException or OperationCanceledException)
        {
        }
        connection.Dispose();
    }
}
