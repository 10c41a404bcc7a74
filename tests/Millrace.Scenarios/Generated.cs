using System.Collections;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using Millrace;

/// <summary>
/// Graphs described by a spec (a JSON file named by MILLRACE_GRAPH_SPEC, read alike in every OS process of
/// a run): pipelines of operators over items of many types with awkward values. Each pipeline's sink
/// writes every item it gets (to a file of its own in the folder MILLRACE_GRAPH_OUT names) in a canonical form that tells apart what a codec could change (the bits of
/// a double, a decimal's scale, a DateTime's kind, every UTF-16 unit of a string), so that the outputs of
/// two placements can be compared line for line. The property test (GeneratedGraphTests) writes the specs.
/// </summary>
public static class GeneratedGraphs
{
    public sealed record Spec(List<PipelineSpec> Pipelines);

    /// <summary>A source of <paramref name="Count"/> values of <paramref name="Type"/> (from <paramref name="Seed"/>), the operators, a sink.</summary>
    public sealed record PipelineSpec(string Type, int Seed, int Count, List<string> Ops);

    public static readonly string[] Types =
        ["int", "long", "double", "decimal", "string", "bool", "datetime", "datetimeoffset", "guid", "enum", "nullable",
         "tuple", "record", "fields", "recordstruct", "array", "dictionary", "list"];

    /// <summary>Operators: "map", "filter:K" (every K-th), "window:SIZE:STEP", "batch:N", "flat" (each item twice),
    /// "parallel:W" (ordered, W workers), "zip" (with a source of ints), "mix" (with a source of strings; last only).</summary>
    /// <summary>The processes of each side: in the processes placement two groups (two OS processes) with every pipeline link between them.</summary>
    public static readonly List<string>[] Sides = [new(), new()];

    private static void On(int side, string process) => Sides[side & 1].Add(process);

    public static void Build(Graph graph)
    {
        string path = Environment.GetEnvironmentVariable("MILLRACE_GRAPH_SPEC")
            ?? throw new InvalidOperationException("MILLRACE_GRAPH_SPEC must name a spec file.");
        Spec spec = JsonSerializer.Deserialize<Spec>(File.ReadAllText(path))!;
        for (int i = 0; i < spec.Pipelines.Count; i++) Pipeline(graph, "p" + i.ToString(CultureInfo.InvariantCulture), spec.Pipelines[i]);
    }

    private static void Pipeline(Graph graph, string name, PipelineSpec spec)
    {
        var ops = new Queue<string>(spec.Ops);
        switch (spec.Type)
        {
            case "int": Start(graph, name, spec, ops, Values.Int); break;
            case "long": Start(graph, name, spec, ops, Values.Long); break;
            case "double": Start(graph, name, spec, ops, Values.Double); break;
            case "decimal": Start(graph, name, spec, ops, Values.Decimal); break;
            case "string": Start(graph, name, spec, ops, Values.String); break;
            case "bool": Start(graph, name, spec, ops, r => r.Next(2) == 1); break;
            case "datetime": Start(graph, name, spec, ops, Values.DateTime); break;
            case "datetimeoffset": Start(graph, name, spec, ops, Values.DateTimeOffset); break;
            case "guid": Start(graph, name, spec, ops, r => new Guid(Values.Bytes(r, 16))); break;
            case "enum": Start(graph, name, spec, ops, r => (Shade)Values.Pick(r, [0, 1, 2, 7, -3, int.MaxValue])); break;
            case "nullable": Start(graph, name, spec, ops, r => r.Next(3) == 0 ? null : (int?)Values.Int(r)); break;
            case "tuple": Start(graph, name, spec, ops, r => (Values.Int(r), Values.String(r), (Values.Double(r), r.Next(2) == 1))); break;
            case "record": Start(graph, name, spec, ops, r => Values.Item(r, 2)); break;
            case "fields": Start(graph, name, spec, ops, r => new Fields { Id = Values.Long(r), Name = Values.String(r), Ratio = Values.Double(r) }); break;
            case "recordstruct": Start(graph, name, spec, ops, r => new Point(Values.Double(r), Values.Double(r), Values.Decimal(r))); break;
            case "array": Start(graph, name, spec, ops, r => Enumerable.Range(0, r.Next(4)).Select(_ => Enumerable.Range(0, r.Next(3)).Select(_ => Values.Long(r)).ToArray()).ToArray()); break;
            case "dictionary": Start(graph, name, spec, ops, r => Enumerable.Range(0, r.Next(4)).ToDictionary(k => Values.String(r) + "#" + k, _ => Values.Decimal(r))); break;
            case "unpaired": Start(graph, name, spec, ops, Values.Unpaired); break;
            case "list": Start(graph, name, spec, ops, r => Enumerable.Range(0, r.Next(4)).Select(_ => (string?)Values.String(r)).ToList()); break;
            default: throw new ArgumentException($"unknown type '{spec.Type}'");
        }
    }

