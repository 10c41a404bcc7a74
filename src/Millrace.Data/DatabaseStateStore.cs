using System.Data.Common;
using Microsoft.Data.Sqlite;
using Millrace.State;
using Npgsql;

[assembly: MillraceStateStore<Millrace.Data.DatabaseStateStores>]

namespace Millrace.Data;

/// <summary>
/// Opens the state stores of Millrace.Data for <c>--state</c>: a SQLite file (<c>--state state.db</c>; also
/// <c>.sqlite</c>, <c>.sqlite3</c>) or a PostgreSQL database (<c>--state "Host=...;Username=...;Database=..."</c>),
/// where the OS processes of a broker run on different machines share their checkpoints.
/// </summary>
internal sealed class DatabaseStateStores : IStateStoreProvider
{
    public IStateStore? Open(string location, string name)
    {
        if (StateStores.PostgresConnectionString(location))
            return new DatabaseStateStore(location, name, postgres: true);
        if (StateStores.SqliteFile(location) && !Directory.Exists(location))
            return new DatabaseStateStore(location, name, postgres: false);
        return null;
    }
}

/// <summary>
/// A state store in one table of a database, <c>millrace_state (name, key, value)</c>, one row per key; each
/// program (its run id or its name) has its own rows. Every write commits on its own,
/// durably. The lock is PostgreSQL's advisory lock (released when the connection holding it ends), or for SQLite a
/// lock on a file <c>DATABASE.NAME.lock</c> beside it.
/// </summary>
internal sealed class DatabaseStateStore : IStateStore
{
    private const string TableName = "millrace_state";
    private readonly string _connectionString;
    private readonly string _name;
    private readonly bool _postgres;
    private readonly string? _file;

    public DatabaseStateStore(string location, string name, bool postgres)
    {
        _name = name;
        _postgres = postgres;
        if (postgres)
        {
            var builder = new NpgsqlConnectionStringBuilder(location);
            _connectionString = builder.ConnectionString;
            Where = $"PostgreSQL {builder.Host}:{builder.Port}/{builder.Database ?? builder.Username}, table {TableName}, name '{name}'";
        }
        else
        {
            var builder = location.StartsWith("Data Source=", StringComparison.OrdinalIgnoreCase)
                ? new SqliteConnectionStringBuilder(location)
                : new SqliteConnectionStringBuilder { DataSource = location };
            builder.DefaultTimeout = 30;
            builder.Pooling = true;
            string file = Path.GetFullPath(builder.DataSource);
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            builder.DataSource = file;
            _connectionString = builder.ConnectionString;
            _file = file;
            Where = $"{file} (SQLite), table {TableName}, name '{name}'";
        }
        try
        {
            using DbConnection connection = Connect();
            if (postgres)
            {
                // A role that may only read and write a table made for it need not be allowed to create one.
                using DbCommand exists = connection.CreateCommand();
                exists.CommandText = $"SELECT to_regclass('{TableName}') IS NOT NULL";
                if (exists.ExecuteScalar() is true) return;
            }
            using DbCommand create = connection.CreateCommand();
            create.CommandText = $"CREATE TABLE IF NOT EXISTS {TableName} (name TEXT NOT NULL, key TEXT NOT NULL, value {(postgres ? "BYTEA" : "BLOB")} NOT NULL, PRIMARY KEY (name, key))";
            create.ExecuteNonQuery();
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DuplicateTable)
        {
            // Another OS process of the run created it at the same moment.
        }
        catch (DbException e)
        {
            throw new InvalidOperationException($"The state store {Where} cannot be opened: {e.Message}", e);
        }
    }

    public string Where { get; }

