using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Millrace.Data;

/// <summary>A column of a table sink: its name, its SQL type, and how to get its value from an item.</summary>
/// <param name="Name">The column's name (letters, digits and '_').</param>
/// <param name="SqlType">Its type as the database knows it: <c>TEXT</c>, <c>INTEGER</c>, <c>BIGINT</c>, <c>DOUBLE PRECISION</c>, …</param>
/// <param name="Value">The value for an item.</param>
public sealed record Column<T>(string Name, string SqlType, Func<T, object?> Value);

/// <summary>
/// Database sinks: every item becomes a row of a table, <b>upserted</b> by a key, so an item
/// written again (a replay, a redelivery after a restart, a client retrying an upload) leaves one
/// row, not two. SQLite through Microsoft.Data.Sqlite is the embedded default; PostgreSQL through
/// Npgsql takes the same call with a connection string.
/// </summary>
public static class TableSinks
{
    /// <summary>
    /// Declares a process that upserts every item of <paramref name="input"/> into
    /// <paramref name="table"/> (created when missing, with the key column <c>id</c> as primary key),
    /// committing the items of each batch (those that arrived together) in one transaction before what
    /// they produced leaves, and before their message is acknowledged in the broker placement.
    /// </summary>
    /// <param name="graph">The graph.</param>
    /// <param name="name">The sink process's name.</param>
    /// <param name="input">The stream whose items become rows.</param>
    /// <param name="database">A SQLite file path (or <c>Data Source=PATH</c>), or a PostgreSQL connection string (<c>Host=...;Username=...;Database=...</c>).</param>
    /// <param name="table">The table's name.</param>
    /// <param name="key">The item's key: the row's <c>id</c>. Items with the same key are one row (the latest wins).</param>
    /// <param name="columns">The other columns.</param>
    public static void ToTable<T>(this Graph graph, string name, Stream<T> input, string database, string table, Func<T, string> key,
        params Column<T>[] columns)
        => Declare(graph, name, input, stored: null, database, table, key, columns);

    /// <summary>
    /// Declares a process that upserts every item of <paramref name="input"/> into
    /// <paramref name="table"/>, like the other overload, and writes each item's key to
    /// <paramref name="stored"/> once its row is committed: whoever reads <paramref name="stored"/>
    /// knows the row is safe (a web source's spool lets the file go, for one).
    /// </summary>
    /// <param name="graph">The graph.</param>
    /// <param name="name">The sink process's name.</param>
    /// <param name="input">The stream whose items become rows.</param>
    /// <param name="stored">Receives the key of every committed row, in order.</param>
    /// <param name="database">A SQLite file path (or <c>Data Source=PATH</c>), or a PostgreSQL connection string.</param>
    /// <param name="table">The table's name.</param>
    /// <param name="key">The item's key: the row's <c>id</c>.</param>
    /// <param name="columns">The other columns.</param>
    public static void ToTable<T>(this Graph graph, string name, Stream<T> input, Stream<string> stored, string database, string table,
        Func<T, string> key, params Column<T>[] columns)
    {
        ArgumentNullException.ThrowIfNull(stored);
        Declare(graph, name, input, stored, database, table, key, columns);
    }

    private static void Declare<T>(Graph graph, string name, Stream<T> input, Stream<string>? stored, string database, string table,
        Func<T, string> key, Column<T>[] columns)
    {
        ArgumentNullException.ThrowIfNull(graph);
        Table<T>.Check($"Table sink '{name}'", database, table, key, columns);
        graph.Process(name, p =>
        {
            Table<T>? rows = null;
            Output<string>? keys = stored is null ? null : p.Output(stored);
            var epochs = new CheckpointedRows<T>(name, table);
            p.OnStart(() =>
            {
                if (p.TakesCheckpoints && stored is not null)
                    throw new InvalidOperationException(
                        $"Table sink '{name}': the overload with a stream of stored keys is not held by checkpoints yet (its keys would leave before their rows are committed for good); use the other overload, or run without checkpoints.");
                rows = Table<T>.Open(database, table, key, columns, $"Table sink '{name}'", durable: stored is not null || p.TakesCheckpoints);
                epochs.Table = rows;
            });
            // With checkpoints: rows are committed a checkpoint late, when the one that covers them is complete.
            epochs.Declare(p);
            // Without: the items of one batch (what arrived together) are one transaction: under load many rows per
            // commit, a quiet stream still one. Keys go to 'stored' only once their rows are committed.
            var pending = new List<string>();
            p.On(input, item =>
            {
                if (p.TakesCheckpoints)
                {
                    epochs.Add(item);
                    return;
                }
                rows!.Begin();
                pending.Add(rows.Upsert(item));
            });
            p.OnBatchEnd(() =>
            {
                rows?.Commit();
                if (keys is not null) foreach (string id in pending) keys.Emit(id);
                pending.Clear();
            });
            p.OnCompleted(() =>
            {
                // A stopped run resumes from its last checkpoint (which holds what this sink holds): nothing is committed early.
                if (p.TakesCheckpoints && !p.StopRequested) epochs.CommitAll();
            });
            // However the process ends (a failed CREATE TABLE included), the connection is closed.
            p.Finally(() => rows?.Dispose());
        });
    }

