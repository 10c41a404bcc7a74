using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace Millrace.Hosting;

/// <summary>
/// <see cref="RunOptions"/> from a configuration section, with the command line options' names (as
/// <see cref="RunOptions.Parse"/> reads them, so the values are checked the same way and a mistake is named the same way).
/// </summary>
internal static class ConfigurationOptions
{
    /// <summary>Configuration key (case-insensitive) → the command line option it stands for, and whether it is a flag.</summary>
    private static readonly Dictionary<string, (string Option, bool Flag)> Keys = new(StringComparer.OrdinalIgnoreCase)
    {
        ["Placement"] = ("--placement", false),
        ["Capacity"] = ("--capacity", false),
        ["Batch"] = ("--batch", false),
        ["Codec"] = ("--codec", false),
        ["State"] = ("--state", false),
        ["CheckpointInterval"] = ("--checkpoint-interval", false),
        ["OnError"] = ("--on-error", false),
        ["Group"] = ("--group", false),
        ["Restarts"] = ("--restarts", false),
        ["RestartWindow"] = ("--restart-window", false),
        ["Broker"] = ("--broker", false),
        ["Processes"] = ("--processes", false),
        ["BrokerPoison"] = ("--broker-poison", false),
        ["BrokerQueues"] = ("--broker-queues", false),
        ["RunId"] = ("--run-id", false),
        ["Dashboard"] = ("--dashboard", true),
        ["DashboardPort"] = ("--dashboard-port", false),
        ["Quiet"] = ("--quiet", true),
    };

    /// <summary>What each setting of <paramref name="section"/> does and its default, one line each, for a program's --help.</summary>
    public static string Help(string section)
    {
        var defaults = new RunOptions();
        var lines = new (string Key, string What, string Default)[]
        {
            ("Placement", "where the processes run: threads, processes or broker", defaults.Placement),
            ("Capacity", "items a stream holds between a writer and a reader", defaults.StreamCapacity.ToString(CultureInfo.InvariantCulture)),
            ("Batch", "items sent together", defaults.BatchSize.ToString(CultureInfo.InvariantCulture)),
            ("Codec", "how items cross OS processes and the broker: auto, json or binary", defaults.Codec),
            ("State", "where checkpoints go (a folder, a .db file, a PostgreSQL connection string)", "none"),
            ("CheckpointInterval", "seconds between checkpoints (0: none)", "10 with State"),
            ("OnError:PROCESS", "stop, skip, dead-letter, retry:N or retry:N:THEN", "stop"),
            ("Group:N", "processes that share one OS process in the processes placement, e.g. a,b", "one each"),
            ("Restarts", "restarts of the processes placement's children from the last checkpoint", defaults.Processes.Restarts.ToString(CultureInfo.InvariantCulture)),
            ("RestartWindow", "seconds the restarts count in", defaults.Processes.RestartWindow.TotalSeconds.ToString(CultureInfo.InvariantCulture)),
            ("Broker", "the RabbitMQ broker's AMQP URI; a cluster's nodes separated by commas", "MILLRACE_BROKER, else amqp://guest:guest@127.0.0.1:5672/"),
            ("Processes:N", "the processes this program runs in the broker placement", "all"),
            ("BrokerPoison", "a message a process cannot read: policy, stop or dead-letter", "policy"),
            ("BrokerQueues", "the broker's queue type: classic, or quorum (replicated; for a cluster)", "classic"),
            ("RunId", "the run's name on the broker and in metrics", "the program's name"),
            ("Dashboard", "serve a live dashboard: true or false", "false"),
            ("DashboardPort", "the dashboard's port", defaults.DashboardPort.ToString(CultureInfo.InvariantCulture)),
            ("Quiet", "no live view in the terminal: true or false", "true when hosted"),
        };
        int width = lines.Max(l => l.Key.Length) + section.Length + 3;
        return string.Join(Environment.NewLine, lines.Select(l => $"  {(section + ":" + l.Key).PadRight(width)}{l.What} [default: {l.Default}]"));
    }

    public static RunOptions Read(IConfigurationSection section)
    {
        var tokens = new List<string>();
        bool quietSaid = false;
        foreach (IConfigurationSection entry in section.GetChildren())
        {
            if (!Keys.TryGetValue(entry.Key, out var known))
                throw new ArgumentException($"Configuration '{entry.Path}' is not a Millrace option. Known: {string.Join(", ", Keys.Keys)} (under '{section.Path}').");
            if (entry.Key.Equals("Quiet", StringComparison.OrdinalIgnoreCase)) quietSaid = true;
            if (known.Flag)
            {
                if (!bool.TryParse(entry.Value, out bool on))
                    throw new ArgumentException($"Configuration '{entry.Path}' must be true or false, not '{entry.Value}'.");
                if (on) tokens.Add(known.Option);
            }
            else if (entry.Key.Equals("OnError", StringComparison.OrdinalIgnoreCase) && entry.Value is null)
            {
                // OnError:process1 = skip (a section per process), as --on-error process1=skip.
                foreach (IConfigurationSection policy in entry.GetChildren()) tokens.AddRange([known.Option, $"{policy.Key}={policy.Value}"]);
            }
            else if (entry.Value is null)
            {
                // A list (Group:0 = a,b; Processes:0 = web): the option once per element.
                foreach (IConfigurationSection element in entry.GetChildren()) tokens.AddRange([known.Option, element.Value ?? ""]);
            }
            else
            {
                tokens.AddRange([known.Option, entry.Value]);
            }
        }
        RunOptions options = RunOptions.Parse(tokens.ToArray());
        // A hosted service has no terminal of its own to draw on (its console is the log's): no live view unless asked.
        if (!quietSaid) options.Quiet = true;
        return options;
    }
}
