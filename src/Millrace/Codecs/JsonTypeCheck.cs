using System.Collections;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text.Json.Serialization;

namespace Millrace.Codecs;

/// <summary>
/// Whether items of a type come back from the JSON codec as they were written. Types that would
/// silently arrive different (object, which comes back as a JsonElement; an interface or abstract
/// type without a polymorphic mapping; a class with nothing public; a property that nothing can set
/// again) are found before a run starts, with the reason and the member that has it.
/// </summary>
internal static class JsonTypeCheck
{
    private static readonly HashSet<Type> Plain =
    [
        typeof(string), typeof(decimal), typeof(DateTime), typeof(DateTimeOffset), typeof(TimeSpan), typeof(Guid),
        typeof(DateOnly), typeof(TimeOnly), typeof(Uri), typeof(Version), typeof(byte[]), typeof(Half), typeof(Int128), typeof(UInt128),
        typeof(System.Text.Json.JsonElement), typeof(System.Text.Json.Nodes.JsonNode), typeof(System.Text.Json.Nodes.JsonObject),
        typeof(System.Text.Json.Nodes.JsonArray), typeof(System.Text.Json.JsonDocument),
    ];

    private static readonly HashSet<Type> Keys =
    [
        typeof(string), typeof(char), typeof(bool), typeof(byte), typeof(sbyte), typeof(short), typeof(ushort), typeof(int), typeof(uint),
        typeof(long), typeof(ulong), typeof(float), typeof(double), typeof(decimal), typeof(Guid), typeof(DateTime), typeof(DateTimeOffset),
    ];

    /// <summary>Null when <paramref name="type"/> crosses exactly; else what is wrong, naming where in the type.</summary>
    public static string? WhyNot(Type type) => Check(type, Name(type), new HashSet<Type>());

    private static string? Check(Type type, string where, HashSet<Type> visiting)
    {
        if (type.IsPrimitive || type.IsEnum || Plain.Contains(type)) return null;
        if (type == typeof(object))
            return $"{where} is object: JSON brings back a JsonElement, not the value written";
        if (type.IsPointer || type.IsByRef || typeof(Delegate).IsAssignableFrom(type) || typeof(Type).IsAssignableFrom(type) ||
            typeof(MemberInfo).IsAssignableFrom(type) || type == typeof(IntPtr) || type == typeof(UIntPtr) || type.IsByRefLike)
            return $"{where} is {Name(type)}, which has no JSON form";
        if (type.GetCustomAttribute<JsonConverterAttribute>() is not null) return null; // the type says how it is written
        if (Nullable.GetUnderlyingType(type) is { } underlying) return Check(underlying, where, visiting);
        if (type.IsArray) return type.GetArrayRank() == 1 ? Check(type.GetElementType()!, $"{where}[]", visiting) : $"{where} is a multi-dimensional array, which JSON cannot carry";
        if (!visiting.Add(type)) return null; // a recursive type (a tree): its members are being checked already
        try
        {
            if (Dictionary(type) is var (key, value))
            {
                if (!Keys.Contains(key) && !key.IsEnum)
                    return $"{where} is a dictionary with keys of type {Name(key)}; JSON object keys are strings (use string, number, enum, Guid or date keys)";
                return Check(value, $"{where}[key]", visiting);
            }
            if (Element(type) is { } element) return Check(element, $"{where}[]", visiting);
            if (type.IsGenericType && type.FullName!.StartsWith("System.ValueTuple`", StringComparison.Ordinal) ||
                type.IsGenericType && type.FullName!.StartsWith("System.Tuple`", StringComparison.Ordinal))
            {
                Type[] items = type.GetGenericArguments();
                for (int i = 0; i < items.Length; i++)
                    if (Check(items[i], $"{where}.Item{i + 1}", visiting) is { } problem) return problem;
                return null;
            }
            if (type.IsInterface || type.IsAbstract)
            {
                var derived = type.GetCustomAttributes<JsonDerivedTypeAttribute>().ToArray();
                if (derived.Length == 0)
                    return $"{where} is {(type.IsInterface ? "the interface" : "the abstract type")} {Name(type)} without a polymorphic mapping: " +
                           $"JSON cannot tell which type to make (add [JsonDerivedType(typeof(...), \"name\")] to {Name(type)} for each type it stands for)";
                foreach (JsonDerivedTypeAttribute d in derived)
                    if (Check(d.DerivedType, $"{where} ({Name(d.DerivedType)})", visiting) is { } problem) return problem;
                return null;
            }
            return CheckObject(type, where, visiting);
        }
        finally
        {
            visiting.Remove(type);
        }
    }