    private DbConnection Connect()
    {
        DbConnection connection = _postgres ? new NpgsqlConnection(_connectionString) : new SqliteConnection(_connectionString);
        try
        {
            connection.Open();
            if (!_postgres)
            {
                using DbCommand pragma = connection.CreateCommand();
                // A commit waits for the disk: a checkpoint said complete survives a crash of the machine.
                pragma.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;";
                pragma.ExecuteNonQuery();
            }
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    private DbCommand Command(DbConnection connection, string sql, params (string Name, object Value)[] parameters)
    {
        DbCommand command = connection.CreateCommand();
        command.CommandText = sql;
        if (sql.Contains("@name", StringComparison.Ordinal)) TableSinks.Add(command, "name", _name);
        foreach ((string name, object value) in parameters) TableSinks.Add(command, name, value);
        return command;
    }

    public byte[]? Read(string key)
    {
        using DbConnection connection = Connect();
        using DbCommand command = Command(connection, $"SELECT value FROM {TableName} WHERE name = @name AND key = @key", ("key", key));
        return command.ExecuteScalar() as byte[];
    }

    public void Write(string key, ReadOnlySpan<byte> value)
    {
        using DbConnection connection = Connect();
        using DbCommand command = Command(connection,
            $"INSERT INTO {TableName} (name, key, value) VALUES (@name, @key, @value) ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
            ("key", key), ("value", value.ToArray()));
        command.ExecuteNonQuery();
    }

    public IReadOnlyList<StateEntry> List(string prefix)
    {
        using DbConnection connection = Connect();
        using DbCommand command = Command(connection,
            $"SELECT key, {(_postgres ? "octet_length" : "length")}(value) FROM {TableName} WHERE name = @name AND substr(key, 1, @length) = @prefix",
            ("length", prefix.Length), ("prefix", prefix));
        var entries = new List<StateEntry>();
        using DbDataReader reader = command.ExecuteReader();
        while (reader.Read()) entries.Add(new StateEntry(reader.GetString(0), Convert.ToInt64(reader.GetValue(1), System.Globalization.CultureInfo.InvariantCulture)));
        return entries;
    }

    public void Delete(string key)
    {
        using DbConnection connection = Connect();
        using DbCommand command = Command(connection, $"DELETE FROM {TableName} WHERE name = @name AND key = @key", ("key", key));
        command.ExecuteNonQuery();
    }

    public IDisposable Lock(string name, TimeSpan wait)
    {
        var deadline = DateTime.UtcNow + wait;
        if (_file is not null) return StateStores.LockFile($"{_file}.{name}.lock", wait, $"The state store {Where}");
        // A connection of its own, out of the pool: the lock is the session's, so it must end with it (also behind a pooler).
        DbConnection connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(_connectionString) { Pooling = false }.ConnectionString);
        try
        {
            connection.Open();
            long id = LockId(name);
            while (true)
            {
                using (DbCommand take = Command(connection, "SELECT pg_try_advisory_lock(@id)", ("id", id)))
                {
                    if (take.ExecuteScalar() is true) return new AdvisoryLock(connection, this, id);
                }
                if (DateTime.UtcNow > deadline)
                    throw new TimeoutException($"The state store {Where} stayed locked (advisory lock {id}) for {wait.TotalSeconds:0} s by another OS process of the run.");
                Thread.Sleep(5);
            }
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>The advisory lock's number: FNV-1a of the table, the program's name and the lock's, the same in every OS process.</summary>
    private long LockId(string lockName)
    {
        ulong hash = 14695981039346656037;
        foreach (byte b in System.Text.Encoding.UTF8.GetBytes(TableName + ":" + _name + ":" + lockName))
        {
            hash ^= b;
            hash *= 1099511628211;
        }
        return unchecked((long)hash);
    }

    private sealed class AdvisoryLock(DbConnection connection, DatabaseStateStore store, long id) : IDisposable
    {
        public void Dispose()
        {
            try
            {
                // Pooled connections live on: the lock must be let go, not left with the connection.
                using DbCommand release = store.Command(connection, "SELECT pg_advisory_unlock(@id)", ("id", id));
                release.ExecuteScalar();
            }
            finally
            {
                connection.Dispose();
            }
        }
    }
}
