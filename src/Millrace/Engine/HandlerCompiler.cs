using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace Millrace.Engine;

/// <summary>
/// A copy of a synchronous handler's method compiled fully optimized, for the run's first seconds. A program published
/// with ReadyToRun runs its handlers' precompiled code until tiered compilation replaces it, a few hundred milliseconds
/// into a busy run; and precompiled code cannot inline across assemblies, so every <c>Emit</c> and every state access in
/// a handler is a call through a stub. The copy has the handler's own IL (the same method body, on the same target
/// object), compiled at once by the JIT with everything it calls inlined as tier 1 would. It is made on Millrace's
/// compiling thread after the input's first items; the handler as given runs until the copy is ready.
/// </summary>
/// <remarks>
/// The copy does what the handler does: same IL, same target, same exceptions (nothing is caught or wrapped). What
/// differs is what names the running method: a stack trace's frame is the copy's, <c>DynamicClass.TYPE.METHOD</c>, without
/// a file and line, and its method has no declaring type. So handlers whose own code asks for it
/// (<c>MethodBase.GetCurrentMethod</c>, a <c>StackFrame</c> or <c>StackTrace</c>, an exception's <c>TargetSite</c> or
/// <c>StackTrace</c>, <c>Environment.StackTrace</c>) are left as given. Also left as given: handlers of an assembly built
/// for debugging (frames and lines stay exact, and a debugger steps into them), any handler when a debugger is attached
/// or a profiler is enabled (<c>CORECLR_ENABLE_PROFILING=1</c>: it may rewrite the handler, the copy would not carry
/// that) or <c>MILLRACE_COMPILE_HANDLERS=0</c>, Millrace's own operators, multicast, static, virtual and generic
/// methods, methods of value types, methods whose IL holds what a copy cannot carry (a <c>calli</c> signature, a varargs
/// call), and runtimes that cannot compile code (Native AOT).
/// </remarks>
internal static class HandlerCompiler
{
    /// <summary>Items an input hands its handler as given before its copy is compiled (one full batch of 8-byte items, twice).</summary>
    public const long AfterItems = 16_384;

    /// <summary>False when <c>MILLRACE_COMPILE_HANDLERS=0</c> or a profiler is enabled: every handler runs as given.</summary>
    public static bool Enabled { get; } = Environment.GetEnvironmentVariable("MILLRACE_COMPILE_HANDLERS") != "0"
        && Environment.GetEnvironmentVariable("CORECLR_ENABLE_PROFILING") != "1";

    /// <summary>The compiled copy of <paramref name="handler"/>, or null where it is left as given (see the remarks).</summary>
    public static Action<T>? TryCompile<T>(Action<T> handler)
    {
        if (!Enabled || !RuntimeFeature.IsDynamicCodeCompiled || System.Diagnostics.Debugger.IsAttached) return null;
        try
        {
            return Compile(handler);
        }
        catch (Exception)
        {
            // Whatever the runtime would not take (it runs on the compiling thread: nothing may escape): the handler as given is
            // as correct, only slower for its first moments.
            return null;
        }
    }

    private static Action<T>? Compile<T>(Action<T> handler)
    {
        if (!handler.HasSingleTarget || handler.Target is not { } target) return null;
        MethodInfo method = handler.Method;
        Type? owner = method.DeclaringType;
        if (method is DynamicMethod || method.IsStatic || method.IsVirtual || method.IsGenericMethod || owner is null || owner.IsValueType
            || owner.ContainsGenericParameters || owner.IsInterface || method.ReturnType != typeof(void) || !owner.IsInstanceOfType(target)
            || method.Module == typeof(HandlerCompiler).Module || (method.CallingConvention & CallingConventions.VarArgs) != 0)
            return null;
        ParameterInfo[] parameters = method.GetParameters();
        if (parameters.Length != 1 || parameters[0].ParameterType != typeof(T)) return null;
        if ((method.MethodImplementationFlags & (MethodImplAttributes.NoOptimization | MethodImplAttributes.InternalCall
                | MethodImplAttributes.Native | MethodImplAttributes.Unmanaged | MethodImplAttributes.Synchronized)) != 0) return null;
        if (BuiltForDebugging(method.Module.Assembly)) return null;
        if (method.GetMethodBody() is not { } body || body.GetILAsByteArray() is not { } original) return null;
        byte[] il = (byte[])original.Clone();

        var copy = new DynamicMethod(owner.FullName + "." + method.Name, typeof(void), [owner, typeof(T)], owner, skipVisibility: true)
        {
            InitLocals = body.InitLocals,
        };
        DynamicILInfo info = copy.GetDynamicILInfo();
        Type[]? typeArguments = owner.IsGenericType ? owner.GetGenericArguments() : null;
        if (!Retoken(il, method.Module, typeArguments, info)) return null;

        SignatureHelper locals = SignatureHelper.GetLocalVarSigHelper();
        foreach (LocalVariableInfo local in body.LocalVariables) locals.AddArgument(local.LocalType, local.IsPinned);
        info.SetLocalSignature(locals.GetSignature());
        if (body.ExceptionHandlingClauses is { Count: > 0 } clauses) info.SetExceptions(Clauses(clauses, info));
        info.SetCode(il, body.MaxStackSize);
        var compiled = (Action<T>)copy.CreateDelegate(typeof(Action<T>), target);
        // Compiled here, not at its first call on the process's thread: a copy the JIT refuses (InvalidProgramException) is
        // never called, so it can never fail an item.
        if (Opcodes.MethodDescriptor?.Invoke(copy, null) is not RuntimeMethodHandle handle) return null;
        RuntimeHelpers.PrepareMethod(handle);
        return compiled;
    }