    private static string? CheckObject(Type type, string where, HashSet<Type> visiting)
    {
        PropertyInfo[] properties = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.GetIndexParameters().Length == 0 && p.GetMethod is { IsPublic: true } && p.GetCustomAttribute<JsonIgnoreAttribute>() is null)
            .ToArray();
        FieldInfo[] fields = type.GetFields(BindingFlags.Public | BindingFlags.Instance)
            .Where(f => f.GetCustomAttribute<JsonIgnoreAttribute>() is null).ToArray();
        // The constructor System.Text.Json uses: [JsonConstructor], else a public parameterless one, else the only public one.
        ConstructorInfo[] constructors = type.GetConstructors(BindingFlags.Public | BindingFlags.Instance);
        ConstructorInfo? chosen = constructors.FirstOrDefault(c => c.GetCustomAttribute<JsonConstructorAttribute>() is not null);
        bool parameterless = type.IsValueType || constructors.Any(c => c.GetParameters().Length == 0);
        if (chosen is null && !parameterless)
        {
            if (constructors.Length != 1)
                return $"{where} ({Name(type)}) has {(constructors.Length == 0 ? "no public constructor" : "several public constructors and none without parameters")}: " +
                       "JSON cannot make one (mark one [JsonConstructor])";
            chosen = constructors[0];
        }
        ParameterInfo[] parameters = chosen?.GetParameters() ?? [];
        bool Bound(string name) => parameters.Any(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
        foreach (ParameterInfo parameter in parameters)
            if (!properties.Any(p => string.Equals(p.Name, parameter.Name, StringComparison.OrdinalIgnoreCase)) &&
                !fields.Any(f => string.Equals(f.Name, parameter.Name, StringComparison.OrdinalIgnoreCase)))
                return $"{where} ({Name(type)}): its constructor's parameter '{parameter.Name}' matches no public property or field, so JSON cannot fill it";
        if (properties.Length == 0 && fields.Length == 0)
            return $"{where} ({Name(type)}) has no public properties or fields: it would arrive empty";
        foreach (PropertyInfo property in properties)
        {
            bool settable = property.SetMethod is { IsPublic: true } || property.GetCustomAttribute<JsonIncludeAttribute>() is not null && property.SetMethod is not null;
            // A get-only property that stores a value (an auto-property) and that no constructor parameter sets would come back empty;
            // a computed one (no field behind it) comes back right by itself.
            if (!settable && !Bound(property.Name) && StoresValue(type, property))
                return $"{where}.{property.Name} ({Name(type)}) can be read but not set, and no constructor parameter sets it: it would arrive empty " +
                       "(give it a setter or init, or a constructor parameter of the same name)";
            if (Check(property.PropertyType, $"{where}.{property.Name}", visiting) is { } problem) return problem;
        }
        foreach (FieldInfo field in fields)
        {
            if (field.IsInitOnly && !Bound(field.Name))
                return $"{where}.{field.Name} ({Name(type)}) is a readonly field that no constructor parameter sets: it would arrive empty";
            if (Check(field.FieldType, $"{where}.{field.Name}", visiting) is { } problem) return problem;
        }
        return null;
    }

    private static bool StoresValue(Type type, PropertyInfo property) =>
        type.GetField($"<{property.Name}>k__BackingField", BindingFlags.NonPublic | BindingFlags.Instance) is { } field &&
        field.GetCustomAttribute<CompilerGeneratedAttribute>() is not null;

    private static (Type Key, Type Value)? Dictionary(Type type)
    {
        foreach (Type candidate in Interfaces(type))
        {
            if (!candidate.IsGenericType) continue;
            Type definition = candidate.GetGenericTypeDefinition();
            if (definition == typeof(IDictionary<,>) || definition == typeof(IReadOnlyDictionary<,>))
            {
                Type[] args = candidate.GetGenericArguments();
                return (args[0], args[1]);
            }
        }
        return null;
    }

    private static Type? Element(Type type)
    {
        if (!typeof(IEnumerable).IsAssignableFrom(type) || type == typeof(string)) return null;
        foreach (Type candidate in Interfaces(type))
            if (candidate.IsGenericType && candidate.GetGenericTypeDefinition() == typeof(IEnumerable<>))
                return candidate.GetGenericArguments()[0];
        return typeof(object); // a non-generic collection: its items are objects
    }

    private static IEnumerable<Type> Interfaces(Type type) => type.IsInterface ? type.GetInterfaces().Prepend(type) : type.GetInterfaces();

    public static string Name(Type type)
    {
        if (Nullable.GetUnderlyingType(type) is { } underlying) return Name(underlying) + "?";
        if (type.IsArray) return Name(type.GetElementType()!) + "[]";
        if (!type.IsGenericType) return type.Name;
        string name = type.Name[..type.Name.IndexOf('`')];
        return $"{name}<{string.Join(", ", type.GetGenericArguments().Select(Name))}>";
    }
}
