using System.Net.Sockets;
using System.Text.RegularExpressions;
using Millrace.Codecs;
using Millrace.Engine;
using Millrace.Monitoring;
using Millrace.Placements;
using Millrace.Placements.Processes;

namespace Millrace.Tests;

/// <summary>What only the processes placement has: OS processes that can die, be killed, or send bad bytes.</summary>
public class ProcessesPlacementOnlyTests
{
    private const int SIGKILL = 9, SIGTERM = 15;

    [Fact]
    public async Task The_run_result_lists_an_OS_process_per_process()
    {
        var (exit, output, err) = await ExampleProgram.RunAsync("Tutorial", new[] { "--placement", "processes", "--stats" });
        Assert.True(exit == 0, err);
        var pids = Regex.Matches(output, @"process (\w+): \d+ in, \d+ out, OS process (\d+)")
            .ToDictionary(m => m.Groups[1].Value, m => int.Parse(m.Groups[2].Value));
        Assert.Equal(new[] { "db", "process1", "process2", "web" }, pids.Keys.Order());
        Assert.Equal(4, pids.Values.Distinct().Count());
        Assert.DoesNotContain(pids.Values, pid => pid == 0);
        Assert.Contains("db: 5000 items, sum of roots 12497500", output);
    }

    [Fact]
    public async Task Grouped_processes_share_an_OS_process_and_give_the_same_result()
    {
        var (exit, output, err) = await ExampleProgram.RunAsync("Tutorial",
            new[] { "--placement", "processes", "--group", "process1,process2", "--stats", "--count", "100000" });
        Assert.True(exit == 0, err);
        var pids = Regex.Matches(output, @"process (\w+): \d+ in, \d+ out, OS process (\d+)")
            .ToDictionary(m => m.Groups[1].Value, m => int.Parse(m.Groups[2].Value));
        Assert.Equal(pids["process1"], pids["process2"]);
        Assert.Equal(3, pids.Values.Distinct().Count());
        Assert.Contains("db: 100000 items, sum of roots 4999950000", output);
    }

    [Fact]
    public void Spare_arrays_are_kept_for_full_batches_only_and_handed_out_once()
    {
        var spares = new SpareArrays();
        Assert.Null(spares.Take(8));
        var small = new long[3];
        spares.Return(small);
        Assert.Same(small, spares.Take(3));
        Assert.Null(spares.Take(3)); // handed out once
        spares.Return(new long[3]);
        long[][] full = Enumerable.Range(0, 10).Select(_ => new long[8]).ToArray();
        foreach (long[] array in full) spares.Return(array); // full batches replace the shorter ones; a few are kept
        spares.Return(new long[3]); // shorter than a full batch: dropped
        Assert.Null(spares.Take(3));
        var taken = new List<Array>();
        while (spares.Take(8) is { } array) taken.Add(array);
        Assert.Equal(8, taken.Count);
        Assert.Equal(8, taken.Distinct().Count());
        Assert.All(taken, array => Assert.Contains(array, full));
    }

    /// <summary>
    /// Batches of long are decoded into the arrays of batches their reader has handled: with small batches, a reader that
    /// sleeps now and then (so that batches wait while arrays come back) and partial batches, every item arrives once and in order.
    /// </summary>
    [Theory]
    [InlineData("64", "256")]
    [InlineData("1000", "3000")]
    public async Task Batches_decoded_into_arrays_handed_back_arrive_once_and_in_order(string batch, string capacity)
    {
        var (exit, output, err) = await ExampleProgram.RunAsync("Millrace.Scenarios",
            new[] { "order", "--placement", "processes", "--batch", batch, "--capacity", capacity });
        Assert.True(exit == 0, err);
        Assert.Contains("fast: 100000 items, in order: True, sum 9999900000", output);
        Assert.Contains("slow: 100000 items, in order: True, sum 9999900000", output);
        Assert.Contains("outcome: Completed", output);
    }