    /// <summary>
    /// Runs <paramref name="work"/> on Millrace's compiling thread (started when there is work, gone when there is none): apart
    /// from the thread pool, whose first worker can take milliseconds to come.
    /// </summary>
    public static void Enqueue(Action work)
    {
        Queue.Enqueue(work);
        if (Interlocked.CompareExchange(ref _working, 1, 0) != 0) return;
        try
        {
            // No execution context of the run's thread goes with it (its async locals are the run's, not the compiler's).
            new Thread(Drain) { IsBackground = true, Name = "millrace compile" }.UnsafeStart();
        }
        catch (Exception)
        {
            // No thread (out of memory, say): the handlers asked for run as given.
            Queue.Clear();
            Volatile.Write(ref _working, 0);
        }
    }

    private static readonly System.Collections.Concurrent.ConcurrentQueue<Action> Queue = new();
    private static int _working;

    private static void Drain()
    {
        while (true)
        {
            while (Queue.TryDequeue(out Action? work)) work();
            // A full fence, not a release write: the look at the queue below must not come before it (a request made in
            // between would find the thread still working, and this thread would leave it in the queue).
            Interlocked.Exchange(ref _working, 0);
            if (Queue.IsEmpty || Interlocked.CompareExchange(ref _working, 1, 0) != 0) return;
        }
    }

    /// <summary>Rewrites, in place, every token of <paramref name="il"/> as the dynamic method's scope knows it; false for what it cannot carry.</summary>
    private static bool Retoken(byte[] il, Module module, Type[]? typeArguments, DynamicILInfo info)
    {
        int at = 0;
        while (at < il.Length)
        {
            OpCode op;
            if (il[at] == 0xFE)
            {
                if (at + 1 >= il.Length || Opcodes.TwoByte[il[at + 1]] is not { } two) return false;
                op = two;
                at += 2;
            }
            else
            {
                if (Opcodes.OneByte[il[at]] is not { } one) return false;
                op = one;
                at += 1;
            }
            switch (op.OperandType)
            {
                case OperandType.InlineNone:
                    break;
                case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar:
                    at += 1;
                    break;
                case OperandType.InlineVar:
                    at += 2;
                    break;
                case OperandType.InlineBrTarget or OperandType.InlineI or OperandType.ShortInlineR:
                    at += 4;
                    break;
                case OperandType.InlineI8 or OperandType.InlineR:
                    at += 8;
                    break;
                case OperandType.InlineSwitch:
                    int targets = BitConverter.ToInt32(il, at);
                    at += 4 + 4 * targets;
                    break;
                case OperandType.InlineString:
                    Write(il, at, info.GetTokenFor(module.ResolveString(BitConverter.ToInt32(il, at))));
                    at += 4;
                    break;
                case OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok:
                    MemberInfo member = module.ResolveMember(BitConverter.ToInt32(il, at), typeArguments, null)
                        ?? throw new InvalidOperationException("unresolved token");
                    if (NamesTheRunningMethod(member)) return false;
                    int token = member switch
                    {
                        MethodBase m when (m.CallingConvention & CallingConventions.VarArgs) == 0 =>
                            m.DeclaringType is { } declaring ? info.GetTokenFor(m.MethodHandle, declaring.TypeHandle) : info.GetTokenFor(m.MethodHandle),
                        FieldInfo f => f.DeclaringType is { } declaring ? info.GetTokenFor(f.FieldHandle, declaring.TypeHandle) : info.GetTokenFor(f.FieldHandle),
                        Type t => info.GetTokenFor(t.TypeHandle),
                        _ => 0,
                    };
                    if (token == 0) return false;
                    Write(il, at, token);
                    at += 4;
                    break;
                default:
                    // InlineSig (calli) and anything unknown: left as given.
                    return false;
            }
        }
        return at == il.Length;
    }