    private static void Start<T>(Graph graph, string name, PipelineSpec spec, Queue<string> ops, Func<Random, T> value)
    {
        var source = graph.Stream<T>(name + ".source");
        var random = new Random(spec.Seed);
        T[] values = Enumerable.Range(0, spec.Count).Select(_ => value(random)).ToArray();
        graph.Source(name + ".source", source, values);
        On(0, name + ".source");
        Chain(graph, name, source, ops, 0, spec.Count);
    }

    private static void Chain<T>(Graph graph, string name, Stream<T> input, Queue<string> ops, int step, int count)
    {
        if (ops.Count == 0)
        {
            Sink(graph, name, input);
            On(step + 1, name + ".sink");
            return;
        }
        string[] op = ops.Dequeue().Split(':');
        string id = $"{name}.{step}.{op[0]}";
        On(step + 1, id);
        int Arg(int i) => int.Parse(op[i], CultureInfo.InvariantCulture);
        switch (op[0])
        {
            case "map":
            {
                var output = graph.Stream<T>(id);
                graph.Map(id, input, output, x => x);
                Chain(graph, name, output, ops, step + 1, count);
                break;
            }
            case "filter":
            {
                var output = graph.Stream<T>(id);
                int k = Arg(1);
                graph.FilterWithState(id, input, output, 0L, (_, n) => (n % k == 0, n + 1));
                Chain(graph, name, output, ops, step + 1, count);
                break;
            }
            case "window":
            {
                var output = graph.Stream<T[]>(id);
                graph.Window(id, input, output, Arg(1), Arg(2), w => w.ToArray());
                Chain(graph, name, output, ops, step + 1, count);
                break;
            }
            case "batch":
            {
                var output = graph.Stream<T[]>(id);
                graph.Batch(id, input, output, Arg(1));
                Chain(graph, name, output, ops, step + 1, count);
                break;
            }
            case "flat":
            {
                var output = graph.Stream<T>(id);
                graph.FlatMap(id, input, output, x => new[] { x, x });
                Chain(graph, name, output, ops, step + 1, count);
                break;
            }
            case "parallel":
            {
                var output = graph.Stream<T>(id);
                graph.ParallelMap(id, input, output, x => x, workers: Arg(1));
                Chain(graph, name, output, ops, step + 1, count);
                break;
            }
            case "zip":
            {
                var numbers = graph.Stream<int>(id + ".numbers");
                graph.Source(id + ".numbers", numbers, Enumerable.Range(0, count + 5));
                On(step, id + ".numbers");
                var output = graph.Stream<(T, int)>(id);
                graph.Zip(id, input, numbers, output, (x, n) => (x, n));
                Chain(graph, name, output, ops, step + 1, count);
                break;
            }
            case "mix":
            {
                var words = graph.Stream<string>(id + ".words");
                graph.Source(id + ".words", words, ["one", "two", "\u00e9\u0301", "end"]);
                On(step, id + ".words");
                var output = graph.Stream<Mixed<T, string>>(id);
                graph.Mix(id, input, words, output);
                // Arrival order between two inputs is the placement's; each input's order is kept: print them apart.
                var first = graph.Stream<T>(id + ".first");
                var second = graph.Stream<string>(id + ".second");
                graph.Separate(id + ".separate", output, first, second);
                On(step, id + ".separate");
                Sink(graph, name + ".mixed", second);
                On(step + 1, name + ".mixed.sink");
                Chain(graph, name, first, ops, step + 1, count);
                break;
            }
            default:
                throw new ArgumentException($"unknown operator '{op[0]}'");
        }
    }

