using System.Text;
using CsCheck;
using Millrace.Engine;

namespace Millrace.Tests;

/// <summary>
/// The compiled copy of a handler (HandlerCompiler) does what the handler does: for handlers of many shapes (closures,
/// exception clauses with filters, nested lambdas, generic code, switch tables, stack memory, instance methods), two
/// instances of the same handler, one as given and one compiled, fed the same random items, end in the same state and
/// throw the same exceptions. Handlers a copy cannot stand for are left as given. In a run, the copy takes over after the
/// first items, and the results and a failure's report are those of the handler as given.
/// </summary>
public class HandlerCompilerTests
{
    /// <summary>A handler and what it has done so far, as text; each call of the factory makes a fresh pair.</summary>
    private delegate (Action<T> Handler, Func<string> State) Factory<T>();

    /// <summary>
    /// Whether copies are made where these tests run: not for an assembly built for debugging (this one in a Debug build),
    /// with a debugger attached, or with MILLRACE_COMPILE_HANDLERS=0 (the tests then check that nothing is copied).
    /// </summary>
    private static readonly bool Copies = HandlerCompiler.Enabled && !System.Diagnostics.Debugger.IsAttached
        && typeof(HandlerCompilerTests).Assembly.GetCustomAttributes(typeof(System.Diagnostics.DebuggableAttribute), false)
            .Cast<System.Diagnostics.DebuggableAttribute>().All(d => !d.IsJITOptimizerDisabled);

    private static void Same<T>(Factory<T> factory, Gen<T[]> items)
    {
        var (probe, _) = factory();
        if (!Copies)
        {
            Assert.Null(HandlerCompiler.TryCompile(probe));
            return;
        }
        Assert.NotNull(HandlerCompiler.TryCompile(probe));
        items.Sample(batch =>
        {
            var (given, givenState) = factory();
            var (other, copyState) = factory();
            Action<T> copy = HandlerCompiler.TryCompile(other)!;
            Assert.NotSame(other, copy);
            Assert.Null(copy.Method.DeclaringType); // a dynamic method's
            foreach (T item in batch)
            {
                string? a = Outcome(given, item), b = Outcome(copy, item);
                Assert.Equal(a, b);
            }
            Assert.Equal(givenState(), copyState());
        }, iter: 300);
    }

    /// <summary>Null when the call returns, else the exception's type and message (what a failure report says).</summary>
    private static string? Outcome<T>(Action<T> handler, T item)
    {
        try
        {
            handler(item);
            return null;
        }
        catch (Exception e)
        {
            return e.GetType().FullName + ": " + e.Message;
        }
    }

    [Fact]
    public void A_closure_with_arithmetic_strings_collections_and_a_switch_does_the_same()
    {
        Same<long>(() =>
        {
            long sum = 0;
            double roots = 0;
            var seen = new List<string>();
            var counts = new Dictionary<int, int>();
            return (x =>
            {
                sum = unchecked(sum + x * x);
                roots += Math.Sqrt(Math.Abs((double)x)) * 0.5;
                string kind = (x % 5) switch
                {
                    0 => "zero",
                    1 or -1 => "one",
                    2 or -2 => "two",
                    3 or -3 => $"three {x}",
                    _ => "other",
                };
                seen.Add(kind);
                int key = (int)(x & 7);
                counts[key] = counts.GetValueOrDefault(key) + 1;
                if (seen.Count > 1000) seen.RemoveAt(0);
                _ = checked(x + 1); // overflows for long.MaxValue: the same OverflowException either way
            }, () => $"{sum} {roots:R} {string.Join(",", seen)} {string.Join(",", counts.OrderBy(c => c.Key))}");
        }, Gen.Long.Array[0, 50]);
    }

