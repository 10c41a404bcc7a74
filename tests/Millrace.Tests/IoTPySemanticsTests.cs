namespace Millrace.Tests;

/// <summary>
/// What users coming from IoTPy expect (docs/operators.md, "Coming from IoTPy"), and joins over inputs of
/// different types without Stream&lt;object&gt; (threads placement; the "typed-joins" scenario runs them everywhere).
/// </summary>
public class IoTPySemanticsTests
{
    private sealed record Quote(long Time, decimal Price);

    private sealed record Trade(long Time, int Size);

    [Fact]
    public async Task Timed_zip_writes_a_row_as_soon_as_every_input_has_reached_its_time()
    {
        var graph = new Graph();
        var quotes = graph.Stream<Quote>("quotes");
        var trades = graph.Stream<Trade>("trades");
        var rows = graph.Stream<TimedRow<Quote, Trade>>("rows");
        SourceWriter<Quote> q = graph.Writer("q", quotes);
        SourceWriter<Trade> t = graph.Writer("t", trades);
        graph.TimedZip("join", quotes, trades, rows, x => x.Time, x => x.Time);
        var seen = new Seen<string>();
        graph.Sink("collect", rows, r => seen.Add(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{r.Time}:{(r.HasFirst ? r.First.Price.ToString(System.Globalization.CultureInfo.InvariantCulture) : "-")}|{(r.HasSecond ? r.Second.Size : "-")}")));
        Task<RunResult> run = graph.RunWithin();
        await q.WriteAsync(new Quote(1, 10.5m));
        await t.WriteAsync(new Trade(1, 300));
        // Both inputs have reached time 1 and neither can have another item at 1: the row leaves now,
        // while both inputs are silent and open.
        await seen.WaitFor(s => s.Count == 1, "the row of time 1 while both inputs are open");
        await q.WriteAsync(new Quote(2, 10.75m));
        await t.WriteAsync(new Trade(4, 100));
        await seen.WaitFor(s => s.Count == 2, "the row of time 2 once trades passed it");
        q.Complete();
        t.Complete();
        (await run).EnsureSuccess();
        Assert.Equal(new[] { "1:10.5|300", "2:10.75|-", "4:-|100" }, seen.Items);
    }

    [Fact]
    public async Task A_function_source_lets_what_it_emitted_leave_whenever_it_waits()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        TaskCompletionSource first = Waits.Signal(), second = Waits.Signal();
        int calls = 0;
        graph.Source("source", numbers, async (Output<int> o, CancellationToken token) =>
        {
            calls++;
            o.Emit(1);
            await first.Task.WaitAsync(token);
            o.Emit(2);
            await second.Task.WaitAsync(token);
            o.Emit(3);
            return false;
        });
        var seen = new Seen<int>();
        graph.Sink("collect", numbers, seen.Add);
        Task<RunResult> run = graph.RunWithin();
        // Each item reaches the sink while the call that emitted it still waits.
        await seen.WaitFor(s => s.Count == 1, "item 1 while the source waits for the first signal");
        first.SetResult();
        await seen.WaitFor(s => s.Count == 2, "item 2 while the source waits for the second signal");
        second.SetResult();
        (await run).EnsureSuccess();
        Assert.Equal(new[] { 1, 2, 3 }, seen.Items);
        Assert.Equal(1, calls);
    }

    [Fact]
    public async Task A_stream_with_initial_items_starts_a_feedback_loop()
    {
        // IoTPy's echo: s starts with 1; "next" writes each item of s, plus one, to t; "back" feeds t into s below 6.
        var graph = new Graph();
        var s = graph.Stream<int>("s", [1]);
        var t = graph.Stream<int>("t");
        graph.Map("next", s, t, x => x + 1);
        graph.Filter("back", t, s, x => x < 6);
        var seen = new List<int>();
        var fromS = new List<int>();
        graph.ToCollection("collect", t, seen);
        graph.ToCollection("watch", s, fromS);
        RunResult result = await graph.RunWithin();
        result.EnsureSuccess();
        Assert.True(result.TerminationDetected);
        Assert.Equal(new[] { 2, 3, 4, 5, 6 }, seen);
        Assert.Equal(new[] { 1, 2, 3, 4, 5 }, fromS);
    }

    [Fact]
    public async Task Initial_items_come_before_everything_the_writer_emits()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        var s = graph.Stream<string>("s", ["a", "b"]);
        graph.Source("source", numbers, Enumerable.Range(0, 3));
        graph.Process("writer", p =>
        {
            Output<string> o = p.Output(s);
            p.OnStart(() => o.Emit("start"));
            p.On(numbers, x => o.Emit(x.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        });
        var seen = new List<string>();
        graph.ToCollection("collect", s, seen);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { "a", "b", "start", "0", "1", "2" }, seen);
    }

    [Fact]
    public void A_stream_with_initial_items_and_two_writers_is_refused()
    {
        var graph = new Graph();
        var s = graph.Stream<int>("s", [0]);
        graph.Source("one", s, [1]);
        graph.Source("two", s, [2]);
        graph.Sink("sink", s, _ => { });
        var e = Assert.Throws<GraphValidationException>(() => graph.Validate());
        Assert.Contains("Stream 's' has initial items and is written by 'one', 'two': initial items need exactly one writer", e.Message);
    }

    [Fact]
    public async Task Mix_over_two_types_keeps_each_type_and_each_inputs_order()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        var words = graph.Stream<string>("words");
        var mixed = graph.Stream<Mixed<int, string>>("mixed");
        var mixedCopy = graph.Stream<Mixed<int, string>>("mixed-copy");
        var numbersBack = graph.Stream<int>("numbers-back");
        var wordsBack = graph.Stream<string>("words-back");
        graph.Source("n", numbers, Enumerable.Range(0, 500));
        graph.Source("w", words, Enumerable.Range(0, 300).Select(i => "w" + i));
        graph.Mix("mix", numbers, words, mixed);
        var all = new List<Mixed<int, string>>();
        graph.Process("look", p =>
        {
            Output<Mixed<int, string>> o = p.Output(mixedCopy);
            p.On(mixed, m => { all.Add(m); o.Emit(m); });
        });
        graph.Separate("separate", mixedCopy, numbersBack, wordsBack);
        var n = new List<int>();
        var w = new List<string>();
        graph.ToCollection("n-back", numbersBack, n);
        graph.ToCollection("w-back", wordsBack, w);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(800, all.Count);
        Assert.Equal(Enumerable.Range(0, 500), all.Where(m => m.Index == 0).Select(m => m.First));
        Assert.Equal(Enumerable.Range(0, 300).Select(i => "w" + i), all.Where(m => m.Index == 1).Select(m => m.Second));
        Assert.Equal("int 7", all.First(m => m.Index == 0 && m.First == 7).Match(x => $"int {x}", s => $"string {s}"));
        Assert.Equal(Enumerable.Range(0, 500), n);
        Assert.Equal(Enumerable.Range(0, 300).Select(i => "w" + i), w);
    }

