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
    private readonly IList<AmqpTcpEndpoint> _endpoints;
    private readonly string _where;
    private readonly TimeSpan _reconnectFor;
    private readonly object _lock = new();
    private IConnection _connection;
    private TaskCompletionSource<IConnection> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _closing;
    private int _setupFailures;

    /// <summary>Where notices (a lost connection, a reconnection) go; standard error when null.</summary>
    public Microsoft.Extensions.Logging.ILogger? Logger { get; set; }

    private BrokerSession(ConnectionFactory factory, IList<AmqpTcpEndpoint> endpoints, string where, TimeSpan reconnectFor, IConnection connection)
    {
        _factory = factory;
        _endpoints = endpoints;
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
        var (factory, endpoints, where) = Parse(uri, clientName);
        IConnection connection = await OpenAsync(factory, endpoints, where, connectFor, cancellationToken);
        return new BrokerSession(factory, endpoints, where, reconnectFor, connection);
    }

    /// <summary>
    /// One AMQP URI, or a cluster's nodes separated by commas: user, password and virtual host from the first (a later one
    /// that names others is refused); each node's host and port, tried in turn.
    /// </summary>
    internal static (ConnectionFactory Factory, IList<AmqpTcpEndpoint> Endpoints, string Where) Parse(string uri, string clientName)
    {
        string[] parts = uri.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        try
        {
            if (parts.Length == 0) throw new ArgumentException("no address given");
            var factory = new ConnectionFactory
            {
                Uri = new Uri(parts[0]),
                AutomaticRecoveryEnabled = false,
                TopologyRecoveryEnabled = false,
                RequestedConnectionTimeout = TimeSpan.FromSeconds(5),
                ClientProvidedName = clientName,
                // One dispatcher per channel, in order: a consumer's cancel-ok comes after every delivery sent before it
                // (the end agreement's pause relies on it: Consumer.PauseAsync), and a writer's messages reach its reader in order.
                ConsumerDispatchConcurrency = 1,
            };
            var endpoints = new List<AmqpTcpEndpoint> { factory.Endpoint };
            foreach (string part in parts.Skip(1))
            {
                var node = new ConnectionFactory { Uri = new Uri(part) };
                bool namesOwn = new Uri(part).UserInfo.Length > 0 || new Uri(part).AbsolutePath.Trim('/').Length > 0;
                if (namesOwn && (node.UserName != factory.UserName || node.Password != factory.Password || node.VirtualHost != factory.VirtualHost))
                    throw new ArgumentException($"'{Hide(part)}' names another user, password or virtual host than the first address: the nodes of one cluster share them (write them in the first address only)");
                endpoints.Add(node.Endpoint);
            }
            string hosts = string.Join(", ", endpoints.Select(e => $"{e.HostName}:{e.Port}"));
            return (factory, endpoints, $"{hosts} (virtual host '{factory.VirtualHost}')");
        }
        catch (Exception e) when (e is UriFormatException or ArgumentException)
        {
            throw new BrokerUnreachableException($"The broker address '{Hide(uri)}' is not an AMQP URI like amqp://user:password@host:5672/vhost " +
                $"(or several, separated by commas, for the nodes of a cluster): {e.Message}", e);
        }
    }

    /// <summary>An address without its password, for messages.</summary>
    private static string Hide(string uri) => System.Text.RegularExpressions.Regex.Replace(uri, @"(://[^:/@,]*:)[^@/,]*@", "$1***@");

    private static async Task<IConnection> OpenAsync(ConnectionFactory factory, IList<AmqpTcpEndpoint> endpoints, string where, TimeSpan within, CancellationToken cancellationToken)
    {
        DateTime deadline = DateTime.UtcNow + within;
        TimeSpan pause = TimeSpan.FromMilliseconds(100);
        while (true)
        {
            try
            {
                // Every node in turn (the client shuffles them, spreading the hosts of a run over the cluster).
                return await factory.CreateConnectionAsync(endpoints, cancellationToken);
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
            connection = await OpenAsync(_factory, _endpoints, _where, _reconnectFor, CancellationToken.None);
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