    [Fact]
    public void Exception_clauses_with_filters_and_finally_and_an_exception_that_escapes_do_the_same()
    {
        Same<int>(() =>
        {
            int caught = 0, filtered = 0, finals = 0;
            var log = new StringBuilder();
            return (x =>
            {
                try
                {
                    try
                    {
                        if (x % 7 == 0) throw new InvalidOperationException($"seven {x}");
                        if (x % 11 == 0) throw new ArgumentException("eleven");
                        if (x % 13 == 0) throw new FormatException($"thirteen {x}"); // escapes
                        log.Append(x % 3);
                    }
                    catch (InvalidOperationException e) when (e.Message.EndsWith("0", StringComparison.Ordinal))
                    {
                        filtered++;
                    }
                    catch (InvalidOperationException)
                    {
                        caught++;
                    }
                    finally
                    {
                        finals++;
                    }
                }
                catch (ArgumentException e)
                {
                    log.Append(e.Message.Length);
                }
            }, () => $"{caught} {filtered} {finals} {log}");
        }, Gen.Int[-1000, 1000].Array[0, 60]);
    }

    [Fact]
    public void Nested_lambdas_generic_calls_type_tokens_and_stack_memory_do_the_same()
    {
        Same<int>(() =>
        {
            var results = new List<string>();
            return (x =>
            {
                Func<int, int> twice = y => y * 2 + x;
                Span<int> buffer = stackalloc int[4];
                for (int i = 0; i < buffer.Length; i++) buffer[i] = twice(i);
                int total = 0;
                foreach (int v in buffer) total += v;
                (int Low, int High) pair = (Math.Min(x, total), Math.Max(x, total));
                int[] primes = { 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37 }; // an array initializer (ldtoken of static data)
                ReadOnlySpan<byte> table = new byte[] { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0 }; // static data read in place
                results.Add(Describe(pair) + typeof(List<int>).Name + Enumerable.Range(0, Math.Abs(x) % 5).Select(twice).Sum()
                    + primes[Math.Abs(x) % primes.Length] + table[Math.Abs(x) % table.Length]);
            }, () => string.Join("|", results));
        }, Gen.Int[-100_000, 100_000].Array[0, 40]);
    }

    private static string Describe<T>(T value) => $"<{value}>";

    private sealed class Tally
    {
        private long _count;
        private readonly SortedSet<string> _names = new(StringComparer.Ordinal);

        public void Add(string name)
        {
            _count += Weight(name);
            _names.Add(name.Trim());
        }

        private static int Weight(string name) => name.Length == 0 ? 1 : name[0] % 3;

        public override string ToString() => $"{_count} {string.Join(",", _names)}";
    }

    [Fact]
    public void An_instance_method_of_a_class_with_private_members_does_the_same()
    {
        Same<string>(() =>
        {
            var tally = new Tally();
            return (tally.Add, tally.ToString);
        }, Gen.String.Array[0, 30]);
    }

    private readonly record struct Reading(string Sensor, double Value, DateTime At);

    private static Factory<T> Collect<T>(Func<T, string> show) => () =>
    {
        var seen = new List<string>();
        // Calls on T itself (constrained calls, boxing) as well as through the function given.
        return (x => seen.Add(show(x) + "/" + (x?.GetHashCode() ?? 0) + "/" + EqualityComparer<T>.Default.Equals(x, default) + $"/{x}"),
            () => string.Join(";", seen));
    };

    [Fact]
    public void A_closure_made_in_a_generic_method_over_struct_and_reference_items_does_the_same()
    {
        Same(Collect<Reading>(r => $"{r.Sensor}:{r.Value:R}@{r.At:O}"),
            Gen.Select(Gen.String, Gen.Double, Gen.DateTime, (s, v, t) => new Reading(s, v, t)).Array[0, 20]);
        Same(Collect<string?>(s => s ?? "null"), Gen.String.Null().Array[0, 20]);
        Same(Collect<decimal>(d => d.ToString(System.Globalization.CultureInfo.InvariantCulture)), Gen.Decimal.Array[0, 20]);
    }

    [Fact]
    public void A_handler_that_throws_throws_the_same_exception_object_unwrapped()
    {
        var thrown = new InvalidDataException("bad item");
        int before = 0;
        Action<int> handler = x =>
        {
            before++;
            if (x == 3) throw thrown;
        };
        if (!Copies)
        {
            Assert.Null(HandlerCompiler.TryCompile(handler));
            return;
        }
        Action<int> copy = HandlerCompiler.TryCompile(handler)!;
        copy(1);
        Assert.Same(thrown, Assert.Throws<InvalidDataException>(() => copy(3)));
        Assert.Equal(2, before); // the same closure: the copy runs on the handler's own target
    }

