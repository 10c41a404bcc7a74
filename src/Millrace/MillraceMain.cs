using System.CommandLine;
using System.CommandLine.Help;

namespace Millrace;

/// <summary>
/// One way to write a program's <c>Main</c>: the command line parsed strictly (System.CommandLine: <c>--help</c> lists
/// every option with its default; an unknown or misspelt option is an error with a suggestion), the graph run, and its
/// end turned into an exit code (<see cref="ExitCodes"/>), with a <see cref="GraphValidationException"/>'s problems
/// printed as a list instead of a stack trace.
/// </summary>
/// <example>
/// A program without options of its own: <c>return await graph.RunMainAsync(args);</c>. With options:
/// <code>
/// var count = new Option&lt;long&gt;("--count") { Description = "How many numbers", DefaultValueFactory = _ =&gt; 5000 };
/// return await MillraceMain.RunAsync(args, "Squares and roots", [count], async (cli, options) =&gt;
/// {
///     Graph graph = Build(cli.GetValue(count));
///     return await graph.RunAsync(options);
/// });
/// </code>
/// </example>
public static class MillraceMain
{
    /// <summary>
    /// Parses <paramref name="args"/> (Millrace's options and <paramref name="options"/>), then calls <paramref name="run"/> with
    /// the parse result and the <see cref="RunOptions"/>, and returns the exit code for how it went.
    /// </summary>
    /// <param name="args">The program's arguments.</param>
    /// <param name="description">What the program does, for <c>--help</c>.</param>
    /// <param name="options">The program's own options (read them from the parse result).</param>
    /// <param name="run">Builds and runs the graph (it may print what it likes after the run) and returns the run's result.</param>
    /// <param name="haltedExitCode">The exit code of a run a process halted (default 0: a halt is a way to end).</param>
    /// <returns>
    /// 0 completed or stopped gracefully, 1 failed (or the program's code threw), 2 bad usage or an invalid graph (nothing
    /// ran), <paramref name="haltedExitCode"/> halted, 130 stopped at once (<see cref="ExitCodes"/>).
    /// </returns>
    public static async Task<int> RunAsync(string[] args, string description, IEnumerable<Option> options,
        Func<ParseResult, RunOptions, Task<RunResult>> run, int haltedExitCode = ExitCodes.Completed)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(run);
        var command = new RootCommand(description);
        foreach (Option option in options) command.Options.Add(option);
        var millrace = new MillraceOptions();
        foreach (Option option in millrace.All) command.Options.Add(option);
        string program = System.Reflection.Assembly.GetEntryAssembly()?.GetName().Name ?? "program";