    [Fact]
    public async Task Mix_over_three_types()
    {
        var graph = new Graph();
        var a = graph.Stream<int>("a");
        var b = graph.Stream<string>("b");
        var c = graph.Stream<Quote>("c");
        var mixed = graph.Stream<Mixed<int, string, Quote>>("mixed");
        graph.Source("sa", a, [1, 2]);
        graph.Source("sb", b, ["x"]);
        graph.Source("sc", c, [new Quote(5, 1.25m)]);
        graph.Mix("mix", a, b, c, mixed);
        var seen = new List<string>();
        graph.Sink("collect", mixed, m => seen.Add(m.Match(i => $"a{i}", s => $"b{s}", q => "c" + q.Price.ToString(System.Globalization.CultureInfo.InvariantCulture))));
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { "a1", "a2", "bx", "c1.25" }, seen.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Blend_with_a_function_and_over_two_types()
    {
        var graph = new Graph();
        var a = graph.Stream<int>("a");
        var b = graph.Stream<int>("b");
        var words = graph.Stream<string>("words");
        var tens = graph.Stream<int>("tens");
        var lengths = graph.Stream<long>("lengths");
        graph.Source("sa", a, [1, 2, 3]);
        graph.Source("sb", b, [4, 5]);
        graph.Source("sw", words, ["abc", "de"]);
        graph.Blend("times-ten", [a, b], tens, x => x * 10);
        graph.Blend("sizes", tens, words, lengths, x => (long)x, s => s.Length);
        var seen = new List<long>();
        graph.ToCollection("collect", lengths, seen);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new long[] { 2, 3, 10, 20, 30, 40, 50 }, seen.Order());
    }

