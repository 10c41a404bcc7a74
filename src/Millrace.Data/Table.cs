using System.Data.Common;

namespace Millrace.Data;

/// <summary>
/// A database table that items are upserted into by key: SQLite (a file path) or PostgreSQL (a
/// connection string). <see cref="TableSinks.ToTable{T}(Graph, string, Stream{T}, string, string, Func{T, string}, Column{T}[])"/>
/// declares a whole process around one; open one yourself to write rows from a process of your own.
/// Not thread-safe: use it from the process that opened it.
/// </summary>
/// <example>
/// <code>
/// graph.Process("db", p =>
/// {
///     Table&lt;double&gt;? roots = null;
///     p.OnStart(() => roots = Table&lt;double&gt;.Open("roots.db", "roots", r => r.ToString("R"),
///         new Column&lt;double&gt;("root", "DOUBLE PRECISION", r => r)));
///     p.On(input, r => roots!.Upsert(r));
///     p.OnCompleted(() => roots?.Dispose());
/// });
/// </code>
/// </example>
public sealed class Table<T> : IDisposable
{
    private readonly DbConnection _connection;
    private readonly DbCommand _upsert;
    private readonly Func<T, string> _key;
    private readonly Column<T>[] _columns;
    private readonly string _owner;

    private Table(DbConnection connection, DbCommand upsert, Func<T, string> key, Column<T>[] columns, string owner)
    {
        _connection = connection;
        _upsert = upsert;
        _key = key;
        _columns = columns;
        _owner = owner;
    }

    /// <summary>Opens the database and creates the table when missing (key column <c>id TEXT PRIMARY KEY</c>, then the columns).</summary>
    /// <param name="database">A SQLite file path (or <c>Data Source=PATH</c>), or a PostgreSQL connection string (<c>Host=...;Username=...;Database=...</c>).</param>
    /// <param name="table">The table's name (letters, digits and '_').</param>
    /// <param name="key">The item's key: the row's <c>id</c>. Items with the same key are one row (the latest wins).</param>
    /// <param name="columns">The other columns.</param>
    public static Table<T> Open(string database, string table, Func<T, string> key, params Column<T>[] columns)
        => Open(database, table, key, columns, owner: $"Table '{table}'");

    internal static Table<T> Open(string database, string table, Func<T, string> key, Column<T>[] columns, string owner, bool durable = false)
    {
        Check(owner, database, table, key, columns);
        DbConnection connection = TableSinks.Open(database, durable);
        try
        {
            using (DbCommand create = connection.CreateCommand())
            {
                create.CommandText = $"CREATE TABLE IF NOT EXISTS {TableSinks.Quote(table)} (id TEXT PRIMARY KEY{string.Concat(columns.Select(c => $", {TableSinks.Quote(c.Name)} {c.SqlType}"))})";
                create.ExecuteNonQuery();
            }
            DbCommand upsert = connection.CreateCommand();
            string names = string.Concat(columns.Select(c => ", " + TableSinks.Quote(c.Name)));
            string values = string.Concat(columns.Select((_, i) => $", @p{i}"));
            string updates = columns.Length == 0 ? "NOTHING" : "UPDATE SET " + string.Join(", ", columns.Select(c => $"{TableSinks.Quote(c.Name)} = excluded.{TableSinks.Quote(c.Name)}"));
            upsert.CommandText = $"INSERT INTO {TableSinks.Quote(table)} (id{names}) VALUES (@id{values}) ON CONFLICT (id) DO {updates}";
            return new Table<T>(connection, upsert, key, columns, owner);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    private DbTransaction? _transaction;

    /// <summary>Begins a transaction (if none is open): the next upserts are committed together by <see cref="Commit"/>.</summary>
    internal void Begin()
    {
        if (_transaction is not null) return;
        _transaction = _connection.BeginTransaction();
        _upsert.Transaction = _transaction;
    }

    /// <summary>Commits the open transaction, if any.</summary>
    internal void Commit()
    {
        if (_transaction is null) return;
        _transaction.Commit();
        _transaction.Dispose();
        _transaction = null;
        _upsert.Transaction = null;
    }

    private const string Commits = "millrace_sink_commits";
    private bool _commitsReady;

    /// <summary>
    /// The last commit a sink recorded in this database (<see cref="RecordCommit"/>): the run's token and the commit's
    /// number, or null when there is none.
    /// </summary>
    internal (string Token, long Seq)? ReadCommit(string sink)
    {
        EnsureCommits();
        using DbCommand read = _connection.CreateCommand();
        read.Transaction = _transaction;
        read.CommandText = $"SELECT token, seq FROM {Commits} WHERE sink = @sink";
        TableSinks.Add(read, "@sink", sink);
        using DbDataReader reader = read.ExecuteReader();
        return reader.Read() ? (reader.GetString(0), Convert.ToInt64(reader.GetValue(1), System.Globalization.CultureInfo.InvariantCulture)) : null;
    }

    /// <summary>Records, in the open transaction, that <paramref name="sink"/>'s commit <paramref name="seq"/> of the run <paramref name="token"/> is in it.</summary>
    internal void RecordCommit(string sink, string token, long seq)
    {
        EnsureCommits();
        Begin();
        using DbCommand write = _connection.CreateCommand();
        write.Transaction = _transaction;
        write.CommandText = $"INSERT INTO {Commits} (sink, token, seq) VALUES (@sink, @token, @seq) ON CONFLICT (sink) DO UPDATE SET token = excluded.token, seq = excluded.seq";
        TableSinks.Add(write, "@sink", sink);
        TableSinks.Add(write, "@token", token);
        TableSinks.Add(write, "@seq", seq);
        write.ExecuteNonQuery();
    }

    private void EnsureCommits()
    {
        if (_commitsReady) return;
        using DbCommand create = _connection.CreateCommand();
        create.Transaction = _transaction;
        create.CommandText = $"CREATE TABLE IF NOT EXISTS {Commits} (sink TEXT PRIMARY KEY, token TEXT NOT NULL, seq BIGINT NOT NULL)";
        create.ExecuteNonQuery();
        _commitsReady = true;
    }

    /// <summary>Inserts the item's row, or replaces the row with its key; committed when this returns. Returns the key.</summary>
    public string Upsert(T item)
    {
        string id = _key(item) ?? throw new InvalidOperationException($"{_owner}: an item's key is null; every row needs one.");
        _upsert.Parameters.Clear();
        TableSinks.Add(_upsert, "@id", id);
        for (int i = 0; i < _columns.Length; i++) TableSinks.Add(_upsert, $"@p{i}", _columns[i].Value(item));
        _upsert.ExecuteNonQuery();
        return id;
    }

    /// <summary>Closes the connection.</summary>
    public void Dispose()
    {
        _transaction?.Dispose(); // not committed: rolled back
        _upsert.Dispose();
        _connection.Dispose();
    }

    internal static void Check(string owner, string database, string table, Func<T, string> key, Column<T>[] columns)
    {
        ArgumentException.ThrowIfNullOrEmpty(database);
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(columns);
        TableSinks.CheckName(owner, "table", table);
        foreach (Column<T> c in columns)
        {
            TableSinks.CheckName(owner, "column", c.Name);
            if (c.Name == "id") throw new ArgumentException($"{owner}: 'id' is the key column; name the other columns otherwise.");
        }
    }
}
