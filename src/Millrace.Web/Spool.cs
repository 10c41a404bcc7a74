using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Millrace.Web;

/// <summary>
/// The web source's durable folder. An accepted file is written to <c>tmp/</c>, flushed to disk,
/// renamed into <c>ready/ID</c> and the folder flushed: only then is its sender told it was
/// accepted. It stays in <c>ready/</c> until released, so a restart sends it again.
/// A file is one line of JSON (id, name, content type, time, origin) and then its bytes.
/// </summary>
internal sealed class Spool
{
    private readonly string _ready;
    private readonly string _tmp;

    public Spool(string folder)
    {
        Folder = Path.GetFullPath(folder);
        _ready = Path.Combine(Folder, "ready");
        _tmp = Path.Combine(Folder, "tmp");
    }

    public string Folder { get; }

    /// <summary>Holds the spool for this program alone (a second program on the same folder would replay and delete its files).</summary>
    public IDisposable Lock(string source)
    {
        Directory.CreateDirectory(Folder);
        string path = Path.Combine(Folder, "lock");
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new InvalidOperationException($"Web source '{source}': the spool folder {Folder} is in use by another program ({e.Message}); give each program a spool of its own.", e);
        }
    }

    /// <summary>Makes the folders and removes half-written files a crash left behind (they were never acknowledged).</summary>
    public void Prepare()
    {
        Directory.CreateDirectory(_ready);
        Directory.CreateDirectory(_tmp);
        foreach (string leftover in Directory.EnumerateFiles(_tmp)) File.Delete(leftover);
    }

    public bool Contains(string id) => File.Exists(Path.Combine(_ready, id));

    public int Count() => Directory.Exists(_ready) ? Directory.EnumerateFiles(_ready).Count() : 0;

    /// <summary>The ids in the spool, oldest first.</summary>
    public List<string> Ids()
    {
        if (!Directory.Exists(_ready)) return [];
        return new DirectoryInfo(_ready).EnumerateFiles()
            .OrderBy(f => f.LastWriteTimeUtc).ThenBy(f => f.Name, StringComparer.Ordinal)
            .Select(f => f.Name).ToList();
    }

    /// <summary>Writes the file durably; returns when it is on disk.</summary>
    public async Task WriteAsync(IncomingFile file, CancellationToken cancellationToken)
    {
        string tmp = Path.Combine(_tmp, file.Id + "." + Convert.ToHexString(RandomNumberGenerator.GetBytes(4)));
        try
        {
            await using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.Asynchronous))
            {
                byte[] header = JsonSerializer.SerializeToUtf8Bytes(new Header(file.Id, file.Name, file.ContentType, file.ReceivedAt, file.Origin, file.Content.Length));
                await stream.WriteAsync(header, cancellationToken);
                await stream.WriteAsync("\n"u8.ToArray(), cancellationToken);
                await stream.WriteAsync(file.Content, cancellationToken);
                stream.Flush(flushToDisk: true);
            }
            string ready = Path.Combine(_ready, file.Id);
            File.Move(tmp, ready, overwrite: true);
            try
            {
                await FlushReadyAfterAsync(Interlocked.Increment(ref _renamed));
            }
            catch (IOException)
            {
                File.Delete(ready); // not durable: not accepted
                throw;
            }
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Reads a spooled file; null when it is gone (released meanwhile) or unreadable (then it is moved aside, with the reason).</summary>
    public IncomingFile? Read(string id, Action<string> complain)
    {
        string path = Path.Combine(_ready, id);
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        try
        {
            int newline = Array.IndexOf(data, (byte)'\n');
            if (newline < 0) throw new InvalidDataException("no header line");
            Header header = JsonSerializer.Deserialize<Header>(data.AsSpan(0, newline)) ?? throw new InvalidDataException("the header is null");
            byte[] content = data.AsSpan(newline + 1).ToArray();
            if (content.Length != header.Bytes) throw new InvalidDataException($"it holds {content.Length} bytes; its header says {header.Bytes}");
            if (header.Id != id) throw new InvalidDataException($"its header names the id '{header.Id}'");
            return new IncomingFile(header.Id, header.Name, header.ContentType, content, header.ReceivedAt, header.Origin);
        }
        catch (Exception e) when (e is InvalidDataException or JsonException)
        {
            string aside = Path.Combine(Folder, "damaged");
            Directory.CreateDirectory(aside);
            File.Move(path, Path.Combine(aside, id), overwrite: true);
            complain($"the spooled file '{path}' is damaged ({e.Message}); moved to {aside}");
            return null;
        }
    }

    /// <summary>Lets a file go (it is stored). An id that is not a valid id is ignored.</summary>
    public void Release(string id)
    {
        if (!ItemIds.IsValid(id)) return;
        File.Delete(Path.Combine(_ready, id));
        string counter = Path.Combine(Folder, "replays", id);
        if (File.Exists(counter)) File.Delete(counter);
    }

    private long _renamed, _flushed;
    private readonly SemaphoreSlim _flushGate = new(1, 1);

    /// <summary>
    /// Returns once a flush of <c>ready/</c> that began after rename number <paramref name="ticket"/> has
    /// ended. Concurrent uploads share flushes (one fsync covers every rename before it), as a database
    /// shares a log flush among commits.
    /// </summary>
    private async Task FlushReadyAfterAsync(long ticket)
    {
        while (Volatile.Read(ref _flushed) < ticket)
        {
            await _flushGate.WaitAsync();
            try
            {
                if (Volatile.Read(ref _flushed) >= ticket) return;
                long covered = Interlocked.Read(ref _renamed);
                FlushFolder(_ready);
                Volatile.Write(ref _flushed, Math.Max(Volatile.Read(ref _flushed), covered));
            }
            finally
            {
                _flushGate.Release();
            }
        }
    }

    private static void FlushFolder(string folder)
    {
        // A rename is durable once the folder itself is flushed (POSIX); elsewhere there is no portable way.
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        int fd = open(folder, 0 /* O_RDONLY */);
        if (fd < 0) throw new IOException($"cannot open the folder {folder} to flush it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (fsync(fd) != 0) throw new IOException($"cannot flush the folder {folder} to disk (errno {Marshal.GetLastPInvokeError()})");
        }
        finally
        {
            close(fd);
        }
    }

    /// <summary>
    /// Counts one more start that sends the file again. The first file of a start found already sent at
    /// <paramref name="most"/> starts without being stored is moved to <c>damaged/</c> instead, and
    /// every other count starts again: a file that makes the pipeline fail would otherwise fail every
    /// start, and the files behind it are not to blame. True: send it.
    /// </summary>
    public bool CountReplay(string id, int most, ref bool movedOne, Action<string> complain)
    {
        string folder = Path.Combine(Folder, "replays");
        Directory.CreateDirectory(folder);
        string counter = Path.Combine(folder, id);
        int count = File.Exists(counter) && int.TryParse(File.ReadAllText(counter), out int n) ? n : 0;
        if (count >= most && !movedOne)
        {
            string aside = Path.Combine(Folder, "damaged");
            Directory.CreateDirectory(aside);
            File.Move(Path.Combine(_ready, id), Path.Combine(aside, id), overwrite: true);
            movedOne = true;
            foreach (string other in Directory.EnumerateFiles(folder)) File.Delete(other);
            complain($"the spooled file '{id}' was sent again at {most} starts and never stored (does it make the pipeline fail?); moved to {aside}");
            return false;
        }
        File.WriteAllText(counter, (movedOne ? 1 : count + 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
        return true;
    }

    private sealed record Header(string Id, string Name, string ContentType, DateTimeOffset ReceivedAt, string Origin, long Bytes);

    [DllImport("libc", SetLastError = true)]
    private static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", SetLastError = true)]
    private static extern int fsync(int fd);

    [DllImport("libc", SetLastError = true)]
    private static extern int close(int fd);
}

/// <summary>Item ids: what a client may give, what is made when it gives none.</summary>
internal static class ItemIds
{
    public const int MaxLength = 128;

    /// <summary>1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit (safe as a file name everywhere).</summary>
    public static bool IsValid(string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxLength || !char.IsAsciiLetterOrDigit(id[0])) return false;
        foreach (char c in id)
            if (!char.IsAsciiLetterOrDigit(c) && c != '.' && c != '_' && c != '-') return false;
        return true;
    }

    /// <summary>A new id: the time (sortable) and 64 random bits.</summary>
    public static string New() => $"{DateTime.UtcNow:yyyyMMddHHmmssfff}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}";

    /// <summary>A folder file's id: its name (made safe) and the start of the SHA-256 of name and content, so the same file taken twice is one item.</summary>
    public static string ForFolderFile(string name, byte[] content)
    {
        var safe = new StringBuilder(name.Length);
        foreach (char c in name) safe.Append(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' ? c : '_');
        string prefix = safe.Length > 80 ? safe.ToString(0, 80) : safe.ToString();
        if (prefix.Length == 0 || !char.IsAsciiLetterOrDigit(prefix[0])) prefix = "f" + prefix;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(name));
        hash.AppendData([0]);
        hash.AppendData(content);
        return prefix + "-" + Convert.ToHexStringLower(hash.GetHashAndReset())[..16];
    }
}
