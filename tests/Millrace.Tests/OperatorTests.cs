namespace Millrace.Tests;

/// <summary>Every operator on concrete inputs, with its edges (threads placement; the placement suite runs a pipeline of them everywhere).</summary>
public class OperatorTests
{
    /// <summary>Runs a graph: source of <paramref name="items"/> into "in", <paramref name="build"/> wires the rest, "out" collected (a hang fails after <paramref name="seconds"/>).</summary>
    private static async Task<List<TOut>> Run<TIn, TOut>(IEnumerable<TIn> items, Action<Graph, Stream<TIn>, Stream<TOut>> build, int seconds = 30)
    {
        var graph = new Graph();
        var input = graph.Stream<TIn>("in");
        var output = graph.Stream<TOut>("out");
        graph.Source("source", input, items);
        build(graph, input, output);
        var collected = new List<TOut>();
        graph.ToCollection("collect", output, collected);
        RunResult result = await graph.RunWithin(seconds: seconds);
        result.EnsureSuccess();
        return collected;
    }

    /// <summary>0..count-1 in threes: each three only once the items before it have arrived (seen by <paramref name="arrived"/>, a reader of the same stream), so they travel in batches of their own.</summary>
    private static async IAsyncEnumerable<int> InThrees(int count, Seen<int> arrived)
    {
        for (int i = 0; i < count; i++)
        {
            if (i > 0 && i % 3 == 0)
            {
                int before = i;
                await arrived.WaitFor(seen => seen.Count >= before, $"items 0 to {before - 1} to arrive");
            }
            yield return i;
        }
    }

    [Fact]
    public async Task Map_filter_and_flat_map()
    {
        Assert.Equal(new[] { 0, 1, 4, 9 }, await Run<int, int>(Enumerable.Range(0, 4), (g, i, o) => g.Map("square", i, o, x => x * x)));
        Assert.Equal(new[] { 0, 2, 4 }, await Run<int, int>(Enumerable.Range(0, 6), (g, i, o) => g.Filter("even", i, o, x => x % 2 == 0)));
        // None, one or many per item.
        Assert.Equal(new[] { 1, 2, 2, 3, 3, 3 }, await Run<int, int>(new[] { 0, 1, 2, 3 }, (g, i, o) => g.FlatMap("repeat", i, o, x => Enumerable.Repeat(x, x))));
        Assert.Empty(await Run<int, int>(Array.Empty<int>(), (g, i, o) => g.Map("square", i, o, x => x * x)));
    }

    [Fact]
    public async Task Map_with_explicit_state_keeps_a_running_sum()
    {
        Assert.Equal(new[] { 1, 3, 6, 10 }, await Run<int, int>(new[] { 1, 2, 3, 4 },
            (g, i, o) => g.MapWithState("running", i, o, 0, (x, sum) => (sum + x, sum + x))));
    }

    [Fact]
    public async Task Flat_map_with_state_drops_repeats_of_the_previous_item()
    {
        // A stateful filter: an item equal to the one before it is dropped.
        Assert.Equal(new[] { 1, 2, 1, 3 }, await Run<int, int>(new[] { 1, 1, 2, 2, 2, 1, 3, 3 },
            (g, i, o) => g.FlatMapWithState("changes", i, o, (int?)null, (x, last) => (x == last ? Array.Empty<int>() : new[] { x }, x))));
    }