    [Fact]
    public async Task Map_can_drop_nulls()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        var odd = graph.Stream<string?>("odd");
        var all = graph.Stream<int?>("all");
        graph.Source("source", numbers, Enumerable.Range(0, 6));
        graph.Map("odd-only", numbers, odd, x => x % 2 == 1 ? $"#{x}" : null, dropNulls: true);
        graph.Map("halves", numbers, all, x => x % 2 == 0 ? x / 2 : (int?)null);
        var seen = new List<string?>();
        var halves = new List<int?>();
        graph.ToCollection("collect", odd, seen);
        graph.ToCollection("collect-all", all, halves);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { "#1", "#3", "#5" }, seen);
        Assert.Equal(new int?[] { 0, null, 1, null, 2, null }, halves); // nulls kept without the option
    }

    [Fact]
    public void Dropping_nulls_of_a_type_that_is_never_null_is_refused()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        var e = Assert.Throws<ArgumentException>(() => graph.Map("m", numbers, numbers, x => x, dropNulls: true));
        Assert.Contains("Map 'm': dropNulls needs results that can be null; Int32 never is", e.Message);
    }

    [Fact]
    public async Task The_with_state_family_filters_windows_and_sinks()
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        var rising = graph.Stream<int>("rising");
        var deltas = graph.Stream<int>("deltas");
        graph.Source("source", numbers, [3, 1, 4, 1, 5, 9, 2, 6]);
        // Keeps an item only when it is above every item before it.
        graph.FilterWithState("rising", numbers, rising, int.MinValue, (x, max) => (x > max, Math.Max(x, max)));
        // Tumbling windows of 2: the change of each window's sum from the one before.
        graph.WindowWithState("deltas", numbers, deltas, 2, 2, 0, (w, last) => (w.Sum() - last, w.Sum()));
        var kept = new List<int>();
        var changes = new List<int>();
        long total = -1;
        var windows = new List<string>();
        graph.ToCollection("kept", rising, kept);
        graph.ToCollection("changes", deltas, changes);
        graph.SinkWithState("total", numbers, 0L, (x, sum) => sum + x, sum => total = sum);
        graph.SinkWindow("windows", numbers, 3, 3, w => windows.Add(string.Join("", w)));
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { 3, 4, 5, 9 }, kept);
        Assert.Equal(new[] { 4, 1, 9, -6 }, changes); // sums 4, 5, 14, 8
        Assert.Equal(31, total);
        Assert.Equal(new[] { "314", "159" }, windows); // "26" is incomplete at the end
    }

    [Theory]
    [InlineData(4, 2, WindowStart.Full, "0123,2345,4567")]
    [InlineData(4, 2, WindowStart.PartialOnGrid, "01,0123,2345,4567")]        // partial windows on the same grid: one ending at item 1
    [InlineData(3, 1, WindowStart.PartialOnGrid, "0,01,012,123,234,345,456,567")]
    [InlineData(2, 3, WindowStart.PartialOnGrid, "01,34,67")]                 // step > size: the grid starts with a full window
    [InlineData(4, 2, WindowStart.FromFirstItem, "0,012,1234,3456")]          // a window ends at items 0, 2, 4, 6
    [InlineData(2, 3, WindowStart.FromFirstItem, "0,23,56")]                  // ends at 0, 3, 6
    [InlineData(3, 3, WindowStart.FromFirstItem, "0,123,456")]
    public async Task Windows_start_where_asked(int size, int step, WindowStart start, string expected)
    {
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        var windows = graph.Stream<string>("windows");
        graph.Source("source", numbers, Enumerable.Range(0, 8));
        graph.Window("w", numbers, windows, size, step, w => string.Join("", w), start);
        var seen = new List<string>();
        graph.ToCollection("collect", windows, seen);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(expected, string.Join(",", seen));
    }

    [Fact]
    public async Task Split_sends_each_item_to_one_output_and_for_each_to_writes_to_every_one()
    {
        // IoTPy's split_element writes one value to every output; Millrace's Split chooses one output.
        var graph = new Graph();
        var numbers = graph.Stream<int>("numbers");
        var split = new[] { graph.Stream<int>("s0"), graph.Stream<int>("s1") };
        var every = new[] { graph.Stream<int>("e0"), graph.Stream<int>("e1") };
        graph.Source("source", numbers, [1, 2, 3]);
        graph.Split("split", numbers, split, x => x % 2);
        graph.ForEachTo("every", numbers, every, (x, o) => { o[0].Emit(x * 10); o[1].Emit(x * 100); });
        var s0 = new List<int>(); var s1 = new List<int>(); var e0 = new List<int>(); var e1 = new List<int>();
        graph.ToCollection("c-s0", split[0], s0);
        graph.ToCollection("c-s1", split[1], s1);
        graph.ToCollection("c-e0", every[0], e0);
        graph.ToCollection("c-e1", every[1], e1);
        (await graph.RunWithin()).EnsureSuccess();
        Assert.Equal(new[] { 2 }, s0);
        Assert.Equal(new[] { 1, 3 }, s1);
        Assert.Equal(new[] { 10, 20, 30 }, e0);
        Assert.Equal(new[] { 100, 200, 300 }, e1);
    }
}
