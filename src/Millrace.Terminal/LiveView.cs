using Millrace.Monitoring;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Millrace.Terminal;

/// <summary>
/// The live terminal view of a run: a table redrawn twice a second with each process's state,
/// rates, counts and busy time, each queue's depth, progress for sources that know their count, and
/// errors. Shown when standard output is a terminal and the run is not <c>--quiet</c>; the last
/// picture stays on the screen when the run ends.
/// </summary>
internal sealed class LiveView : IRunObserver
{
    private readonly CancellationTokenSource _stop = new();
    private Task _drawing = Task.CompletedTask;
    private TextWriter? _original;
    private CapturedOutput? _captured;

    public Task StartAsync(RunMonitor monitor)
    {
        // The view draws on the real output; what the program prints meanwhile is kept and shown under it.
        _original = Console.Out;
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(_original) });
        _captured = new CapturedOutput(_original);
        Console.SetOut(_captured);
        CapturedOutput captured = _captured;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _drawing = Task.Run(async () =>
        {
            RunSample? previous = null;
            RunSample current = monitor.Sample();
            await console.Live(Render(monitor, previous, current, captured)).AutoClear(false).Overflow(VerticalOverflow.Ellipsis).StartAsync(async live =>
            {
                started.TrySetResult();
                while (!_stop.IsCancellationRequested)
                {
                    try
                    {
                        await Task.Delay(500, _stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                    }
                    previous = current;
                    current = monitor.Sample();
                    live.UpdateTarget(Render(monitor, previous, current, captured));
                    live.Refresh();
                }
                // The last picture: the run as it ended (the loop may have left between a picture and the end).
                live.UpdateTarget(Render(monitor, previous, monitor.Sample(), captured: null));
                live.Refresh();
            });
        });
        // Drawing starts on its own; a console that cannot draw must not hold up the run.
        return Task.WhenAny(started.Task, _drawing, Task.Delay(2000));
    }

    public async Task StopAsync()
    {
        _stop.Cancel();
        bool drawn = await Task.WhenAny(_drawing, Task.Delay(3000)) == _drawing;
        if (_original is not null)
        {
            if (drawn) _original.WriteLine(); // what comes next starts on a line of its own
            Console.SetOut(_original);
            _captured?.Release(); // what the program printed while the view was up, in order
        }
    }

    /// <summary>One picture of the run; <paramref name="previous"/> (half a second earlier) gives the rates.</summary>
    internal static IRenderable Render(RunMonitor monitor, RunSample? previous, RunSample current, CapturedOutput? captured)
    {
        double dt = previous is null ? 0 : current.ElapsedSeconds - previous.ElapsedSeconds;
        var before = previous?.Processes.ToDictionary(p => p.Name) ?? new Dictionary<string, ProcessSample>();
        string state = current.Outcome?.ToString() ?? "running";
        var table = new Table()
            .Border(TableBorder.Rounded)
            .Title($"[bold]Millrace[/] · {Markup.Escape(monitor.Options.Placement)} · {Markup.Escape(state)} · {current.ElapsedSeconds:0.0} s")
            .AddColumn("process")
            .AddColumn("state")
            .AddColumn(new TableColumn("in/s").RightAligned())
            .AddColumn(new TableColumn("out/s").RightAligned())
            .AddColumn(new TableColumn("in").RightAligned())
            .AddColumn(new TableColumn("out").RightAligned())
            .AddColumn(new TableColumn("busy").RightAligned())
            .AddColumn("progress");
        foreach (ProcessSample p in current.Processes)
        {
            before.TryGetValue(p.Name, out ProcessSample? b);
            double inRate = b is not null && dt > 0 ? (p.ItemsIn - b.ItemsIn) / dt : 0;
            double outRate = b is not null && dt > 0 ? (p.ItemsOut - b.ItemsOut) / dt : 0;
            double busy = b is not null && dt > 0 ? Math.Clamp((p.BusySeconds - b.BusySeconds) / dt, 0, 1) : 0;
            string progress = p.Total is { } total
                ? $"{Bar(total == 0 ? 1 : (double)p.ItemsOut / total, 6)} {(total == 0 ? 100 : 100.0 * p.ItemsOut / total):0}%"
                : "";
            string name = p.Errors > 0 ? $"[red]{Markup.Escape(p.Name)}[/]" : Markup.Escape(p.Name);
            table.AddRow(name, Markup.Escape(p.State), Count(inRate), Count(outRate), Count(p.ItemsIn), Count(p.ItemsOut), $"{busy * 100:0}%", progress);
        }
        var queues = new Table()
            .Border(TableBorder.Rounded)
            .AddColumn("stream → reader")
            .AddColumn("queue")
            .AddColumn(new TableColumn("queued").RightAligned());
        foreach (QueueSample q in current.Queues)
            queues.AddRow($"{Markup.Escape(q.Stream)} → {Markup.Escape(q.Reader)}", Bar(q.Capacity == 0 ? 0 : (double)q.Queued / q.Capacity, 20),
                $"{Count(q.Queued)} of {Count(q.Capacity)}");
        var parts = new List<IRenderable> { table };
        if (current.Queues.Count > 0) parts.Add(queues);
        if (current.Checkpoints is { } c)
            parts.Add(new Markup(Markup.Escape(c.Completed == 0
                ? "checkpoints: none yet in this run"
                : $"checkpoints: {c.Completed} in this run · the last, #{c.LastNumber}, took {c.LastDurationMs:0} ms and holds {Count(c.LastSizeBytes)}B · {c.AgeSeconds:0.0} s ago")));
        parts.AddRange(current.Errors.Take(5).Select(e => new Markup($"[red]{Markup.Escape(e.Message)}[/]")));
        // The program's latest lines (all of them are written out when the view ends).
        if (captured?.Last(5) is { Count: > 0 } lines) parts.Add(new Panel(new Rows(lines.Select(l => new Text(l)))).Header("output").Border(BoxBorder.Rounded));
        return new Rows(parts);
    }

    private static string Bar(double fill, int width)
    {
        int full = (int)Math.Round(Math.Clamp(fill, 0, 1) * width);
        string color = fill >= 0.8 ? "darkorange" : "steelblue";
        return $"[{color}]{new string('█', full)}[/][grey]{new string('░', width - full)}[/]";
    }

    private static string Count(double n) => n switch
    {
        >= 1e9 => $"{n / 1e9:0.00}G",
        >= 1e6 => $"{n / 1e6:0.00}M",
        >= 1e4 => $"{n / 1e3:0.0}k",
        _ => $"{n:0}",
    };
}
