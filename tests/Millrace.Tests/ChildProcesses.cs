using Millrace.Placements.Processes;

namespace Millrace.Tests;

/// <summary>The OS processes a coordinator of the processes placement started, found through /proc.</summary>
internal static class ChildProcesses
{
    /// <summary>The children of <paramref name="parent"/> alive now (none may be).</summary>
    public static int[] Of(int parent) =>
        Directory.GetDirectories("/proc")
            .Select(d => int.TryParse(Path.GetFileName(d), out int pid) ? pid : 0)
            .Where(pid => pid > 0 && ParentOf(pid) == parent && Processes(pid) is not null && Alive(pid))
            .ToArray();

    /// <summary>The children of <paramref name="parent"/>, once there are <paramref name="count"/> of them.</summary>
    public static async Task<int[]> ChildrenAsync(int parent, int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            int[] children = Directory.GetDirectories("/proc")
                .Select(d => int.TryParse(Path.GetFileName(d), out int pid) ? pid : 0)
                .Where(pid => pid > 0 && ParentOf(pid) == parent && Processes(pid) is not null)
                .ToArray();
            if (children.Length >= count) return children;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Only {children.Length} of {count} children started.");
            await Task.Delay(50);
        }
    }

    public static int ParentOf(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
        }
        catch (IOException)
        {
            return -1;
        }
    }

    /// <summary>The Millrace processes an OS process was started for (from its initial environment).</summary>
    public static string? Processes(int pid) => Variable(pid, ChildInfo.ProcessesVariable);

    public static string? Variable(int pid, string name)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/environ").Split('\0')
                .FirstOrDefault(v => v.StartsWith(name + "=", StringComparison.Ordinal))?[(name.Length + 1)..];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public static bool Alive(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] != 'Z'; // a zombie has exited; only its parent's bookkeeping is left
        }
        catch (IOException)
        {
            return false;
        }
    }
}
