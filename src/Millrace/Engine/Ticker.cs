namespace Millrace.Engine;

/// <summary>
/// Periodic timers on a thread of their own. Processes' timers must not wait for the thread pool:
/// a pool busy with blocking work (a test host, a program's own tasks) delays
/// System.Threading.Timer callbacks until it grows, by up to a second.
/// </summary>
internal static class Ticker
{
    private static readonly object Lock = new();
    private static readonly List<Entry> Entries = new();
    private static Thread? _thread;

    private sealed class Entry : IDisposable
    {
        public required long IntervalMs;
        public required Action Fire;
        public long Due;
        public volatile bool Stopped;

        public void Dispose()
        {
            lock (Lock)
            {
                Stopped = true;
                Entries.Remove(this);
            }
        }
    }

    /// <summary>Calls <paramref name="fire"/> (which must be quick and must not block) every <paramref name="interval"/> until disposed.</summary>
    public static IDisposable Every(TimeSpan interval, Action fire)
    {
        var entry = new Entry { IntervalMs = Math.Max(1, (long)interval.TotalMilliseconds), Fire = fire };
        lock (Lock)
        {
            entry.Due = Environment.TickCount64 + entry.IntervalMs;
            Entries.Add(entry);
            if (_thread is null)
            {
                _thread = new Thread(Run) { IsBackground = true, Name = "millrace timers" };
                _thread.Start();
            }
            Monitor.PulseAll(Lock);
        }
        return entry;
    }

    private static void Run()
    {
        var due = new List<Entry>();
        while (true)
        {
            lock (Lock)
            {
                while (true)
                {
                    long now = Environment.TickCount64;
                    long next = long.MaxValue;
                    foreach (Entry e in Entries)
                    {
                        if (e.Due <= now) due.Add(e);
                        else next = Math.Min(next, e.Due);
                    }
                    if (due.Count > 0) break;
                    Monitor.Wait(Lock, next == long.MaxValue ? Timeout.Infinite : (int)Math.Min(int.MaxValue, next - now));
                }
                long at = Environment.TickCount64;
                foreach (Entry e in due) e.Due = Math.Max(e.Due + e.IntervalMs, at + 1);
            }
            foreach (Entry e in due)
            {
                try
                {
                    if (!e.Stopped) e.Fire();
                }
                catch (Exception ex)
                {
                    // The shared timer thread must live on; a failing tick only loses itself.
                    Console.Error.WriteLine($"[millrace] a timer failed: {ex.GetType().Name}: {ex.Message}");
                }
            }
            due.Clear();
        }
    }
}