    private static void Sink<T>(Graph graph, string name, Stream<T> input) => graph.Process(name + ".sink", p =>
    {
        var lines = new List<string>();
        p.On(input, x => lines.Add(Canonical.Of(x)));
        p.OnCompleted(() =>
        {
            // A file per sink: the sinks of the processes placement run in several OS processes, whose
            // writes to one standard output could interleave.
            var text = new StringBuilder();
            foreach (string line in lines) text.Append(line).Append('\n');
            text.Append("end after ").Append(lines.Count).Append(" items\n");
            string folder = Environment.GetEnvironmentVariable("MILLRACE_GRAPH_OUT")
                ?? throw new InvalidOperationException("MILLRACE_GRAPH_OUT must name the folder for the sinks' files.");
            File.WriteAllText(Path.Combine(folder, name + ".txt"), text.ToString());
        });
    });

    public enum Shade { Light, Dark, Grey }

    public sealed record Item(int Id, string? Name, double Score, List<int> Tags, Dictionary<string, long> Counts, Item? Child, Shade Shade);

    public sealed class Fields
    {
        public long Id;
        public string? Name;
        public double Ratio;
    }

    public readonly record struct Point(double X, double Y, decimal Weight);

    private static class Values
    {
        public static T Pick<T>(Random r, T[] choices) => choices[r.Next(choices.Length)];

        public static byte[] Bytes(Random r, int n)
        {
            var b = new byte[n];
            r.NextBytes(b);
            return b;
        }

        public static int Int(Random r) => r.Next(4) == 0 ? Pick(r, [0, -1, 1, int.MinValue, int.MaxValue]) : r.Next(int.MinValue, int.MaxValue);

        public static long Long(Random r) => r.Next(4) == 0 ? Pick(r, [0L, -1L, long.MinValue, long.MaxValue, 1L << 53, (1L << 53) + 1]) : r.NextInt64(long.MinValue, long.MaxValue);

        public static double Double(Random r)
        {
            if (r.Next(3) == 0)
                return Pick(r, [0.0, -0.0, double.NaN, double.PositiveInfinity, double.NegativeInfinity, double.Epsilon, double.MaxValue, double.MinValue, 0.1, 1e-320, 1.0 / 3]);
            double v = BitConverter.Int64BitsToDouble(r.NextInt64());
            return double.IsNaN(v) ? 1.5 : v; // NaN is double.NaN: its payload bits are not promised to cross
        }

        public static decimal Decimal(Random r) => r.Next(3) == 0
            ? Pick(r, [0m, 1.0m, 1.00m, -0.0m, decimal.MaxValue, decimal.MinValue, 0.0000000000000000000000000001m, 79228162514264337593543950335m / 3])
            : new decimal(r.Next(), r.Next(), r.Next(), r.Next(2) == 1, (byte)r.Next(29));

        private static readonly string[] Awkward =
        [
            "", " ", "plain", "caf\u00e9", "e\u0301", "\u65e5\u672c\u8a9e", "\ud83d\ude00 emoji", "\u05e9\u05dc\u05d5\u05dd rtl", "tab\tnew\nline\r",
            "quote \" backslash \\ slash /", "nul \u0000 inside", "\u2028\u2029", "\ufeffbom", "<script>&amp;</script>", "\u007f\u0080\u009f",
            "\U0010FFFF max", "\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67 family",
        ];

        /// <summary>Strings that are not valid UTF-16: refused by every codec (they would arrive with U+FFFD).</summary>
        public static string Unpaired(Random r) => Pick(r, ["\ud800", "\udfff alone", "end \ud83d", "\udc00\ud800 reversed"]);

        public static string String(Random r)
        {
            int kind = r.Next(6);
            if (kind == 0) return Pick(r, Awkward);
            if (kind == 1) return new string('x', r.Next(1000, 70_000)); // larger than a 64 KiB batch on its own
            var s = new StringBuilder();
            int n = r.Next(12);
            for (int i = 0; i < n; i++) s.Append((char)r.Next(0x20, 0xD7FF));
            return s.ToString();
        }