    /// <summary>
    /// The coordinator starts its children before its views: a dashboard that cannot listen still fails the run with a
    /// clear error, and the children already started are gone with it (none waits for a coordinator that gave up).
    /// </summary>
    [Theory]
    [InlineData("processes")]
    [InlineData("threads")]
    public async Task A_dashboard_port_in_use_fails_the_run_and_leaves_no_child_behind(string placement)
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        string port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var (exit, _, err) = await ExampleProgram.RunAsync("Tutorial",
            new[] { "--placement", placement, "--dashboard-port", port, "--count", "1000000000000" });
        Assert.True(exit == 1, err);
        Assert.Contains($"The dashboard cannot listen on 127.0.0.1:{port}", err);
        Assert.DoesNotContain("   at ", err); // the message alone: a stack trace would bury it
        Assert.DoesNotContain("cannot reach the coordinator", err);
        string[] left = Directory.EnumerateDirectories("/proc")
            .Where(d => int.TryParse(Path.GetFileName(d), out _))
            .Select(d =>
            {
                try
                {
                    return File.ReadAllText(Path.Combine(d, "cmdline")).Replace('\0', ' ');
                }
                catch (IOException)
                {
                    return "";
                }
            })
            .Where(cmdline => cmdline.Contains($"--dashboard-port {port} ", StringComparison.Ordinal))
            .ToArray();
        Assert.True(left.Length == 0, "still running: " + string.Join("; ", left));
    }

    [Fact]
    public async Task A_bad_group_is_a_clear_error()
    {
        var (exit, _, err) = await ExampleProgram.RunAsync("Tutorial", new[] { "--placement", "processes", "--group", "process1,nobody" });
        Assert.NotEqual(0, exit);
        Assert.Contains("--group names process 'nobody', which the graph does not have", err);
    }

    [Fact]
    public async Task The_apphost_executable_can_start_itself_again()
    {
        string apphost = ExampleProgram.OwnFile("Tutorial", "Tutorial");
        Assert.True(File.Exists(apphost), apphost);
        var (exit, output, err) = await ExampleProgram.RunFileAsync(apphost, new[] { "--placement", "processes" });
        Assert.True(exit == 0, err);
        Assert.Equal("db: 5000 items, sum of roots 12497500", output.Trim());
    }

    [Fact]
    public async Task A_child_killed_with_SIGKILL_is_reported_by_name_and_the_run_stops()
    {
        using var program = ExampleProgram.Start("Tutorial", "--count", "1000000000000", "--verbose", "--capacity", "1024", "--placement", "processes");
        int[] children = await ChildProcesses.ChildrenAsync(program.Pid, 4);
        int victim = children.Single(pid => ChildProcesses.Processes(pid) == "process1");
        await program.WaitForOutputAsync(o => o.Contains("tmp process2 : 1000\n"), seconds: 30); // items are flowing
        ExampleProgram.Kill(victim, SIGKILL);

        var (exit, _, err) = await program.WaitAsync(seconds: 30);

        Assert.True(exit == 1, err);
        Assert.True(err.Contains($"Process 'process1' (OS process {victim}) died: killed by signal 9 (SIGKILL)"), err);
        Assert.All(children, pid => Assert.False(ChildProcesses.Alive(pid), $"child {pid} ({ChildProcesses.Processes(pid)}) is still running"));
    }

    [Fact]
    public async Task A_dead_child_is_not_waited_for()
    {
        // The scenario waits ten minutes (StopTimeout) for the children's final reports; the dead child
        // can send none, so the run must end as soon as the others have reported, well within this test's bound.
        using var program = ExampleProgram.Start("Millrace.Scenarios", "endless", "--placement", "processes");
        int[] children = await ChildProcesses.ChildrenAsync(program.Pid, 2);
        await program.WaitForOutputAsync(o => o.Contains("sink: first item"), seconds: 30);
        int victim = children.Single(pid => ChildProcesses.Processes(pid) == "sink");
        ExampleProgram.Kill(victim, SIGKILL);

        var (exit, output, err) = await program.WaitAsync(seconds: 60);

        Assert.True(exit == 1, err);
        Assert.Contains($"Process 'sink' (OS process {victim}) died: killed by signal 9 (SIGKILL)", output);
        Assert.All(children, pid => Assert.False(ChildProcesses.Alive(pid), $"child {pid} ({ChildProcesses.Processes(pid)}) is still running"));
    }

    [Fact]
    public async Task SIGTERM_to_one_child_is_ignored_by_it_and_the_run_ends_exactly()
    {
        using var program = ExampleProgram.Start("Tutorial", "--count", "300000", "--verbose", "--placement", "processes");
        int[] children = await ChildProcesses.ChildrenAsync(program.Pid, 4);
        int victim = children.Single(pid => ChildProcesses.Processes(pid) == "process1");
        await program.WaitForOutputAsync(o => o.Contains("tmp process2 : 1000\n"), seconds: 30); // items are flowing
        ExampleProgram.Kill(victim, SIGTERM);

        var (exit, output, err) = await program.WaitAsync(seconds: 120);
        // Children follow the coordinator, not signals of their own (docs/processes-placement.md): nothing is lost.
        Assert.True(exit == 0, err);
        Assert.Contains("db: 300000 items, sum of roots 44999850000", output);
        Assert.Equal(300_000, Regex.Matches(output, @"^tmp process1 : ", RegexOptions.Multiline).Count);
    }

    [Fact]
    public async Task A_child_that_cannot_start_is_reported_by_name_and_the_others_stop()
    {
        using var program = ExampleProgram.Start("Millrace.Scenarios", "child-exits", "--placement", "processes");
        var (exit, output, err) = await program.WaitAsync(seconds: 60);
        Assert.Equal(1, exit);
        Assert.Contains("outcome: Failed", output);
        Assert.Matches(@"error: process=square .*Process 'square' \(OS process \d+\) died before it started: exited with code 3", output);
        Assert.DoesNotContain("did not stop", output + err);
    }

    [Fact]
    public async Task Children_exit_when_the_coordinator_is_killed()
    {
        using var program = ExampleProgram.Start("Tutorial", "--count", "1000000000000", "--verbose", "--capacity", "1024", "--placement", "processes");
        int[] children = await ChildProcesses.ChildrenAsync(program.Pid, 4);
        string socketFolder = ChildProcesses.Variable(children[0], ChildInfo.DirVariable)!;
        Assert.True(Directory.Exists(socketFolder), socketFolder);
        await program.WaitForOutputAsync(o => o.Contains("tmp process2 : 1000\n"), seconds: 30); // items are flowing
        ExampleProgram.Kill(program.Pid, SIGKILL);
        await program.WaitAsync(seconds: 30);

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (children.Any(ChildProcesses.Alive) && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.All(children, pid => Assert.False(ChildProcesses.Alive(pid), $"child {pid} ({ChildProcesses.Processes(pid)}) outlived its coordinator"));
        Assert.False(Directory.Exists(socketFolder), $"the run's socket folder {socketFolder} was left behind");
    }

    [Fact]
    public async Task A_batch_that_cannot_be_decoded_names_the_stream_the_process_and_the_items()
    {
        var (exit, output, _) = await ExampleProgram.RunAsync("Millrace.Scenarios", new[] { "corrupt", "--placement", "processes" });
        Assert.Equal(1, exit);
        Assert.Contains("outcome: Failed", output);
        Match error = Regex.Match(output, @"error: process=store stream=readings item=(\d+) value= exception=InvalidDataException message=Process 'store' could not decode a batch of stream 'readings' from process 'sensor'");
        Assert.True(error.Success, output);
        Assert.InRange(long.Parse(error.Groups[1].Value), 0, 1013);
    }

    [Fact]
    public async Task A_child_that_builds_a_different_graph_is_reported_and_the_others_stop_at_once()
    {
        var (exit, output, _) = await ExampleProgram.RunAsync("Millrace.Scenarios", new[] { "unstable-graph", "--placement", "processes" });
        Assert.Equal(1, exit);
        string[] errors = output.Split('\n').Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(errors);
        Assert.All(errors, e => Assert.Contains("built a different graph than the coordinator", e));
        Assert.DoesNotContain("did not stop", output);
        Assert.DoesNotContain("died", output);
    }

    [Fact]
    public void A_frame_that_is_not_one_is_refused_with_a_clear_error()
    {
        var (a, b) = SocketPair();
        using var writer = new Connection(a);
        using var reader = new Connection(b);
        a.Send(new byte[] { 0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3 });
        var e = Assert.Throws<InvalidDataException>(() => reader.ReadFrames((_, _, _, _) => { }));
        Assert.Contains("announces 2147483647 bytes", e.Message);

        var (c, d) = SocketPair();
        using var reader2 = new Connection(d);
        c.Send(new byte[] { 7, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0 });
        var kind = Assert.Throws<InvalidDataException>(() => reader2.ReadFrames((_, _, _, _) => { }));
        Assert.Contains("kind 99", kind.Message);
        c.Dispose();
    }

    [Fact]
    public void Frames_survive_the_trip_in_order_however_the_bytes_are_split()
    {
        var (a, b) = SocketPair();
        using var writer = new Connection(a);
        using var reader = new Connection(b);
        var codec = new BatchCodec<long>(BinaryCodec.For<long>());
        var seen = new List<(FrameKind, int, int, long)>();
        var thread = new Thread(() =>
        {
            for (int i = 0; i < 200; i++) writer.SendData(3, codec, Enumerable.Range(0, i + 1).Select(x => (long)x).ToArray(), i + 1);
            writer.Send(FrameKind.End, 3, 0);
            a.Shutdown(SocketShutdown.Send);
        });
        thread.Start();
        reader.ReadFrames((kind, link, count, payload) =>
            seen.Add((kind, link, count, kind == FrameKind.Data ? ((long[])codec.Decode(payload, count)).Sum() : 0)));
        thread.Join();
        Assert.Equal(201, seen.Count);
        for (int i = 0; i < 200; i++) Assert.Equal((FrameKind.Data, 3, i + 1, (long)i * (i + 1) / 2), seen[i]);
        Assert.Equal((FrameKind.End, 3, 0, 0L), seen[200]);
    }

    private static (Socket, Socket) SocketPair()
    {
        string path = Path.Combine(Path.GetTempPath(), $"millrace-test-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        Socket server = listener.Accept();
        File.Delete(path);
        return (client, server);
    }


    [Fact]
    public async Task A_value_refused_while_an_async_source_waits_fails_the_run_with_the_codecs_message()
    {
        // The codec runs in the flush made while the source waits, on the source's thread: its refusal
        // must become the source's failure, not an unhandled exception that kills the OS process.
        var (exit, output, err) = await ExampleProgram.RunAsync("Millrace.Scenarios", new[] { "async-source-bad-string", "--placement", "processes" });
        Assert.True(exit == 1, $"exit {exit}\n{output}\n{err}");
        Assert.Contains("outcome: Failed", output);
        Assert.Contains("error: process=words", output);
        Assert.Contains("holds an unpaired surrogate", output);
        Assert.DoesNotContain("Unhandled exception", err);
    }
}
