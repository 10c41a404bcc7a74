using System.Reflection;

namespace Millrace.Placements;

/// <summary>The assemblies that may hold Millrace's extensions (placements, state stores).</summary>
internal static class MillraceLibraries
{
    /// <summary>
    /// The assemblies loaded now and the program's own Millrace libraries (its trusted platform assemblies whose
    /// name says Millrace), loaded here: a program that references such a library need not touch any of its types.
    /// </summary>
    public static List<Assembly> Candidates()
    {
        var candidates = new List<Assembly>(AppDomain.CurrentDomain.GetAssemblies());
        if (AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") is string paths)
        {
            foreach (string path in paths.Split(Path.PathSeparator))
            {
                string file = Path.GetFileNameWithoutExtension(path);
                if (!file.Contains("Millrace", StringComparison.OrdinalIgnoreCase) || candidates.Any(a => a.GetName().Name == file)) continue;
                try
                {
                    candidates.Add(Assembly.Load(new AssemblyName(file)));
                }
                catch (Exception e) when (e is IOException or BadImageFormatException)
                {
                    // Not loadable here: it cannot be an extension this program uses.
                }
            }
        }
        return candidates;
    }

    /// <summary>
    /// The types that <paramref name="assembly"/>'s attributes name as extensions of one kind: the type argument of each
    /// <paramref name="generic"/> attribute (<c>[assembly: MillraceStateStore&lt;X&gt;]</c>, read from the metadata by token),
    /// and the <see cref="Type"/> argument of each <paramref name="named"/> one (<c>typeof(X)</c>, kept as a type name that
    /// the runtime's parser resolves: about 10 ms the first time in a process). None from an assembly that does not
    /// reference Millrace, or whose attributes name libraries that are not here.
    /// </summary>
    public static List<Type> ExtensionTypes(Assembly assembly, Type generic, Type named)
    {
        var types = new List<Type>();
        if (!ReferencesMillrace(assembly)) return types;
        try
        {
            foreach (CustomAttributeData attribute in assembly.GetCustomAttributesData())
            {
                Type kind = attribute.AttributeType;
                if (kind.IsConstructedGenericType && kind.GetGenericTypeDefinition() == generic)
                    types.Add(kind.GenericTypeArguments[0]);
                else if (kind == named && attribute.ConstructorArguments is [{ Value: Type type }])
                    types.Add(type);
                else if (kind == named)
                    throw new InvalidOperationException($"{assembly.GetName().Name} has a {named.Name} that names no type.");
            }
        }
        catch (TypeLoadException e) when (e.Message.Contains(generic.Name, StringComparison.Ordinal))
        {
            // The type it names no longer fits the attribute (built against another version of Millrace or of the type's library).
            throw new InvalidOperationException(
                $"{assembly.GetName().Name} names an extension that Millrace cannot take ({e.Message}); is it built against another version of Millrace?", e);
        }
        catch (Exception e) when (e is IOException or TypeLoadException)
        {
            // An attribute of a library that is not here: not one of Millrace's libraries.
            types.Clear();
        }
        return types;
    }

    /// <summary>
    /// Whether <paramref name="assembly"/> can hold an extension's attribute at all: it is Millrace or references it (the
    /// attributes are Millrace's sealed types). Read from its metadata alone; asking a framework assembly for its
    /// attributes instead loads the type of each one it has (milliseconds at every run's start).
    /// </summary>
    public static bool ReferencesMillrace(Assembly assembly)
    {
        if (assembly.IsDynamic) return false;
        // Millrace itself (or a program that compiled Millrace's sources in) may carry one too.
        if (assembly == typeof(MillraceLibraries).Assembly) return true;
        string millrace = typeof(MillraceLibraries).Assembly.GetName().Name!;
        try
        {
            foreach (AssemblyName reference in assembly.GetReferencedAssemblies())
                if (string.Equals(reference.Name, millrace, StringComparison.Ordinal)) return true;
        }
        catch (Exception e) when (e is IOException or BadImageFormatException or NotSupportedException)
        {
            return true; // not readable this way: looked at the long way
        }
        return false;
    }
}