    [Fact]
    public async Task An_element_function_writes_to_several_outputs()
    {
        var graph = new Graph();
        var input = graph.Stream<int>("in");
        var even = graph.Stream<int>("even");
        var odd = graph.Stream<int>("odd");
        graph.Source("source", input, Enumerable.Range(0, 7));
        graph.ForEachTo("route", input, new[] { even, odd }, (x, outputs) =>
        {
            outputs[x % 2].Emit(x);
            if (x == 6) outputs[1].Emit(-1);
        });
        var evens = new List<int>();
        var odds = new List<int>();
        graph.ToCollection("evens", even, evens);
        graph.ToCollection("odds", odd, odds);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { 0, 2, 4, 6 }, evens);
        Assert.Equal(new[] { 1, 3, 5, -1 }, odds);
    }

    [Theory]
    [InlineData(3, 3, false, 10, "3,12,21")]          // tumbling; the incomplete last window (9) is not written
    [InlineData(3, 1, false, 5, "3,6,9")]             // sliding
    [InlineData(3, 1, true, 5, "0,1,3,6,9")]          // sliding, partial windows at start
    [InlineData(4, 2, true, 8, "1,6,14,22")]          // partial at start on the same grid: [0,1], then full [0..3], [2..5], [4..7]
    [InlineData(2, 3, false, 10, "1,7,13")]           // step larger than size: [0,1], [3,4], [6,7]; 2, 5, 8 skipped
    [InlineData(3, 1, false, 0, "")]                  // empty input: no window
    [InlineData(3, 1, false, 2, "")]                  // fewer items than a window
    public async Task Count_windows(int size, int step, bool partial, int count, string sums)
    {
        List<int> result = await Run<int, int>(Enumerable.Range(0, count), (g, i, o) => g.Window("sum", i, o, size, step, w => w.Sum(), partial ? WindowStart.PartialOnGrid : WindowStart.Full));
        Assert.Equal(sums, string.Join(",", result));
    }

    [Fact]
    public async Task Windows_over_batches_that_arrive_over_time_are_the_same()
    {
        var graph = new Graph();
        var input = graph.Stream<int>("in");
        var output = graph.Stream<int>("out");
        var arrived = new Seen<int>();
        graph.Source("source", input, InThrees(10, arrived));
        graph.Sink("arrived", input, arrived.Add);
        graph.Window("sum", input, output, 3, 2, w => w.Sum());
        var sums = new List<int>();
        graph.ToCollection("collect", output, sums);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { 3, 9, 15, 21 }, sums); // [0,1,2] [2,3,4] [4,5,6] [6,7,8]
    }

    [Fact]
    public async Task A_window_function_may_return_several_items()
    {
        Assert.Equal(new[] { 0, 2, 3, 5 }, await Run<int, int>(Enumerable.Range(0, 6),
            (g, i, o) => g.WindowMany("ends", i, o, 3, 3, w => new[] { w[0], w[^1] })));
    }

    [Fact]
    public async Task Zip_pairs_the_nth_items_and_ends_with_the_shorter_input()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        var letters = graph.Stream<string>("letters");
        var pairs = graph.Stream<string>("pairs");
        graph.Source("numbers-source", numbers, Enumerable.Range(1, 1000));
        graph.Source("letters-source", letters, new[] { "a", "b", "c" });
        graph.Zip("zip", numbers, letters, pairs, (n, l) => $"{n}{l}");
        var result = new List<string>();
        graph.ToCollection("collect", pairs, result);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { "1a", "2b", "3c" }, result);
    }

    [Fact]
    public async Task Zip_of_several_inputs_gives_arrays_and_unzip_takes_them_apart()
    {
        var graph = new Graph();
        var a = graph.Stream<int>("a");
        var b = graph.Stream<int>("b");
        var c = graph.Stream<int>("c");
        var zipped = graph.Stream<int[]>("zipped");
        var x = graph.Stream<int>("x");
        var y = graph.Stream<int>("y");
        var z = graph.Stream<int>("z");
        graph.Source("sa", a, new[] { 1, 2, 3 });
        graph.Source("sb", b, new[] { 10, 20, 30, 40 });
        graph.Source("sc", c, new[] { 100, 200, 300 });
        graph.Zip("zip", new[] { a, b, c }, zipped);
        graph.Unzip("unzip", zipped, new[] { x, y, z });
        var (xs, ys, zs) = (new List<int>(), new List<int>(), new List<int>());
        graph.ToCollection("cx", x, xs);
        graph.ToCollection("cy", y, ys);
        graph.ToCollection("cz", z, zs);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { 1, 2, 3 }, xs);
        Assert.Equal(new[] { 10, 20, 30 }, ys);
        Assert.Equal(new[] { 100, 200, 300 }, zs);
    }

    [Fact]
    public async Task Zips_and_multi_end_with_the_shorter_input_without_buffering_the_rest()
    {
        var graph = new Graph();
        var shortOne = graph.Stream<int>("short");
        var longOne = graph.Stream<int>("long");
        var rows = graph.Stream<int[]>("rows");
        var sums = graph.Stream<int>("sums");
        graph.Source("s-short", shortOne, new[] { 1, 2, 3 });
        graph.Source("s-long", longOne, Enumerable.Range(0, 5000));
        // The short input ends long before the long one; only 10 items may wait for partners.
        graph.Zip("rows", new[] { shortOne, longOne }, rows, maxBuffered: 10);
        graph.Multi("sums", new[] { shortOne, longOne }, new[] { sums }, v => new[] { v[0] + v[1] }, maxBuffered: 10);
        var (r, s) = (new List<string>(), new List<int>());
        graph.Sink("cr", rows, x => r.Add(string.Join(":", x)));
        graph.ToCollection("cs", sums, s);
        RunResult result = await graph.RunWithin();
        Assert.True(result.Succeeded, string.Join("; ", result.Errors.Select(e => e.Message)));
        Assert.Equal(new[] { "1:0", "2:1", "3:2" }, r);
        Assert.Equal(new[] { 1, 3, 5 }, s);
    }

    [Fact]
    public async Task Event_time_items_between_windows_are_skipped_like_count_windows()
    {
        List<string> windows = await Run<Event, string>(new[] { new Event(0, "a"), new Event(1, "b"), new Event(2, "gap"), new Event(3, "c") },
            (g, i, o) => g.EventTimeWindow("gappy", i, o, e => e.Time, size: 2, step: 3, (start, items) => $"{start}:{string.Join("", items.Select(x => x.Name))}"));
        Assert.Equal(new[] { "0:ab", "3:c" }, windows);
    }

    [Fact]
    public async Task Zip_refuses_to_buffer_without_bound()
    {
        var graph = new Graph();
        var fast = graph.Stream<int>("fast");
        var never = graph.Stream<int>("never");
        var pairs = graph.Stream<int>("pairs");
        graph.Source("fast-source", fast, Enumerable.Range(0, 100));
        graph.Source("never-source", never, Forever());
        graph.Zip("zip", fast, never, pairs, (p, q) => p + q, maxBuffered: 10);
        graph.Sink("sink", pairs, _ => { });
        RunResult result = await graph.RunWithin();
        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains("Zip 'zip': 10 items of stream 'fast' wait for partners", result.Errors[0].Message);

        static async IAsyncEnumerable<int> Forever([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken token = default)
        {
            await Task.Delay(Timeout.Infinite, token);
            yield break;
        }
    }

    [Fact]
    public async Task Timed_zip_writes_a_time_once_every_input_has_passed_it()
    {
        var graph = new Graph();
        var a = graph.Stream<Event>("a");
        var b = graph.Stream<Event>("b");
        var rows = graph.Stream<TimedRow<Event>>("rows");
        // b starts only once a has ended (as a reader of a saw it), so the join holds a's times until b passes them.
        TaskCompletionSource aEnded = Waits.Signal();
        graph.Source("sa", a, new[] { new Event(1, "a1"), new Event(3, "a3"), new Event(7, "a7") });
        graph.Process("a-ended", p =>
        {
            p.On(a, _ => { });
            p.OnCompleted(() => aEnded.TrySetResult());
        });
        graph.Source("sb", b, After(aEnded.Task, new[] { new Event(3, "b3"), new Event(4, "b4") }));
        graph.TimedZip("join", new[] { a, b }, rows, e => e.Time);
        var seen = new List<string>();
        graph.Sink("collect", rows, r => seen.Add($"{r.Time}:{string.Join("|", r.Values.Zip(r.Present, (v, present) => present ? v.Name : "-"))}"));
        (await graph.RunWithin()).EnsureSuccess();
        // Times in order; 7 only after b ended (b never passed it otherwise).
        Assert.Equal(new[] { "1:a1|-", "3:a3|b3", "4:-|b4", "7:a7|-" }, seen);

        static async IAsyncEnumerable<Event> After(Task before, Event[] events)
        {
            await Waits.For(before, "input a to end");
            foreach (Event e in events) yield return e;
        }
    }

    [Fact]
    public async Task Timed_zip_refuses_an_input_that_goes_back_in_time()
    {
        var graph = new Graph();
        var a = graph.Stream<Event>("a");
        var rows = graph.Stream<TimedRow<Event>>("rows");
        graph.Source("sa", a, new[] { new Event(5, "x"), new Event(2, "y") });
        graph.TimedZip("join", new[] { a }, rows, e => e.Time);
        graph.Sink("collect", rows, _ => { });
        RunResult result = await graph.RunWithin();
        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains("TimedZip 'join': input 'a' went back in time, from 5 to 2", result.Errors[0].Message);
    }

    [Theory]
    [InlineData(2, 2, "1+21,5+25,9+29")]   // tumbling windows of 2 over a = 0..5, b = 10..16: [0,1]+[10,11], ...; b's 16 has no partner
    [InlineData(2, 3, "1+21,7+27")]        // step > size: [0,1] [3,4] of a with [10,11] [13,14] of b
    public async Task Window_merges_pair_the_kth_windows_of_each_input(int size, int step, string expected)
    {
        var graph = new Graph();
        var a = graph.Stream<int>("a");
        var b = graph.Stream<int>("b");
        var merged = graph.Stream<string>("merged");
        graph.Source("sa", a, Enumerable.Range(0, 6));
        graph.Source("sb", b, Enumerable.Range(10, 7));
        graph.MergeWindows("merge", new[] { a, b }, merged, size, step, ws => $"{ws[0].Sum()}+{ws[1].Sum()}");
        var seen = new List<string>();
        graph.ToCollection("collect", merged, seen);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(expected, string.Join(",", seen));
    }

    [Fact]
    public async Task Split_windows_and_many_to_many()
    {
        var graph = new Graph();
        var input = graph.Stream<int>("in");
        var mins = graph.Stream<int>("mins");
        var maxs = graph.Stream<int>("maxs");
        var sums = graph.Stream<int>("sums");
        var diffs = graph.Stream<int>("diffs");
        graph.Source("source", input, new[] { 5, 1, 4, 2, 8, 3, 9 });
        graph.SplitWindows("range", input, new[] { mins, maxs }, 3, 2, w => new[] { w.Min(), w.Max() });
        graph.Multi("combine", new[] { mins, maxs }, new[] { sums, diffs }, xs => new[] { xs[0] + xs[1], xs[1] - xs[0] });
        var (s, d) = (new List<int>(), new List<int>());
        graph.ToCollection("cs", sums, s);
        graph.ToCollection("cd", diffs, d);
        (await graph.RunWithin()).EnsureSuccess();
        // Windows [5,1,4] [4,2,8] [8,3,9]: (min, max) = (1,5) (2,8) (3,9).
        Assert.Equal(new[] { 6, 10, 12 }, s);
        Assert.Equal(new[] { 4, 6, 6 }, d);
    }

    [Fact]
    public async Task Sliding_processing_time_windows()
    {
        var graph = new Graph();
        var input = graph.Stream<int>("in");
        var output = graph.Stream<string>("out");
        var windows = new Seen<string>();
        // 1,2; then 3 once a window holding 2 was written. A window covers the last minute: nothing
        // leaves it during the test, however slow the machine.
        graph.Source("source", input, Bursts(new[] { new[] { 1, 2 }, new[] { 3 } },
            _ => windows.WaitFor(w => w.Any(x => x.Contains('2')), "a window holding 2")));
        graph.TimedWindow("recent", input, output, size: TimeSpan.FromMinutes(1), step: TimeSpan.FromMilliseconds(20), w => string.Join(",", w));
        graph.Sink("collect", output, windows.Add);
        (await graph.RunWithin()).EnsureSuccess();
        List<string> seen = windows.Items;
        // Windows overlap: 1,2 are in a window written before 3 arrived, and again in the last one, with 3.
        Assert.Contains("1,2", seen);
        Assert.Equal("1,2,3", seen[^1]);
        // Each window holds everything that arrived so far (a prefix), one no shorter than the one before; never an empty one.
        Assert.DoesNotContain("", seen);
        Assert.All(seen, w => Assert.StartsWith(w, "1,2,3"));
        Assert.Equal(seen.OrderBy(w => w.Length), seen);
    }

    [Fact]
    public async Task Mix_tags_blend_merges_and_separate_undoes_mix()
    {
        var graph = new Graph();
        var a = graph.Stream<int>("a");
        var b = graph.Stream<int>("b");
        var mixed = graph.Stream<Tagged<int>>("mixed");
        var blended = graph.Stream<int>("blended");
        var backA = graph.Stream<int>("back-a");
        var backB = graph.Stream<int>("back-b");
        graph.Source("sa", a, Enumerable.Range(0, 50));
        graph.Source("sb", b, Enumerable.Range(1000, 30));
        graph.Mix("mix", new[] { a, b }, mixed);
        graph.Blend("blend", new[] { a, b }, blended);
        graph.Separate("separate", mixed, new[] { backA, backB });
        var (ra, rb, all) = (new List<int>(), new List<int>(), new List<int>());
        graph.ToCollection("ca", backA, ra);
        graph.ToCollection("cb", backB, rb);
        graph.ToCollection("call", blended, all);
        (await graph.RunWithin()).EnsureSuccess();
        // Each input keeps its order through mix and separate; blend has every item once.
        Assert.Equal(Enumerable.Range(0, 50), ra);
        Assert.Equal(Enumerable.Range(1000, 30), rb);
        Assert.Equal(Enumerable.Range(0, 50).Concat(Enumerable.Range(1000, 30)), all.Order());
    }

    [Fact]
    public async Task Split_by_function_and_a_bad_choice_is_a_named_error()
    {
        var graph = new Graph();
        var input = graph.Stream<int>("in");
        var small = graph.Stream<int>("small");
        var large = graph.Stream<int>("large");
        graph.Source("source", input, new[] { 1, 50, 2, 99 });
        graph.Split("by-size", input, new[] { small, large }, x => x < 10 ? 0 : 1);
        var (s, l) = (new List<int>(), new List<int>());
        graph.ToCollection("cs", small, s);
        graph.ToCollection("cl", large, l);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { 1, 2 }, s);
        Assert.Equal(new[] { 50, 99 }, l);

        List<int> none = new();
        var bad = new Graph();
        var bin = bad.Stream<int>("in");
        var bout = bad.Stream<int>("out");
        bad.Source("source", bin, new[] { 1 });
        bad.Split("picky", bin, new[] { bout }, _ => 3);
        bad.ToCollection("c", bout, none);
        RunResult result = await bad.RunWithin();
        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains("Split 'picky' chose output 3 for an item; it has outputs 0 to 0", result.Errors[0].Message);
    }

    [Fact]
    public async Task Batch_by_count_keeps_the_remainder_at_the_end()
    {
        List<int[]> batches = await Run<int, int[]>(Enumerable.Range(0, 10), (g, i, o) => g.Batch("batch", i, o, 4));
        Assert.Equal(new[] { "0,1,2,3", "4,5,6,7", "8,9" }, batches.Select(b => string.Join(",", b)));
    }

    [Fact]
    public async Task File_sinks_write_json_lines_and_csv()
    {
        string dir = Directory.CreateTempSubdirectory("millrace-sinks-").FullName;
        try
        {
            string jsonl = Path.Combine(dir, "out.jsonl"), csv = Path.Combine(dir, "out.csv");
            var graph = new Graph();
            var input = graph.Stream<Reading>("readings");
            graph.Source("source", input, new[] { new Reading("a,1", 1.5), new Reading("b \"2\"", -2) });
            graph.ToJsonLines("jsonl", input, jsonl);
            graph.ToCsv("csv", input, csv, new[] { "name", "value" }, r => new object?[] { r.Name, r.Value });
            (await graph.RunWithin()).EnsureSuccess();
            Assert.Equal(new[] { "{\"name\":\"a,1\",\"value\":1.5}", "{\"name\":\"b \\u00222\\u0022\",\"value\":-2}" }, File.ReadAllLines(jsonl));
            Assert.Equal(new[] { "name,value", "\"a,1\",1.5", "\"b \"\"2\"\"\",-2" }, File.ReadAllLines(csv));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    public sealed record Reading(string Name, double Value);

    [Fact]
    public async Task A_file_sink_keeps_what_it_handled_when_the_run_is_halted()
    {
        string path = Path.Combine(Path.GetTempPath(), $"millrace-{Guid.NewGuid():N}.jsonl");
        try
        {
            var graph = new Graph();
            var numbers = graph.Stream<long>("numbers");
            graph.Source("source", numbers, Helpers.Forever());
            graph.ToJsonLines("jsonl", numbers, path);
            graph.Process("stopper", p => p.On(numbers, x =>
            {
                if (x == 50_000) p.Halt("enough");
            }));
            RunResult result = await graph.RunWithin();
            Assert.Equal(RunOutcome.Halted, result.Outcome);
            // Every line the sink handled is in the file, though OnCompleted never ran.
            long handled = result.Processes["jsonl"].ItemsIn;
            Assert.True(handled > 0);
            Assert.Equal(handled, File.ReadLines(path).LongCount());
        }
        finally
        {
            File.Delete(path);
        }
    }

    public sealed record Event(long Time, string Name);

    /// <summary>Some work whose time varies from item to item, so that replicas finish out of order.</summary>
    private static long Busy(long x)
    {
        long h = x;
        for (int i = 0; i < 200 + (int)(x % 7) * 300; i++) h = h * 6364136223846793005 + 1442695040888963407;
        return x * 1000 + (h & 7);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public async Task Ordered_replicas_give_exactly_the_output_of_one(int workers)
    {
        List<long> one = await Run<long, long>(Enumerable.Range(0, 20000).Select(i => (long)i), (g, i, o) => g.Map("busy", i, o, Busy));
        // Ordered with 100 in flight takes 1 to 2 s on an idle 2-core machine and about 20 s on a
        // saturated one (the window stays full behind the slowest item; the process polls for room
        // every 5 ms): a bound for hangs only, well above that.
        List<long> many = await Run<long, long>(Enumerable.Range(0, 20000).Select(i => (long)i),
            (g, i, o) => g.ParallelMap("busy", i, o, Busy, workers, ordered: true, maxInFlight: 100), seconds: 120);
        Assert.Equal(one, many);
    }

    [Fact]
    public async Task Unordered_replicas_give_the_same_multiset()
    {
        List<long> one = await Run<long, long>(Enumerable.Range(0, 20000).Select(i => (long)i), (g, i, o) => g.Map("busy", i, o, Busy));
        List<long> many = await Run<long, long>(Enumerable.Range(0, 20000).Select(i => (long)i),
            (g, i, o) => g.ParallelMap("busy", i, o, Busy, 3, ordered: false));
        Assert.Equal(one, many.Order());
    }

    [Fact]
    public async Task A_replica_that_throws_fails_the_run_with_the_operator_named()
    {
        var graph = new Graph();
        var input = graph.Stream<int>("in");
        var output = graph.Stream<int>("out");
        graph.Source("source", input, Enumerable.Range(0, 100));
        graph.ParallelMap("fragile", input, output, x => x == 42 ? throw new InvalidOperationException("no 42") : x, 2);
        graph.Sink("sink", output, _ => { });
        RunResult result = await graph.RunWithin();
        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains("ParallelMap 'fragile': the function failed on item 42: no 42", result.Errors[0].Message);
    }

    /// <summary>
    /// Items in bursts: each inner list is yielded at once; before the next one, <paramref name="next"/>
    /// (what the test waits for) completes. <paramref name="sending"/> hears each item just before it is yielded.
    /// </summary>
    private static async IAsyncEnumerable<int> Bursts(int[][] bursts, Func<int, Task> next, Action<int>? sending = null)
    {
        for (int i = 0; i < bursts.Length; i++)
        {
            if (i > 0) await next(i);
            foreach (int x in bursts[i])
            {
                sending?.Invoke(x);
                yield return x;
            }
        }
    }

    [Fact]
    public async Task Batch_by_count_or_age_whichever_comes_first()
    {
        var graph = new Graph();
        var input = graph.Stream<int>("in");
        var output = graph.Stream<int[]>("out");
        var batches = new Seen<string>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long fourSent = 0, fourFiveSeen = 0;
        // A burst of 5 (a full batch of 3 at once, 2 left to age); 6 only once "4,5" has left (by age:
        // nothing else sends it); then the end.
        graph.Source("source", input, Bursts(new[] { new[] { 1, 2, 3, 4, 5 }, new[] { 6 } },
            _ => batches.WaitFor(b => b.Contains("4,5"), "the batch 4,5 to leave by age"),
            x => { if (x == 4) Volatile.Write(ref fourSent, clock.ElapsedMilliseconds); }));
        graph.Batch("batch", input, output, 3, TimeSpan.FromMilliseconds(100));
        graph.Sink("collect", output, b =>
        {
            string items = string.Join(",", b);
            if (items == "4,5") Volatile.Write(ref fourFiveSeen, clock.ElapsedMilliseconds);
            batches.Add(items);
        });
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { "1,2,3", "4,5", "6" }, batches.Items);
        // "4,5" did not leave before its age. A lower bound, which a slower machine only makes larger
        // (less one tick of the coarse clock the operator reads).
        Assert.True(fourFiveSeen - fourSent >= 80, $"4 sent at {fourSent} ms, 4,5 seen at {fourFiveSeen} ms");
    }

    [Fact]
    public async Task A_timer_source_ticks_count_times()
    {
        var graph = new Graph();
        var ticks = graph.Stream<long>("ticks");
        graph.Timer("clock", ticks, TimeSpan.FromMilliseconds(10), count: 5);
        var seen = new List<long>();
        graph.ToCollection("collect", ticks, seen);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new long[] { 0, 1, 2, 3, 4 }, seen);
    }

    [Fact]
    public async Task Processing_time_windows_group_what_arrives_together_and_skip_empty_ones()
    {
        var graph = new Graph();
        var input = graph.Stream<int>("in");
        var output = graph.Stream<string>("out");
        var everyTick = graph.Stream<string>("every-tick");
        var windows = new Seen<string>();
        var ticks = new Seen<string>();
        // 1,2,3; then 4,5 once the window holding 3 was written, and a twin window that writes empty
        // ones has written two since it wrote 3: windows with nothing in them went by.
        graph.Source("source", input, Bursts(new[] { new[] { 1, 2, 3 }, new[] { 4, 5 } }, async _ =>
        {
            await windows.WaitFor(w => w.Any(x => x.Contains('3')), "the window holding 3");
            await ticks.WaitFor(t => EmptyAfterThree(t) >= 2, "two empty windows after the one holding 3");
        }));
        graph.TimedWindow("window", input, output, TimeSpan.FromMilliseconds(50), w => string.Join(",", w));
        graph.TimedWindow("twin", input, everyTick, TimeSpan.FromMilliseconds(50), w => string.Join(",", w), emitEmpty: true);
        graph.Sink("collect", output, windows.Add);
        graph.Sink("collect-twin", everyTick, ticks.Add);
        (await graph.RunWithin()).EnsureSuccess();
        // Whatever the timing: every item in exactly one window, in order (a burst may straddle a
        // window's end); 3 and 4 never together (the window holding 3 was written before 4 was sent);
        // the empty windows between the bursts are not written.
        Assert.Equal("1,2,3,4,5", string.Join(",", windows.Items));
        Assert.DoesNotContain("", windows.Items);
        Assert.DoesNotContain(windows.Items, w => w.Contains('3') && w.Contains('4'));
        // The twin writes them, and otherwise the same items.
        Assert.Contains("", ticks.Items);
        Assert.Equal("1,2,3,4,5", string.Join(",", ticks.Items.Where(t => t != "")));

        static int EmptyAfterThree(IReadOnlyList<string> t)
        {
            int three = t.ToList().FindLastIndex(x => x.Contains('3'));
            return three < 0 ? 0 : t.Skip(three + 1).Count(x => x == "");
        }
    }

    [Fact]
    public async Task Event_time_windows_take_out_of_order_items_and_send_late_ones_aside()
    {
        var graph = new Graph();
        var input = graph.Stream<Event>("events");
        var output = graph.Stream<string>("windows");
        var late = graph.Stream<Event>("late");
        graph.Source("source", input, new[]
        {
            new Event(1, "a"), new Event(12, "b"), new Event(5, "c"),   // c is out of order; [0,10) stays open until the watermark reaches 20
            new Event(23, "d"),                                         // watermark 23: [0,10) closes and is written
            new Event(3, "e"),                                          // late: [0,10) has closed
            new Event(41, "f"),                                         // [10,20) and [20,30) close; [30,40) had nothing: not written
        });
        graph.EventTimeWindow("tumbling", input, output, e => e.Time, size: 10, step: 10,
            (start, items) => $"{start}:{string.Join("", items.Select(i => i.Name))}", late, allowedLateness: 10);
        var windows = new List<string>();
        var lateOnes = new List<Event>();
        graph.ToCollection("collect", output, windows);
        graph.ToCollection("late-ones", late, lateOnes);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { "0:ac", "10:b", "20:d", "40:f" }, windows);
        Assert.Equal(new[] { "e" }, lateOnes.Select(e => e.Name));
    }

    [Fact]
    public async Task Sliding_event_time_windows_and_a_late_item_without_a_late_stream_is_an_error()
    {
        List<string> windows = await Run<Event, string>(new[] { new Event(0, "a"), new Event(5, "b"), new Event(10, "c"), new Event(21, "d") },
            (g, i, o) => g.EventTimeWindow("sliding", i, o, e => e.Time, size: 10, step: 5,
                (start, items) => $"{start}:{string.Join("", items.Select(x => x.Name))}"));
        Assert.Equal(new[] { "-5:a", "0:ab", "5:bc", "10:c", "15:d", "20:d" }, windows);

        var graph = new Graph();
        var input = graph.Stream<Event>("events");
        var output = graph.Stream<string>("windows");
        graph.Source("source", input, new[] { new Event(30, "x"), new Event(1, "y") });
        graph.EventTimeWindow("strict", input, output, e => e.Time, 10, 10, (s, items) => $"{s}");
        graph.Sink("sink", output, _ => { });
        RunResult result = await graph.RunWithin();
        Assert.Equal(RunOutcome.Failed, result.Outcome);
        Assert.Contains("EventTimeWindow 'strict': the item at time 1 is late", result.Errors[0].Message);
    }
}
