using System.Text.RegularExpressions;

namespace Millrace.Tests;

/// <summary>examples/FileFlow beyond the placement contract: PostgreSQL as the database, bad options.</summary>
public sealed class FileFlowTests
{
    [Fact]
    public async Task FileFlow_stores_uploads_in_PostgreSQL_given_a_connection_string()
    {
        // The test command starts a throw-away PostgreSQL on 127.0.0.1 and names it in MILLRACE_POSTGRES.
        string database = Environment.GetEnvironmentVariable("MILLRACE_POSTGRES")
            ?? throw new InvalidOperationException("MILLRACE_POSTGRES is not set: run the tests with bash scripts/test.sh, which starts PostgreSQL.");
        await using (var connection = new Npgsql.NpgsqlConnection(database))
        {
            await connection.OpenAsync();
            await using var drop = connection.CreateCommand();
            drop.CommandText = "DROP TABLE IF EXISTS files";
            await drop.ExecuteNonQueryAsync();
        }
        string dir = Directory.CreateTempSubdirectory("millrace-fileflow-pg-").FullName;
        try
        {
            using var program = ExampleProgram.Start("FileFlow", "--urls", "http://127.0.0.1:0", "--db", database, "--spool", Path.Combine(dir, "spool"));
            await program.WaitForOutputAsync(o => o.Contains("web: listening on "), seconds: 60);
            string url = Regex.Match(program.Output, @"web: listening on (http://127\.0\.0\.1:\d+)").Groups[1].Value + "/streams/files";
            using HttpClient client = Uploads.NewClient();
            var sent = await Task.WhenAll(Enumerable.Range(0, 100).Select(async n => (Id: (await Uploads.PostAsync(client, url, Uploads.Content(n), $"pg{n}.txt")).Id, N: n)));

            var rows = new Dictionary<string, (string Sha, long Lines)>();
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (rows.Count < 100 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
                rows.Clear();
                await using var connection = new Npgsql.NpgsqlConnection(database);
                await connection.OpenAsync();
                await using var query = connection.CreateCommand();
                query.CommandText = "SELECT id, sha256, lines FROM files";
                try
                {
                    await using var reader = await query.ExecuteReaderAsync();
                    while (await reader.ReadAsync()) rows[reader.GetString(0)] = (reader.GetString(1), reader.GetInt64(2));
                }
                catch (Npgsql.PostgresException e) when (e.SqlState == "42P01")
                {
                    // the table is not made yet
                }
            }
            program.Signal(15);
            var (exit, output, err) = await program.WaitAsync(seconds: 60);
            Assert.True(exit == 0, err + output);
            Assert.Equal(100, rows.Count);
            foreach (var (id, n) in sent)
            {
                Assert.Equal(Uploads.Sha(Uploads.Content(n)), rows[id].Sha);
                Assert.Equal(1 + n % 7 + 1, rows[id].Lines);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task FileFlow_names_a_bad_option()
    {
        var (exit, _, err) = await ExampleProgram.RunAsync("FileFlow", ["--urls", "ftp://127.0.0.1:21"]);
        Assert.Equal(2, exit);
        Assert.Contains("FileFlow: Web source 'web': 'ftp://127.0.0.1:21' is not an http:// address", err);
        (exit, _, err) = await ExampleProgram.RunAsync("FileFlow", ["--db"]);
        Assert.Equal(2, exit);
        Assert.Contains("Required argument missing for option: '--db'", err);
    }
}