    internal static void Add(DbCommand command, string name, object? value)
    {
        DbParameter parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
    }
    /// <summary>PostgreSQL for a connection string with a host; SQLite otherwise (a path, or <c>Data Source=...</c>).</summary>
    internal static DbConnection Open(string database, bool durable = false)
    {
        DbConnection connection;
        if (database.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || database.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"'{database.Split('@')[^1]}': give PostgreSQL as a connection string of key=value pairs (Host=127.0.0.1;Username=me;Password=...;Database=files), not a URI.");
        if (database.Contains("Host=", StringComparison.OrdinalIgnoreCase))
        {
            connection = new NpgsqlConnection(database);
            connection.Open();
            return connection;
        }
        string source = database.Contains('=') ? database : $"Data Source={database}";
        connection = new SqliteConnection(source);
        connection.Open();
        using DbCommand wal = connection.CreateCommand();
        // Committed rows survive a crash of the program; WAL keeps a commit quick. Durable: they also
        // survive a crash of the machine (a commit waits for the disk), needed when a commit lets a spooled file go.
        wal.CommandText = $"PRAGMA journal_mode=WAL; PRAGMA synchronous={(durable ? "FULL" : "NORMAL")}; PRAGMA busy_timeout=10000;";
        wal.ExecuteNonQuery();
        return connection;
    }

    /// <summary>A checked name, quoted (reserved words such as <c>order</c> work in SQLite and PostgreSQL alike).</summary>
    internal static string Quote(string name) => "\"" + name + "\"";

    internal static void CheckName(string sink, string what, string name)
    {
        if (string.IsNullOrEmpty(name) || !name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_') || char.IsAsciiDigit(name[0]))
            throw new ArgumentException($"{sink}: the {what} name '{name}' must be letters, digits and '_', not starting with a digit.");
    }
}

/// <summary>
/// A table sink's rows with checkpoints on, committed exactly once: the rows that came before a checkpoint's marker
/// are held (in the checkpoint) until that checkpoint is complete, then committed in one transaction with a record of
/// the commit (<c>millrace_sink_commits</c>: the run's token and the commit's number). Checkpoints are taken one at a
/// time, so when the next marker reaches the sink, the one before is complete: its rows are committed then. A resumed
/// sink finds in the record whether the rows its checkpoint held were committed before the crash; rows that came after
/// the checkpoint were never committed, so a graph whose output differs when run again (a timed window, a random id)
/// leaves no row of the abandoned attempt behind.
/// </summary>
internal sealed class CheckpointedRows<T>(string sink, string table)
{
    private readonly string _record = $"{table}:{sink}";
    // Kept in every checkpoint, in this order (saving commits first, so the numbers kept after it are the new ones).
    private List<T> _held = new();
    private long _committed;
    private string _token = Guid.NewGuid().ToString("N");
    private List<T> _current = new();
    private bool _restored;

    public Table<T>? Table { get; set; }

    public void Declare(ProcessBuilder p)
    {
        p.Keep("held", () =>
        {
            // Its final part: everything was committed when its inputs ended.
            if (_ended) return _held;
            // The checkpoint before this one is complete: the rows it held are committed now.
            CommitHeld();
            _held = _current;
            _current = new List<T>();
            return _held;
        }, rows => { _held = rows; _restored = true; });
        p.Keep("committed", () => _committed, n => _committed = n);
        p.Keep("token", () => _token, token =>
        {
            _token = token;
            Reconcile();
        });
    }

    public void Add(T item) => _current.Add(item);

    /// <summary>
    /// The sink's inputs ended (not for a stop): what it holds is committed now; its final part then holds nothing to commit.
    /// A crash before the run completes and before a checkpoint holds that final part resumes from the checkpoint before,
    /// and writes the rows after it again (the same rows when the graph's output is the same when run again).
    /// </summary>
    public void CommitAll()
    {
        _held.AddRange(_current);
        _current.Clear();
        CommitHeld();
        _ended = true;
    }

    private bool _ended;

    /// <summary>
    /// Resumed from a (complete) checkpoint: its held rows are committed now, unless the record says they were
    /// already (the crash came after that commit, before the next checkpoint was complete).
    /// </summary>
    private void Reconcile()
    {
        if (!_restored || Table is null) return;
        _restored = false;
        (string Token, long Seq)? last = Table.ReadCommit(_record);
        if (last is { } done && done.Token == _token && done.Seq > _committed)
        {
            _committed = done.Seq;
            _held.Clear();
            return;
        }
        if (last is { } before && before.Token == _token ? before.Seq < _committed : _committed != 0)
            throw new InvalidDataException(
                $"Table sink '{sink}': the record of its commits in {Commits} ({last?.Token}, {last?.Seq}) is older than the checkpoint it resumes from " +
                $"({_token}, {_committed}): the table was changed outside the run (restored from a backup?). Start afresh with another --state, or restore the table too.");
        CommitHeld();
    }

    private const string Commits = "millrace_sink_commits";

    private void CommitHeld()
    {
        Table<T> table = Table ?? throw new InvalidOperationException($"Table sink '{sink}' is not open.");
        table.Begin();
        foreach (T item in _held) table.Upsert(item);
        table.RecordCommit(_record, _token, _committed + 1);
        table.Commit();
        _committed++;
        _held.Clear();
    }
}
