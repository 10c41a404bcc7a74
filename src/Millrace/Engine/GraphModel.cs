namespace Millrace.Engine;

/// <summary>A stream as the runtime sees it: who writes it and who reads it (process indexes).</summary>
internal sealed record StreamInfo(string Name, Type ItemType, int[] Writers, int[] Readers);

/// <summary>A cycle of processes (a strongly connected component with an edge inside) and the processes feeding it from outside.</summary>
internal sealed record Cycle(int[] Members, int[] Upstream);

/// <summary>A checked graph: one fresh <see cref="ProcessBuilder"/> per process (fresh state per run), streams, cycles.</summary>
internal sealed class GraphModel
{
    private GraphModel(ProcessBuilder[] processes, Dictionary<string, StreamInfo> streams, Cycle[] cycles, int[] cycleOf,
        IReadOnlyDictionary<Type, object> codecs)
    {
        Codecs = codecs;
        Processes = processes;
        Streams = streams;
        Cycles = cycles;
        CycleOf = cycleOf;
    }

    public IReadOnlyList<ProcessBuilder> Processes { get; }

    /// <summary>The graph as placements see it (made once).</summary>
    public GraphShape Shape => _shape ??= GraphShape.Of(this);

    private GraphShape? _shape;
    /// <summary>Codecs the user registered, by item type.</summary>
    public IReadOnlyDictionary<Type, object> Codecs { get; }
    public IReadOnlyDictionary<string, StreamInfo> Streams { get; }
    public IReadOnlyList<Cycle> Cycles { get; }
    /// <summary>Per process, the index of its cycle, or -1.</summary>
    public int[] CycleOf { get; }

    /// <summary>
    /// The graph's shape as text: processes with their inputs and outputs, streams with their types.
    /// Every OS process of a run must build the same graph; this is how they check.
    /// </summary>
    public string Signature =>
        string.Join(";", Processes.Select(p =>
            $"{p.Name}({string.Join(",", p.Inputs.Select(i => i.Stream.Name))})->({string.Join(",", p.Outputs.Select(o => o.Stream.Name))})"))
        + "|" + string.Join(";", Streams.Values.OrderBy(s => s.Name, StringComparer.Ordinal).Select(s => $"{s.Name}:{s.ItemType.FullName}"));

    /// <summary>Replaces the error policies of the processes <paramref name="policies"/> names (<see cref="RunOptions.ErrorPolicies"/>).</summary>
    /// <exception cref="ArgumentException">A name the graph does not have, or dead letters for a process whose code declares no dead-letter stream.</exception>
    public void ApplyErrorPolicies(IDictionary<string, ErrorPolicy> policies)
    {
        foreach (var (name, policy) in policies)
        {
            ProcessBuilder process = Processes.FirstOrDefault(p => p.Name == name)
                ?? throw new ArgumentException($"--on-error names process '{name}', which the graph does not have. Its processes: {string.Join(", ", Processes.Select(p => p.Name))}.");
            if (policy.Final.Kind == ErrorPolicy.Kinds.DeadLetter && process.DeadLetters is null)
                throw new ArgumentException(
                    $"--on-error {name}={policy}: process '{name}' writes no dead letters (a stream is part of the graph, declared in code): " +
                    $"give it p.OnError(ErrorPolicy.DeadLetter(graph.DeadLetters)) in code, then choose its policy here.");
            // The code's limit of failures stays: the command line chooses what happens to an item, not how many are a bug.
            process.Errors = policy with { MaxFailures = process.Errors.MaxFailures, Window = process.Errors.Window };
        }
    }

    public bool InSameCycle(int a, int b) => CycleOf[a] >= 0 && CycleOf[a] == CycleOf[b];

