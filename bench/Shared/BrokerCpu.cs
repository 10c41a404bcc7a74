/// <summary>
/// The CPU time of the RabbitMQ node on 127.0.0.1:5672 — its Erlang VM's utime + stime from /proc (100 ticks a second) —
/// not the cluster nodes of scripts/rabbitmq.sh cluster. Null when none runs. Shared by bench/Millrace.Bench and bench/BrokerCost.
/// </summary>
internal static class BrokerCpu
{
    public static double? Seconds()
    {
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out _)) continue;
            try
            {
                string command = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if (!command.Contains("beam.smp") || command.Contains("millrace_cluster_node")) continue;
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                return (long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0; // utime, stime (fields 14 and 15)
            }
            catch (IOException)
            {
            }
        }
        return null;
    }
}
