using System.Text.Json.Serialization;
using Millrace.Codecs;

namespace Millrace.Tests;

/// <summary>
/// Item types that cross an OS process or the broker either come back exactly or are refused before
/// the run starts, naming the stream, the type and what to do; the threads placement carries anything.
/// </summary>
public class ItemTypeTests
{
    public sealed record Point(int X, double Y);
    public sealed record Reading(string Sensor, Point? Where, List<double> Values, Dictionary<string, int> Counts, DayOfWeek Day, DateTimeOffset At, decimal? Price);
    public sealed record WithComputed(int A, int B) { public int Total => A + B; }
    public sealed class Node { public int Value { get; set; } public List<Node> Children { get; set; } = new(); }
    public sealed class Fields { public int Count; public string? Label; }
    public sealed record Keyed(Dictionary<int, string> ByNumber, Dictionary<Guid, Point> ById);

    [JsonDerivedType(typeof(Circle), "circle")]
    [JsonDerivedType(typeof(Square), "square")]
    public abstract record Shape;
    public sealed record Circle(double Radius) : Shape;
    public sealed record Square(double Side) : Shape;

    public interface IEvent { string Name { get; } }
    public abstract class Animal { public string Name { get; set; } = ""; }
    public sealed class Empty { }
    public sealed class Hidden { private int _value; public void Set(int v) => _value = v; public int Get() => _value; }
    public sealed class GetOnly { public GetOnly(int value) { Value = value; } public int Value { get; } }
    public sealed class Mismatched { public Mismatched(int count) { Value = count; } public int Value { get; } }
    public sealed class TwoConstructors { public TwoConstructors(int a) { A = a; } public TwoConstructors(string b) { A = b.Length; } public int A { get; set; } }
    public sealed record WithObject(string Name, object Payload);
    public sealed record PointKeys(Dictionary<Point, int> ByPoint);

    public static TheoryData<Type> Crossing =>
    [
        typeof(int), typeof(string), typeof(double?), typeof(DayOfWeek), typeof(Guid), typeof(DateTime), typeof(byte[]),
        typeof(Point), typeof(Reading), typeof(WithComputed), typeof(Node), typeof(Fields), typeof(Keyed), typeof(Shape),
        typeof((int, string)), typeof((Point, List<(string, double)>)), typeof(Tuple<int, string>), typeof(int[]), typeof(List<Point?>),
        typeof(IReadOnlyList<Point>), typeof(Dictionary<string, List<Point>>), typeof(GetOnly), typeof(HashSet<string>),
    ];

    [Theory]
    [MemberData(nameof(Crossing))]
    public void Types_that_come_back_as_written_pass(Type type) => Assert.Null(JsonTypeCheck.WhyNot(type));

    [Theory]
    [InlineData(typeof(object), "is object: JSON brings back a JsonElement")]
    [InlineData(typeof(List<object>), "List<Object>[] is object")]
    [InlineData(typeof(WithObject), "WithObject.Payload is object")]
    [InlineData(typeof(IEvent), "the interface IEvent without a polymorphic mapping")]
    [InlineData(typeof(Animal), "the abstract type Animal without a polymorphic mapping")]
    [InlineData(typeof(Empty), "has no public properties or fields: it would arrive empty")]
    [InlineData(typeof(Hidden), "has no public properties or fields")]
    [InlineData(typeof(Mismatched), "parameter 'count' matches no public property or field")]
    [InlineData(typeof(TwoConstructors), "several public constructors and none without parameters")]
    [InlineData(typeof(PointKeys), "a dictionary with keys of type Point")]
    [InlineData(typeof(int[,]), "multi-dimensional array")]
    [InlineData(typeof(Action), "has no JSON form")]
    [InlineData(typeof(System.Collections.ArrayList), "is object")]
    public void Types_that_would_arrive_different_are_named_with_the_reason(Type type, string reason)
    {
        string? why = JsonTypeCheck.WhyNot(type);
        Assert.NotNull(why);
        Assert.Contains(reason, why);
    }

    [Fact]
    public void A_get_only_property_nothing_sets_again_is_refused()
    {
        Assert.Contains("Value (Settless) can be read but not set", JsonTypeCheck.WhyNot(typeof(Settless)));
    }

    public sealed class Settless { public int Value { get; } = 3; }

    [Theory]
    [InlineData("processes")]
    [InlineData("broker")]
    public async Task A_stream_of_object_is_refused_before_anything_starts(string placement)
    {
        var graph = new Graph();
        var mixed = graph.Stream<object>("mixed");
        var points = graph.Stream<Point>("points");
        graph.Source("src", mixed, new object[] { 1, "two" });
        graph.Map("relay", mixed, points, o => new Point(o.GetHashCode(), 0));
        graph.Sink("sink", points, _ => { });
        var options = new RunOptions { Placement = placement, RunId = Broker.NewRunId() };
        options.Broker.Uri = Broker.Uri;
        var e = await Assert.ThrowsAsync<GraphValidationException>(() => graph.RunWithin(options));
        string problem = Assert.Single(e.Problems);
        Assert.Contains("Stream 'mixed' carries Object, which cannot cross an OS process", problem);
        Assert.Contains("is object: JSON brings back a JsonElement", problem);
        Assert.Contains("graph.UseCodec<Object>", problem);
    }

    [Fact]
    public async Task The_threads_placement_carries_any_type()
    {
        var graph = new Graph();
        var mixed = graph.Stream<object>("mixed");
        var seen = new List<object>();
        graph.Source("src", mixed, new object[] { 1, "two", new Empty() });
        graph.ToCollection("sink", mixed, seen);
        RunResult result = await graph.RunWithin();
        Assert.True(result.Succeeded);
        Assert.Equal(1, seen[0]);
        Assert.Equal("two", seen[1]);
        Assert.IsType<Empty>(seen[2]);
    }
}