    public static GraphModel Build(IReadOnlyList<IStreamReference> declaredStreams, IReadOnlyList<ProcessDeclaration> declarations,
        IReadOnlyDictionary<Type, object> codecs)
    {
        var problems = new List<string>();

        int declaredBefore = declaredStreams.Count;
        var builders = new List<ProcessBuilder>();
        var processNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (ProcessDeclaration d in declarations)
        {
            if (!processNames.Add(d.Name))
            {
                problems.Add($"Process '{d.Name}' is declared twice.");
                continue;
            }
            var builder = new ProcessBuilder(d.Name);
            try
            {
                d.Configure(builder);
            }
            catch (Exception e)
            {
                problems.Add($"Process '{d.Name}': its configure action threw {e.GetType().Name}: {e.Message}");
                continue;
            }
            builder.Seal();
            builders.Add(builder);
        }

        // A stream declared inside a configure action would be declared again at every build of the graph; only the graph's
        // dead letters (declared once, when first asked for) may be.
        for (int i = declaredBefore; i < declaredStreams.Count; i++)
        {
            if (declaredStreams[i].Name != "dead-letters" || declaredStreams[i].ItemType != typeof(DeadLetter))
                problems.Add($"Stream '{declaredStreams[i].Name}' is declared inside a process's configure action: declare streams before the processes that use them.");
        }
        // After the configure actions: a stream they declared (the graph's dead letters, asked for inside one) counts too.
        var streams = new Dictionary<string, IStreamReference>(StringComparer.Ordinal);
        foreach (IStreamReference s in declaredStreams)
        {
            if (streams.TryGetValue(s.Name, out IStreamReference? first))
                problems.Add($"Stream '{s.Name}' is declared twice (as {Names.Of(first.ItemType)} and as {Names.Of(s.ItemType)}).");
            else
                streams.Add(s.Name, s);
        }

        var writers = streams.Keys.ToDictionary(n => n, _ => new List<int>(), StringComparer.Ordinal);
        var readers = streams.Keys.ToDictionary(n => n, _ => new List<int>(), StringComparer.Ordinal);
        for (int p = 0; p < builders.Count; p++)
        {
            ProcessBuilder b = builders[p];
            foreach (IOutputPort output in b.Outputs)
            {
                if (Check(b.Name, "writes", output.Stream, streams, problems)) writers[output.Stream.Name].Add(p);
            }
            foreach (InputSpec input in b.Inputs)
            {
                if (Check(b.Name, "reads", input.Stream, streams, problems)) readers[input.Stream.Name].Add(p);
            }
            if (b.Inputs.Count == 0 && b.Start is null && b.Source is null)
                problems.Add($"Process '{b.Name}' has no inputs, no start action and is no source: it would do nothing.");
        }

        foreach (IStreamReference s in streams.Values)
        {
            if (!s.HasInitial) continue;
            List<int> w = writers[s.Name];
            if (w.Count > 1)
            {
                problems.Add($"Stream '{s.Name}' has initial items and is written by {List(w, builders)}: initial items need exactly one writer, which emits them first.");
            }
            else if (w.Count == 1)
            {
                ProcessBuilder writer = builders[w[0]];
                IOutputPort port = writer.Outputs.First(o => o.Stream.Name == s.Name);
                writer.PrependStart(() => s.EmitInitial(port));
            }
        }

        foreach (IStreamReference s in streams.Values)
        {
            List<int> w = writers[s.Name], r = readers[s.Name];
            if (w.Count == 0 && r.Count == 0)
                problems.Add($"Stream '{s.Name}' is declared but no process reads or writes it.");
            else if (w.Count == 0)
                problems.Add($"Stream '{s.Name}' is read by {List(r, builders)} but no process writes it.");
            else if (r.Count == 0)
                problems.Add($"Stream '{s.Name}' is written by {List(w, builders)} but no process reads it (its items would be lost).");
        }

        if (builders.Count == 0 && problems.Count == 0) problems.Add("The graph has no processes.");
        if (problems.Count > 0) throw new GraphValidationException(problems);

        var infos = streams.Values.ToDictionary(
            s => s.Name,
            s => new StreamInfo(s.Name, s.ItemType, writers[s.Name].ToArray(), readers[s.Name].ToArray()),
            StringComparer.Ordinal);
        var (cycles, cycleOf) = FindCycles(builders.Count, infos.Values);
        return new GraphModel(builders.ToArray(), infos, cycles, cycleOf, new Dictionary<Type, object>(codecs));
    }

    private static bool Check(string process, string verb, IStreamReference used,
        Dictionary<string, IStreamReference> streams, List<string> problems)
    {
        if (!streams.TryGetValue(used.Name, out IStreamReference? declared))
        {
            string known = streams.Count == 0 ? "none" : string.Join(", ", streams.Keys.Order(StringComparer.Ordinal));
            problems.Add($"Process '{process}' {verb} stream '{used.Name}', which is not declared (declared streams: {known}).");
            return false;
        }
        if (declared.ItemType != used.ItemType)
        {
            problems.Add($"Process '{process}' {verb} stream '{used.Name}' as {Names.Of(used.ItemType)}, but the stream carries {Names.Of(declared.ItemType)}.");
            return false;
        }
        return true;
    }

    private static string List(List<int> processes, List<ProcessBuilder> builders) =>
        string.Join(", ", processes.Select(p => $"'{builders[p].Name}'"));

    /// <summary>Tarjan's strongly connected components over "writes a stream that is read by".</summary>
    private static (Cycle[] Cycles, int[] CycleOf) FindCycles(int count, IEnumerable<StreamInfo> streams)
    {
        var next = new List<int>[count];
        for (int i = 0; i < count; i++) next[i] = new List<int>();
        foreach (StreamInfo s in streams)
            foreach (int w in s.Writers)
                foreach (int r in s.Readers)
                    if (!next[w].Contains(r)) next[w].Add(r);

        int index = 0;
        var order = new int[count];
        var low = new int[count];
        var onStack = new bool[count];
        Array.Fill(order, -1);
        var stack = new Stack<int>();
        var components = new List<List<int>>();

        void Visit(int v)
        {
            order[v] = low[v] = index++;
            stack.Push(v);
            onStack[v] = true;
            foreach (int w in next[v])
            {
                if (order[w] < 0)
                {
                    Visit(w);
                    low[v] = Math.Min(low[v], low[w]);
                }
                else if (onStack[w])
                {
                    low[v] = Math.Min(low[v], order[w]);
                }
            }
            if (low[v] != order[v]) return;
            var component = new List<int>();
            int x;
            do
            {
                x = stack.Pop();
                onStack[x] = false;
                component.Add(x);
            } while (x != v);
            components.Add(component);
        }

        for (int v = 0; v < count; v++)
            if (order[v] < 0) Visit(v);

        var cycleOf = new int[count];
        Array.Fill(cycleOf, -1);
        var cycles = new List<Cycle>();
        foreach (List<int> c in components)
        {
            if (c.Count == 1 && !next[c[0]].Contains(c[0])) continue;
            foreach (int p in c) cycleOf[p] = cycles.Count;
            var members = new HashSet<int>(c);
            int[] upstream = Enumerable.Range(0, count)
                .Where(p => !members.Contains(p) && next[p].Any(members.Contains))
                .ToArray();
            cycles.Add(new Cycle(c.Order().ToArray(), upstream));
        }
        return (cycles.ToArray(), cycleOf);
    }
}