        ParseResult parsed = command.Parse(args);
        // --help, --version, or a mistake: System.CommandLine says it (with suggestions for misspelt options), nothing runs; a
        // mistake is exit code 2. (The root command has no action of its own: any action is one of these.)
        if (parsed.Errors.Count > 0 || parsed.Action is not null)
        {
            int shown = await parsed.InvokeAsync();
            return parsed.Errors.Count > 0 ? ExitCodes.Usage : shown;
        }
        RunOptions runOptions;
        try
        {
            runOptions = RunOptions.Parse(millrace.Tokens(parsed));
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"{program}: {e.Message}");
            return ExitCodes.Usage;
        }
        RunResult result;
        var started = new System.Runtime.CompilerServices.StrongBox<bool>();
        RunStart.Current.Value = started;
        try
        {
            result = await run(parsed, runOptions);
        }
        catch (Exception e) when (!started.Value && e is GraphValidationException or ArgumentException)
        {
            // Before any process ran: an invalid graph, or a choice of options it cannot run with (a name it does not have,
            // checkpoints a placement does not take).
            Console.Error.WriteLine($"{program}: {e.Message}");
            return ExitCodes.Usage;
        }
        catch (Monitoring.RunStartException e)
        {
            Console.Error.WriteLine($"{program}: {e.Message}");
            return ExitCodes.Failed;
        }
        catch (Exception e)
        {
            // The program's own code threw (after the run, say): said with its stack trace, exit code 1, not an abort.
            Console.Error.WriteLine($"{program}: {e}");
            return ExitCodes.Failed;
        }
        finally
        {
            RunStart.Current.Value = null;
        }
        switch (result.Outcome)
        {
            case RunOutcome.Failed:
                foreach (ProcessFailure failure in result.Errors) Console.Error.WriteLine($"{program}: {failure.Message}");
                return ExitCodes.Failed;
            case RunOutcome.Halted:
                return haltedExitCode;
            case RunOutcome.Stopped when result.StoppedAtOnce:
                return ExitCodes.StoppedAtOnce;
            default:
                return ExitCodes.Completed;
        }
    }

    /// <summary>Runs <paramref name="graph"/> with the command line's Millrace options (<see cref="RunAsync"/>); the program has none of its own.</summary>
    public static Task<int> RunMainAsync(this Graph graph, string[] args, string? description = null, int haltedExitCode = ExitCodes.Completed)
    {
        ArgumentNullException.ThrowIfNull(graph);
        return RunAsync(args, description ?? "A Millrace graph.", [], (_, options) => graph.RunAsync(options), haltedExitCode);
    }

    /// <summary>Millrace's own options, as System.CommandLine sees them; their values go through <see cref="RunOptions.Parse"/>.</summary>
    private sealed class MillraceOptions
    {
        private readonly List<(Option Option, bool Flag)> _options = new();

        public MillraceOptions()
        {
            var defaults = new RunOptions();
            Value("--placement", "Where the processes run: threads, processes or broker.", defaults.Placement);
            Value("--capacity", "Items a stream holds between a writer and a reader.", defaults.StreamCapacity.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Value("--batch", "Items sent together.", defaults.BatchSize.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Value("--codec", "How items cross OS processes and the broker: auto, json or binary.", defaults.Codec);
            Value("--state", "Where checkpoints go (a folder, a .db file, or a PostgreSQL connection string); with it, a checkpoint every 10 s.", null);
            Value("--checkpoint-interval", "Seconds between checkpoints (0: none).", "10 with --state");
            Value("--on-error", "PROCESS=POLICY: stop, skip, dead-letter, retry:N or retry:N:THEN (repeatable).", "stop", many: true);
            Value("--group", "Processes that share one OS process in the processes placement, e.g. a,b (repeatable).", null, many: true);
            Value("--restarts", "Restarts of the processes placement's children from the last checkpoint.", defaults.Processes.Restarts.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Value("--restart-window", "Seconds the restarts count in.", defaults.Processes.RestartWindow.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Value("--broker", "The RabbitMQ broker's AMQP URI; a cluster's nodes separated by commas.", "MILLRACE_BROKER, else amqp://guest:guest@127.0.0.1:5672/");
            Value("--processes", "The processes this program runs in the broker placement, e.g. a,b (repeatable).", "all", many: true);
            Value("--broker-poison", "A message a process cannot read: policy (as its error policy says), stop or dead-letter.", "policy");
            Value("--broker-queues", "The broker's queue type: classic, or quorum (replicated on a cluster's nodes; for production).", "classic");
            Value("--run-id", "The run's name on the broker and in metrics.", "the program's name");
            Flag("--dashboard", "Serve a live dashboard.");
            Value("--dashboard-port", "The dashboard's port (implies --dashboard).", defaults.DashboardPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Flag("--quiet", "No live view in the terminal.");
        }

        public IEnumerable<Option> All => _options.Select(o => o.Option);

        private void Value(string name, string description, string? shownDefault, bool many = false)
        {
            Option option = many
                ? new Option<string[]>(name) { Description = description, HelpName = "value", AllowMultipleArgumentsPerToken = false }
                : new Option<string>(name) { Description = description, HelpName = "value" };
            if (shownDefault is not null) option.Description += $" [default: {shownDefault}]";
            _options.Add((option, false));
        }

        private void Flag(string name, string description) => _options.Add((new Option<bool>(name) { Description = description }, true));

        /// <summary>The Millrace options the command line gave, as <see cref="RunOptions.Parse"/> reads them.</summary>
        public List<string> Tokens(ParseResult parsed)
        {
            var tokens = new List<string>();
            foreach (var (option, flag) in _options)
            {
                if (parsed.GetResult(option) is not { Implicit: false }) continue;
                if (flag)
                {
                    if (parsed.GetValue((Option<bool>)option)) tokens.Add(option.Name);
                }
                else if (option is Option<string[]> many)
                {
                    foreach (string value in parsed.GetValue(many) ?? []) tokens.AddRange([option.Name, value]);
                }
                else if (parsed.GetValue((Option<string>)option) is { } value)
                {
                    tokens.AddRange([option.Name, value]);
                }
            }
            return tokens;
        }
    }
}

/// <summary>The exit codes of <see cref="MillraceMain"/> (and of the examples).</summary>
public static class ExitCodes
{
    /// <summary>The run completed, or was stopped gracefully (Ctrl+C, SIGTERM).</summary>
    public const int Completed = 0;

    /// <summary>The run failed: a process threw, or the run could not go on (the errors are printed to standard error).</summary>
    public const int Failed = 1;

    /// <summary>The command line was wrong (an unknown option, a bad value) or the graph is not valid; nothing ran.</summary>
    public const int Usage = 2;

    /// <summary>The exit code programs may choose for a halted run (<c>haltedExitCode</c>); by default a halt exits 0.</summary>
    public const int Halted = 3;

    /// <summary>
    /// The run was stopped at once (<see cref="RunResult.StoppedAtOnce"/>: a second Ctrl+C or SIGTERM, or the drain timeout
    /// passed), so items may have been left unhandled: 130, as shells report a program ended by Ctrl+C.
    /// </summary>
    public const int StoppedAtOnce = 130;
}

/// <summary>Tells <see cref="MillraceMain"/> that a run got as far as starting its processes (an exception after that is not bad usage).</summary>
internal static class RunStart
{
    /// <summary>Set by <see cref="MillraceMain"/> around its program's code; a box, so that a run deep in its awaits can mark it.</summary>
    public static readonly AsyncLocal<System.Runtime.CompilerServices.StrongBox<bool>?> Current = new();

    public static void Mark()
    {
        if (Current.Value is { } box) box.Value = true;
    }
}