        public static DateTime DateTime(Random r) =>
            r.Next(4) == 0
                ? Pick(r, [System.DateTime.MinValue, System.DateTime.MaxValue, new System.DateTime(2000, 2, 29, 12, 0, 0, DateTimeKind.Utc), new System.DateTime(1970, 1, 1)])
                : new System.DateTime(r.NextInt64(System.DateTime.MinValue.Ticks, System.DateTime.MaxValue.Ticks), Pick(r, [DateTimeKind.Utc, DateTimeKind.Unspecified]));

        public static DateTimeOffset DateTimeOffset(Random r) =>
            new(new System.DateTime(r.NextInt64(System.DateTime.MinValue.AddDays(1).Ticks, System.DateTime.MaxValue.AddDays(-1).Ticks)), TimeSpan.FromMinutes(r.Next(-14 * 60, 14 * 60)));

        public static Item Item(Random r, int depth) => new(
            Int(r), r.Next(4) == 0 ? null : String(r), Double(r), Enumerable.Range(0, r.Next(4)).Select(_ => Int(r)).ToList(),
            Enumerable.Range(0, r.Next(3)).ToDictionary(k => String(r) + "#" + k, _ => Long(r)),
            depth > 0 && r.Next(2) == 0 ? Item(r, depth - 1) : null, (Shade)r.Next(3));
    }
}

/// <summary>A canonical text for any item: equal texts for values a reader cannot tell apart, different otherwise.</summary>
public static class Canonical
{
    public static string Of(object? value)
    {
        var s = new StringBuilder();
        Write(s, value);
        return s.ToString();
    }

    private static void Write(StringBuilder s, object? value)
    {
        switch (value)
        {
            case null: s.Append("null"); return;
            case string text:
                s.Append('"');
                foreach (char c in text)
                {
                    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') s.Append(c);
                    else s.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                }
                s.Append('"');
                return;
            case double d: s.Append("d:").Append(BitConverter.DoubleToInt64Bits(d).ToString("x16", CultureInfo.InvariantCulture)); return;
            case float f: s.Append("f:").Append(BitConverter.SingleToInt32Bits(f).ToString("x8", CultureInfo.InvariantCulture)); return;
            // Value and scale (1.0 and 1.00 differ); the sign of a zero is not kept (-0.0m == 0.0m and prints as 0.0).
            case decimal m: s.Append("m:").Append(m.ToString(CultureInfo.InvariantCulture)); return;
            case DateTime t: s.Append("t:").Append(t.Ticks).Append('/').Append(t.Kind); return;
            case DateTimeOffset o: s.Append("o:").Append(o.Ticks).Append('/').Append(o.Offset.Ticks); return;
            case Guid g: s.Append("g:").Append(g.ToString("N")); return;
            case bool b: s.Append(b ? "true" : "false"); return;
            case Enum e: s.Append(e.GetType().Name).Append(':').Append(Convert.ToInt64(e, CultureInfo.InvariantCulture)); return;
            case IFormattable n when value.GetType().IsPrimitive: s.Append(n.ToString(null, CultureInfo.InvariantCulture)); return;
            case IDictionary dictionary:
                s.Append('{');
                foreach (object key in dictionary.Keys.Cast<object>().OrderBy(k => Of(k), StringComparer.Ordinal))
                {
                    Write(s, key);
                    s.Append('=');
                    Write(s, dictionary[key]);
                    s.Append(';');
                }
                s.Append('}');
                return;
            case IEnumerable items:
                s.Append('[');
                foreach (object? item in items)
                {
                    Write(s, item);
                    s.Append(',');
                }
                s.Append(']');
                return;
        }
        Type type = value.GetType();
        s.Append(type.Name).Append('(');
        foreach (MemberInfo member in type.GetMembers(BindingFlags.Public | BindingFlags.Instance)
                     .Where(m => m is FieldInfo || m is PropertyInfo { CanRead: true } p && p.GetIndexParameters().Length == 0 && p.Name != "EqualityContract")
                     .OrderBy(m => m.Name, StringComparer.Ordinal))
        {
            s.Append(member.Name).Append('=');
            Write(s, member is FieldInfo field ? field.GetValue(value) : ((PropertyInfo)member).GetValue(value));
            s.Append(';');
        }
        s.Append(')');
    }
}