    /// <summary>
    /// Calls whose answer names the running method or its frames (the copy's are not the handler's): a handler making one is
    /// left as given. Calls made further down (a logger that walks the stack) see the copy's frame, named after the handler.
    /// </summary>
    private static bool NamesTheRunningMethod(MemberInfo member) => member switch
    {
        MethodInfo { Name: nameof(MethodBase.GetCurrentMethod) } m when m.DeclaringType == typeof(MethodBase) => true,
        ConstructorInfo c when c.DeclaringType == typeof(System.Diagnostics.StackFrame) || c.DeclaringType == typeof(System.Diagnostics.StackTrace) => true,
        MethodInfo { Name: "get_TargetSite" or "get_StackTrace" } m when typeof(Exception).IsAssignableFrom(m.DeclaringType) => true,
        MethodInfo { Name: "get_StackTrace" } m when m.DeclaringType == typeof(Environment) => true,
        _ => false,
    };

    /// <summary>The exception clauses in the fat format of a method body's extra section, their catch types as the dynamic scope knows them.</summary>
    private static byte[] Clauses(IList<ExceptionHandlingClause> clauses, DynamicILInfo info)
    {
        int size = 4 + 24 * clauses.Count;
        var section = new byte[size];
        section[0] = 0x41; // an exception table, fat format
        section[1] = (byte)size;
        section[2] = (byte)(size >> 8);
        section[3] = (byte)(size >> 16);
        for (int i = 0; i < clauses.Count; i++)
        {
            ExceptionHandlingClause clause = clauses[i];
            int at = 4 + 24 * i;
            Write(section, at, (int)clause.Flags);
            Write(section, at + 4, clause.TryOffset);
            Write(section, at + 8, clause.TryLength);
            Write(section, at + 12, clause.HandlerOffset);
            Write(section, at + 16, clause.HandlerLength);
            Write(section, at + 20, clause.Flags switch
            {
                ExceptionHandlingClauseOptions.Clause => info.GetTokenFor(clause.CatchType!.TypeHandle),
                ExceptionHandlingClauseOptions.Filter => clause.FilterOffset,
                _ => 0,
            });
        }
        return section;
    }

    private static void Write(byte[] bytes, int at, int value) => System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(at), value);

    /// <summary>The IL opcodes by their bytes, and reflection the compiling needs (apart from <see cref="HandlerCompiler"/>, so that asking <see cref="Enabled"/> does not build them).</summary>
    private static class Opcodes
    {
        public static readonly OpCode?[] OneByte = new OpCode?[256];
        public static readonly OpCode?[] TwoByte = new OpCode?[256];

        /// <summary>The runtime's handle of a dynamic method (not public: its MethodHandle property throws); null if this runtime has none.</summary>
        public static readonly MethodInfo? MethodDescriptor =
            typeof(DynamicMethod).GetMethod("GetMethodDescriptor", BindingFlags.NonPublic | BindingFlags.Instance, Type.EmptyTypes);

        static Opcodes()
        {
            foreach (FieldInfo field in typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static))
            {
                if (field.GetValue(null) is not OpCode op) continue;
                ushort value = unchecked((ushort)op.Value);
                if (op.Size == 1) OneByte[value] = op;
                else TwoByte[value & 0xFF] = op;
            }
        }
    }

    private static readonly ConditionalWeakTable<Assembly, object> DebugBuilds = new();

    /// <summary>True for an assembly compiled without optimizations (a Debug build): its handlers keep their frames and lines.</summary>
    private static bool BuiltForDebugging(Assembly assembly) =>
        DebugBuilds.GetValue(assembly, static a =>
            a.GetCustomAttribute<System.Diagnostics.DebuggableAttribute>() is { IsJITOptimizerDisabled: true }) is true;
}
