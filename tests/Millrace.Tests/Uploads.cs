using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Millrace.Tests;

/// <summary>Posts files to a web source the way a careful client does, and reads what reached the database.</summary>
internal static class Uploads
{
    public static HttpClient NewClient() => new(new SocketsHttpHandler { MaxConnectionsPerServer = 2000, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
    {
        Timeout = TimeSpan.FromSeconds(60),
    };

    /// <summary>A file's content, different for every <paramref name="n"/>.</summary>
    public static byte[] Content(int n, string tag = "") =>
        Encoding.UTF8.GetBytes($"file {n}{tag}\n" + string.Concat(Enumerable.Range(0, n % 7 + 1).Select(i => $"word{i} line {n} the end\n")));

    public static string Sha(byte[] content) => Convert.ToHexStringLower(SHA256.HashData(content));

    /// <summary>Posts until the server accepts (2xx), waiting as Retry-After says on 503/409; returns the status and the answer's id.</summary>
    public static async Task<(HttpStatusCode Status, string Id)> PostAsync(HttpClient client, string url, byte[] content, string name,
        string? id = null, bool multipart = false, CancellationToken cancellationToken = default)
    {
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (true)
        {
            using HttpContent body = multipart ? Multipart(content, name) : Raw(content);
            using var request = new HttpRequestMessage(HttpMethod.Post, multipart ? url : url + "?name=" + Uri.EscapeDataString(name)) { Content = body };
            if (id is not null) request.Headers.Add("Millrace-Item-Id", id);
            using HttpResponseMessage response = await client.SendAsync(request, cancellationToken);
            string text = await response.Content.ReadAsStringAsync(cancellationToken);
            if (response.IsSuccessStatusCode)
                return (response.StatusCode, JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!);
            if (response.StatusCode is not (HttpStatusCode.ServiceUnavailable or HttpStatusCode.Conflict) || DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"POST {url} answered {(int)response.StatusCode}: {text}");
            TimeSpan wait = response.Headers.RetryAfter?.Delta ?? TimeSpan.FromSeconds(1);
            await Task.Delay(wait + TimeSpan.FromMilliseconds(Random.Shared.Next(0, 200)), cancellationToken);
        }
    }

    private static ByteArrayContent Raw(byte[] content)
    {
        var body = new ByteArrayContent(content);
        body.Headers.ContentType = new MediaTypeHeaderValue("text/plain");
        return body;
    }

    private static MultipartFormDataContent Multipart(byte[] content, string name)
    {
        var file = new ByteArrayContent(content);
        file.Headers.ContentType = new MediaTypeHeaderValue("text/plain");
        return new MultipartFormDataContent { { new StringContent("a note"), "note" }, { file, "file", name } };
    }

    /// <summary>The rows of a FileFlow-like table: id → (sha256, name), or two other columns.</summary>
    public static Dictionary<string, (string Sha, string Name)> Rows(string database, string table = "files", string first = "sha256", string second = "name")
    {
        var rows = new Dictionary<string, (string, string)>();
        if (!File.Exists(database)) return rows;
        using var connection = new SqliteConnection($"Data Source={database};Mode=ReadOnly");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT count(*) FROM sqlite_master WHERE name = '{table}'";
        if ((long)command.ExecuteScalar()! == 0) return rows;
        command.CommandText = $"SELECT id, {first}, {second} FROM {table}";
        using var reader = command.ExecuteReader();
        while (reader.Read()) rows.Add(reader.GetString(0), (reader.GetString(1), reader.GetString(2)));
        return rows;
    }

    /// <summary>Waits until the table holds every id of <paramref name="expected"/> (or fails after <paramref name="seconds"/>).</summary>
    public static async Task<Dictionary<string, (string Sha, string Name)>> WaitForRowsAsync(string database, ICollection<string> expected, int seconds = 90)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            Dictionary<string, (string Sha, string Name)> rows;
            try
            {
                rows = Rows(database);
            }
            catch (SqliteException)
            {
                rows = new();
            }
            int missing = expected.Count(id => !rows.ContainsKey(id));
            if (missing == 0) return rows;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{missing} of {expected.Count} files are not in the database after {seconds} s.");
            await Task.Delay(100);
        }
    }
}
