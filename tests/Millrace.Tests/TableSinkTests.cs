using Microsoft.Data.Sqlite;
using Millrace.Data;

namespace Millrace.Tests;

/// <summary>The table sink on SQLite: rows upserted by key, so a replay leaves one row per key.</summary>
public class TableSinkTests
{
    public sealed record FileInfoItem(string Id, int Words, double Score);

    private static async Task Write(string db, IEnumerable<FileInfoItem> items)
    {
        var graph = new Graph();
        var files = graph.Stream<FileInfoItem>("files");
        graph.Source("source", files, items);
        graph.ToTable("db", files, db, "files", f => f.Id,
            new Column<FileInfoItem>("words", "INTEGER", f => f.Words),
            new Column<FileInfoItem>("score", "REAL", f => f.Score));
        (await graph.RunWithin()).EnsureSuccess();
    }

    private static long Count(string database)
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={database}");
        connection.Open();
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM files";
        return (long)count.ExecuteScalar()!;
    }

    [Fact]
    public async Task A_batch_is_one_transaction_and_its_keys_go_to_stored_only_once_committed()
    {
        string database = Path.Combine(Path.GetTempPath(), $"millrace-batch-{Guid.NewGuid():N}.db");
        try
        {
            // 100 items arrive as one batch; the key of item 60 cannot be made: nothing of the batch is committed or said stored.
            var graph = new Graph();
            var files = graph.Stream<FileInfoItem>("files");
            var stored = graph.Stream<string>("stored");
            graph.Source("source", files, Enumerable.Range(0, 100).Select(i => new FileInfoItem($"file-{i}", i, i)).ToArray());
            graph.ToTable("db", files, stored, database, "files", f => f.Words == 60 ? throw new InvalidOperationException("no key for 60") : f.Id,
                new Column<FileInfoItem>("words", "INTEGER", f => f.Words));
            var said = new System.Collections.Concurrent.ConcurrentBag<string>();
            graph.Sink("watch", stored, said.Add);
            // A long linger: the source's 100 items leave as one batch however busy the machine is.
            RunResult failed = await graph.RunWithin(new RunOptions { Linger = TimeSpan.FromMinutes(1) });
            Assert.Equal(RunOutcome.Failed, failed.Outcome);
            Assert.Empty(said);
            Assert.Equal(0L, Count(database));

            // The same items without the bad one: all committed, every key said once, in order.
            var again = new Graph();
            var files2 = again.Stream<FileInfoItem>("files");
            var stored2 = again.Stream<string>("stored");
            again.Source("source", files2, Enumerable.Range(0, 100).Select(i => new FileInfoItem($"file-{i}", i, i)).ToArray());
            again.ToTable("db", files2, stored2, database, "files", f => f.Id, new Column<FileInfoItem>("words", "INTEGER", f => f.Words));
            var keys = new List<string>();
            again.Sink("watch", stored2, keys.Add);
            (await again.RunWithin()).EnsureSuccess();
            Assert.Equal(Enumerable.Range(0, 100).Select(i => $"file-{i}"), keys);
            Assert.Equal(100L, Count(database));
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            foreach (string f in Directory.EnumerateFiles(Path.GetTempPath(), Path.GetFileName(database) + "*")) File.Delete(f);
        }
    }

    [Fact]
    public async Task Items_become_rows_and_a_replay_does_not_duplicate_them()
    {
        string db = Path.Combine(Path.GetTempPath(), $"millrace-{Guid.NewGuid():N}.db");
        try
        {
            var items = Enumerable.Range(0, 1000).Select(i => new FileInfoItem($"file-{i}", i, i / 2.0)).ToArray();
            await Write(db, items);
            // The same items again (a replay), some with new values: still one row per key, the latest values.
            await Write(db, items.Select(f => f.Id == "file-7" ? f with { Words = 700 } : f));

            using var connection = new SqliteConnection($"Data Source={db}");
            connection.Open();
            using var count = connection.CreateCommand();
            count.CommandText = "SELECT COUNT(*), SUM(words), MAX(score) FROM files";
            using var reader = count.ExecuteReader();
            Assert.True(reader.Read());
            Assert.Equal(1000L, reader.GetInt64(0));
            Assert.Equal(Enumerable.Range(0, 1000).Sum() - 7 + 700, reader.GetInt64(1));
            Assert.Equal(499.5, reader.GetDouble(2));
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            foreach (string f in new[] { db, db + "-wal", db + "-shm" }) File.Delete(f);
        }
    }

    [Fact]
    public async Task The_same_call_upserts_into_PostgreSQL()
    {
        // The test command starts a throw-away PostgreSQL on 127.0.0.1 and names it in MILLRACE_POSTGRES.
        string database = Environment.GetEnvironmentVariable("MILLRACE_POSTGRES")
            ?? throw new InvalidOperationException("MILLRACE_POSTGRES is not set: run the tests with bash scripts/test.sh, which starts PostgreSQL.");
        string table = "files_" + Guid.NewGuid().ToString("N")[..10];
        var items = Enumerable.Range(0, 500).Select(i => new FileInfoItem($"file-{i}", i, i / 2.0)).ToArray();
        for (int round = 0; round < 2; round++)
        {
            var graph = new Graph();
            var files = graph.Stream<FileInfoItem>("files");
            graph.Source("source", files, round == 0 ? items : items.Select(f => f.Id == "file-7" ? f with { Words = 700 } : f));
            graph.ToTable("db", files, database, table, f => f.Id,
                new Column<FileInfoItem>("words", "INTEGER", f => f.Words),
                new Column<FileInfoItem>("score", "DOUBLE PRECISION", f => f.Score));
            (await graph.RunWithin()).EnsureSuccess();
        }
        await using var connection = new Npgsql.NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = $"SELECT COUNT(*), SUM(words), MAX(score) FROM {table}";
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.Equal(500L, reader.GetInt64(0));
        Assert.Equal(Enumerable.Range(0, 500).Sum() - 7 + 700, reader.GetInt64(1));
        Assert.Equal(249.5, reader.GetDouble(2));
    }

    [Fact]
    public async Task Reserved_words_work_as_table_and_column_names()
    {
        string db = Path.Combine(Path.GetTempPath(), $"millrace-{Guid.NewGuid():N}.db");
        try
        {
            var graph = new Graph();
            var orders = graph.Stream<FileInfoItem>("orders");
            graph.Source("source", orders, new[] { new FileInfoItem("a", 1, 1), new FileInfoItem("a", 2, 2) });
            graph.ToTable("db", orders, db, "order", o => o.Id, new Column<FileInfoItem>("select", "INTEGER", o => o.Words));
            (await graph.RunWithin()).EnsureSuccess();
            using var connection = new SqliteConnection($"Data Source={db}");
            connection.Open();
            using var query = connection.CreateCommand();
            query.CommandText = "SELECT COUNT(*), MAX(\"select\") FROM \"order\"";
            using var reader = query.ExecuteReader();
            Assert.True(reader.Read());
            Assert.Equal((1L, 2L), (reader.GetInt64(0), reader.GetInt64(1)));
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            foreach (string f in new[] { db, db + "-wal", db + "-shm" }) File.Delete(f);
        }
    }

    [Fact]
    public void A_bad_table_name_is_refused_before_anything_runs()
    {
        var graph = new Graph();
        var files = graph.Stream<FileInfoItem>("files");
        var e = Assert.Throws<ArgumentException>(() => graph.ToTable("db", files, "x.db", "files; DROP TABLE x", f => f.Id));
        Assert.Contains("the table name 'files; DROP TABLE x' must be letters, digits and '_'", e.Message);
    }
}