    private static void Static(long x) => GC.KeepAlive(x);

    private struct Counter
    {
        public long Count;
        public void Add(long x) => Count += x;
    }

    private class Base
    {
        public virtual void On(long x) => GC.KeepAlive(x);
    }

    private sealed class Derived : Base
    {
        public override void On(long x) => GC.KeepAlive(x + 1);
    }

    [Fact]
    public void Handlers_a_copy_cannot_stand_for_are_left_as_given()
    {
        Assert.Null(HandlerCompiler.TryCompile<long>(Static));
        Assert.Null(HandlerCompiler.TryCompile<long>(new Counter().Add));
        Assert.Null(HandlerCompiler.TryCompile<long>(new Derived().On));
        long a = 0, b = 0;
        Assert.Null(HandlerCompiler.TryCompile((Action<long>)(x => a += x) + (x => b += x)));
        // Contravariance: a handler of objects given where strings are handled.
        Action<object> ofObjects = o => GC.KeepAlive(o);
        Assert.Null(HandlerCompiler.TryCompile<string>(ofObjects));
        // Millrace's own code (its operators' handlers) is precompiled with it.
        var state = new ProcessState<long>("s", 0);
        var setter = (Action<long>)Delegate.CreateDelegate(typeof(Action<long>), state, typeof(ProcessState<long>).GetProperty("Value")!.SetMethod!);
        Assert.Null(HandlerCompiler.TryCompile(setter));
        // Handlers that ask which method runs (the copy's answer is not the handler's: a dynamic method, no declaring type).
        var names = new List<string>();
        Assert.Null(HandlerCompiler.TryCompile<long>(x => names.Add(System.Reflection.MethodBase.GetCurrentMethod()!.DeclaringType!.Name)));
        Assert.Null(HandlerCompiler.TryCompile<long>(x => names.Add(new System.Diagnostics.StackFrame(0).GetMethod()!.Name)));
        Assert.Null(HandlerCompiler.TryCompile<long>(x => names.Add(new System.Diagnostics.StackTrace().FrameCount.ToString())));
        Assert.Null(HandlerCompiler.TryCompile<long>(x => names.Add(Environment.StackTrace)));
        Assert.Null(HandlerCompiler.TryCompile<long>(x =>
        {
            try
            {
                throw new InvalidOperationException(x.ToString());
            }
            catch (InvalidOperationException e)
            {
                names.Add(e.TargetSite?.Name ?? "" + e.StackTrace);
            }
        }));
        // The same handler without the question is copied (so the refusals above are the questions', not the shape's).
        Assert.Equal(Copies, HandlerCompiler.TryCompile<long>(x => names.Add(x.ToString())) is not null);
    }

    /// <summary>
    /// In a run (threads placement), the copy takes over once the input has had its first items: the source waits for it
    /// after 100,000 items (up to a minute), every item is counted once and exactly, and a failure after the swap is reported
    /// as the handler as given would have it (process, stream, item index, exception).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task In_a_run_the_copy_takes_over_after_the_first_items_and_nothing_changes(bool fail)
    {
        const long Count = 300_000, FailAt = 250_000;
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        InputSpec? input = null;
        long sum = 0, handled = 0;
        graph.Process("sum", p =>
        {
            p.On(numbers, x =>
            {
                if (fail && x == FailAt) throw new InvalidOperationException($"refused {x}");
                sum += x;
                handled++;
            });
            input = p.Inputs[0];
        });
        bool swapped = false;
        graph.Source("numbers", numbers, Numbers());
        RunResult result = await graph.RunWithin(new RunOptions { Quiet = true, BatchSize = 1000, StreamCapacity = 4000 }, seconds: 120);
        Assert.True(swapped == Copies, Copies ? "the compiled copy did not take over within a minute" : "a copy was made where none should be");
        if (fail)
        {
            Assert.Equal(RunOutcome.Failed, result.Outcome);
            Assert.Equal($"Process 'sum' failed on item {FailAt} of stream 'numbers' ({FailAt}): InvalidOperationException: refused {FailAt}",
                Assert.Single(result.Errors).Message);
            Assert.Equal(FailAt, handled);
        }
        else
        {
            Assert.Equal(RunOutcome.Completed, result.Outcome);
            Assert.Equal(Count, handled);
            Assert.Equal(Count * (Count - 1) / 2, sum);
        }

        IEnumerable<long> Numbers()
        {
            for (long i = 0; i < Count; i++)
            {
                if (i == 100_000)
                {
                    // Items 16,384 and on have asked for the copy: wait until the input calls it.
                    var waited = System.Diagnostics.Stopwatch.StartNew();
                    while (Copies && !(swapped = input!.CallsCompiledCopy) && waited.Elapsed < TimeSpan.FromMinutes(1)) Thread.Sleep(5);
                    swapped = input!.CallsCompiledCopy;
                }
                yield return i;
            }
        }
    }

