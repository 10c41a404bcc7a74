namespace Millrace.Tests;

/// <summary>The built-in sources beyond enumerables: lines of a file (also followed), a timer, a writer the host pushes into.</summary>
public class SourceTests
{
    [Fact]
    public async Task Lines_of_a_file_without_their_line_ends()
    {
        string path = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(path, "a\nb\r\n\nlast without end");
            var graph = new Graph();
            var lines = graph.Stream<string>("lines");
            graph.Lines("file", lines, path);
            var seen = new List<string>();
            graph.ToCollection("collect", lines, seen);
            (await graph.RunWithin()).EnsureSuccess();
            Assert.Equal(new[] { "a", "b", "", "last without end" }, seen);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Following_a_file_emits_appended_lines_and_never_half_a_line()
    {
        string path = Path.GetTempFileName();
        try
        {
            var graph = new Graph();
            var lines = graph.Stream<string>("lines");
            graph.Lines("tail", lines, path, follow: true);
            var seen = new List<string>();
            graph.Sink("collect", lines, l => { lock (seen) seen.Add(l); });
            using var stop = new CancellationTokenSource();
            Task<RunResult> run = graph.RunWithin(token: stop.Token);

            await Append("one\ntw");
            for (int i = 0; i < 200 && Count() < 1; i++) await Task.Delay(50);
            // "one" and "tw" were written at once: the read that found "one" found "tw" too, and must hold
            // it until its line ends (were it emitted now, it would stand in the final list below).
            lock (seen) Assert.Equal(new[] { "one" }, seen);
            await Append("o\nthree\n");
            for (int i = 0; i < 200 && Count() < 3; i++) await Task.Delay(50);
            stop.Cancel(); // a graceful stop ends the following source

            RunResult result = await run;
            Assert.True(result.Succeeded, string.Join("; ", result.Errors.Select(e => e.Message)));
            Assert.Equal(new[] { "one", "two", "three" }, seen);

            int Count()
            {
                lock (seen) return seen.Count;
            }
        }
        finally
        {
            File.Delete(path);
        }

        async Task Append(string text)
        {
            await using var file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
            await file.WriteAsync(System.Text.Encoding.UTF8.GetBytes(text));
        }
    }

    [Fact]
    public async Task Following_a_file_that_is_truncated_reads_it_again_from_its_start()
    {
        string path = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(path, "first line\nsecond line\n");
            var graph = new Graph();
            var lines = graph.Stream<string>("lines");
            graph.Lines("tail", lines, path, follow: true);
            var seen = new List<string>();
            graph.Sink("collect", lines, l => { lock (seen) seen.Add(l); });
            using var stop = new CancellationTokenSource();
            Task<RunResult> run = graph.RunWithin(token: stop.Token);

            await Waits.Until(() => Count() == 2, "the two lines of the file");
            // Truncated and written again, shorter (as a log rotated in place): the new content from its start.
            await using (var file = new FileStream(path, FileMode.Truncate, FileAccess.Write, FileShare.ReadWrite))
                await file.WriteAsync("new\n"u8.ToArray());
            await Waits.Until(() => Count() == 3, "the line written after the truncation");
            stop.Cancel();

            RunResult result = await run;
            Assert.True(result.Succeeded, string.Join("; ", result.Errors.Select(e => e.Message)));
            Assert.Equal(new[] { "first line", "second line", "new" }, seen);

            int Count()
            {
                lock (seen) return seen.Count;
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task The_host_program_pushes_items_through_a_writer()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        SourceWriter<int> writer = graph.Writer("pushed", numbers, capacity: 4);
        var seen = new List<int>();
        graph.ToCollection("collect", numbers, seen);

        // Bounded: before the run takes anything, the fifth item finds no room.
        for (int i = 0; i < 4; i++) Assert.True(writer.TryWrite(i));
        Assert.False(writer.TryWrite(99));

        Task<RunResult> run = graph.RunWithin();
        await Task.Run(async () =>
        {
            for (int i = 4; i < 1000; i++) await writer.WriteAsync(i);
            writer.Complete();
        });
        (await run).EnsureSuccess();
        Assert.Equal(Enumerable.Range(0, 1000), seen);
        await Assert.ThrowsAsync<InvalidOperationException>(() => writer.WriteAsync(1).AsTask());
    }
}
