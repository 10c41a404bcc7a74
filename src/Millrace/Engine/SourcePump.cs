using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace Millrace.Engine;

/// <summary>
/// A source's loop compiled for the type of its enumerator. The loop as written (<see cref="EnumerableSource{T}"/>) calls
/// <c>MoveNext</c> and <c>Current</c> through the interface: two dispatch stubs per item, a tenth of a busy source's time.
/// The compiled loop does the same steps in the same order, but calls the enumerator's own methods, so that the JIT
/// calls them directly (a sealed type, as every C# iterator is) and inlines what it can (<c>Current</c>, <c>Emit</c>).
/// Made on Millrace's compiling thread after the source's first items (<see cref="HandlerCompiler.Enqueue"/>); off
/// where the handlers' copies are off (<c>MILLRACE_COMPILE_HANDLERS=0</c>, a profiler, a debugger, Native AOT), and for
/// enumerators that are value types (their boxed copy is the one enumerated) or whose methods cannot be found.
/// </summary>
internal static class SourcePump<T>
{
    /// <summary>Runs the source on: true when the enumerator has no more items, false when the source was asked to stop.</summary>
    public delegate bool Pump(IEnumerator<T> items, ProcessRunner runner, Output<T> output);

    public static Pump? TryCompile(Type enumerator)
    {
        if (!HandlerCompiler.Enabled || !RuntimeFeature.IsDynamicCodeCompiled || System.Diagnostics.Debugger.IsAttached) return null;
        try
        {
            return Compile(enumerator);
        }
        catch (Exception)
        {
            return null; // the loop as written is as correct
        }
    }

    private static Pump? Compile(Type type)
    {
        if (type.IsValueType || type.IsInterface || type.IsAbstract || type.ContainsGenericParameters || type.IsCOMObject) return null;
        if (Target(type, typeof(IEnumerator<T>), "get_Current") is not { } current) return null;
        if (Target(type, typeof(System.Collections.IEnumerator), "MoveNext") is not { } moveNext) return null;
        MethodInfo shouldStop = typeof(ProcessRunner).GetProperty(nameof(ProcessRunner.SourceShouldStop), BindingFlags.Instance | BindingFlags.NonPublic)!.GetMethod!;
        FieldInfo blocked = typeof(ProcessRunner).GetField(nameof(ProcessRunner.Blocked), BindingFlags.Instance | BindingFlags.NonPublic)!;
        MethodInfo drain = typeof(ProcessRunner).GetMethod(nameof(ProcessRunner.DrainBlockingUntilSourcesStop), BindingFlags.Instance | BindingFlags.NonPublic)!;
        MethodInfo tick = typeof(ProcessRunner).GetMethod(nameof(ProcessRunner.Tick), BindingFlags.Instance | BindingFlags.NonPublic)!;
        MethodInfo emit = typeof(Output<T>).GetMethod(nameof(Output<T>.Emit), [typeof(T)])!;

        var pump = new DynamicMethod("Millrace.SourcePump." + type.Name, typeof(bool), [typeof(IEnumerator<T>), typeof(ProcessRunner), typeof(Output<T>)],
            typeof(SourcePump<T>).Module, skipVisibility: true);
        ILGenerator il = pump.GetILGenerator();
        LocalBuilder items = il.DeclareLocal(type);
        Label loop = il.DefineLabel(), stopped = il.DefineLabel(), ended = il.DefineLabel(), notBlocked = il.DefineLabel();
        il.Emit(OpCodes.Ldarg_0);
        il.Emit(OpCodes.Castclass, type);
        il.Emit(OpCodes.Stloc, items);
        il.MarkLabel(loop);
        // while (!runner.SourceShouldStop && items.MoveNext())
        il.Emit(OpCodes.Ldarg_1);
        il.Emit(OpCodes.Call, shouldStop);
        il.Emit(OpCodes.Brtrue, stopped);
        il.Emit(OpCodes.Ldloc, items);
        il.Emit(OpCodes.Callvirt, moveNext);
        il.Emit(OpCodes.Brfalse, ended);
        // output.Emit(items.Current);
        il.Emit(OpCodes.Ldarg_2);
        il.Emit(OpCodes.Ldloc, items);
        il.Emit(OpCodes.Callvirt, current);
        il.Emit(OpCodes.Call, emit);
        // if (runner.Blocked) runner.DrainBlockingUntilSourcesStop();
        il.Emit(OpCodes.Ldarg_1);
        il.Emit(OpCodes.Ldfld, blocked);
        il.Emit(OpCodes.Brfalse, notBlocked);
        il.Emit(OpCodes.Ldarg_1);
        il.Emit(OpCodes.Call, drain);
        il.MarkLabel(notBlocked);
        // runner.Tick();
        il.Emit(OpCodes.Ldarg_1);
        il.Emit(OpCodes.Call, tick);
        il.Emit(OpCodes.Br, loop);
        il.MarkLabel(stopped);
        il.Emit(OpCodes.Ldc_I4_0);
        il.Emit(OpCodes.Ret);
        il.MarkLabel(ended);
        il.Emit(OpCodes.Ldc_I4_1);
        il.Emit(OpCodes.Ret);
        var compiled = (Pump)pump.CreateDelegate(typeof(Pump));
        // Compiled here, not at its first call on the source's thread.
        RuntimeHelpers.PrepareDelegate(compiled);
        return compiled;
    }

    /// <summary>The method of <paramref name="type"/> that implements <paramref name="name"/> of <paramref name="contract"/>.</summary>
    private static MethodInfo? Target(Type type, Type contract, string name)
    {
        if (!contract.IsAssignableFrom(type)) return null;
        InterfaceMapping map = type.GetInterfaceMap(contract);
        for (int i = 0; i < map.InterfaceMethods.Length; i++)
        {
            if (map.InterfaceMethods[i].Name == name)
                return map.TargetMethods[i] is { IsStatic: false, IsAbstract: false } target && target.DeclaringType is { IsValueType: false } ? target : null;
        }
        return null;
    }
}