    /// <summary>
    /// A source's loop compiled for its enumerator's type (SourcePump) takes over after its first items: the iterator sees
    /// the compiled loop on its stack (it goes on until it does, up to 20M items), and then every item arrives once, in
    /// order; an exception the iterator throws afterwards is reported as before; a stop afterwards still emits every item
    /// the source took (none taken and lost between MoveNext and Emit).
    /// </summary>
    [Theory]
    [InlineData("end")]
    [InlineData("throw")]
    [InlineData("stop")]
    public async Task In_a_run_a_sources_compiled_loop_takes_over_and_nothing_changes(string how)
    {
        const long Limit = 20_000_000, After = 50_000;
        var graph = new Graph();
        var numbers = graph.Stream<long>("numbers");
        long taken = 0, handled = 0, outOfOrder = 0, swappedAt = -1;
        var swapped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        graph.Source("numbers", numbers, Numbers());
        graph.Process("sink", p => p.On(numbers, x =>
        {
            if (x != handled) outOfOrder++;
            handled++;
        }));
        using var stop = new CancellationTokenSource();
        Task<RunResult> running = graph.RunWithin(new RunOptions { Quiet = true, BatchSize = 1000, StreamCapacity = 4000 }, stop.Token, seconds: 120);
        if (how == "stop")
        {
            // The source goes on until the compiled loop takes over (or up to 20M items): wait for one or the other.
            await Task.WhenAny(swapped.Task, running).WaitAsync(TimeSpan.FromSeconds(90));
            stop.Cancel();
        }
        RunResult result = await running;
        if (Copies) Assert.True(swappedAt >= 0, "the compiled loop did not take over");
        else Assert.Equal(-1, swappedAt);
        Assert.Equal(0, outOfOrder);
        switch (how)
        {
            case "end":
                Assert.Equal(RunOutcome.Completed, result.Outcome);
                Assert.Equal(taken, handled);
                Assert.Equal(Copies ? swappedAt + After : Limit, handled);
                break;
            case "throw":
                Assert.Equal(RunOutcome.Failed, result.Outcome);
                Assert.Contains("Process 'numbers' failed", Assert.Single(result.Errors).Message);
                Assert.Contains("InvalidOperationException: the source's own failure", result.Errors[0].Message);
                break;
            default:
                Assert.Equal(RunOutcome.Stopped, result.Outcome);
                Assert.Equal(taken, handled);
                break;
        }

        IEnumerable<long> Numbers()
        {
            for (long i = 0; ; i++)
            {
                if (swappedAt < 0 && i % 4096 == 0 && new System.Diagnostics.StackTrace().ToString().Contains("SourcePump", StringComparison.Ordinal))
                {
                    swappedAt = i;
                    swapped.TrySetResult();
                }
                if (!Copies && i == After) swapped.TrySetResult(); // nothing is compiled: a stop after the first items
                bool last = Copies ? swappedAt >= 0 && i == swappedAt + After : i == Limit;
                if (i == Limit || (how != "stop" && last))
                {
                    if (how == "throw") throw new InvalidOperationException("the source's own failure");
                    yield break;
                }
                taken++;
                yield return i;
            }
        }
    }
}
