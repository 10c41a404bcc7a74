namespace Millrace.Placements;

/// <summary>
/// Where the processes of a graph run: threads of one program, OS processes on one machine, hosts
/// talking through a broker, or a placement of your own. <see cref="Graph.RunAsync"/> finds the
/// placement that <see cref="RunOptions.Placement"/> names in the <see cref="PlacementRegistry"/>
/// and hands it the checked graph; the graph's code is the same whichever runs it.
/// </summary>
/// <remarks>
/// A placement in a library of its own registers itself with an assembly attribute,
/// <c>[assembly: MillracePlacement&lt;MyPlacement&gt;]</c>, and is found when a program that
/// references the library asks for it by name; or call <see cref="PlacementRegistry.Register"/>.
/// A placement must hold every promise of the placement contract (see docs/architecture.md):
/// every item reaches every reader once and in order, end marks follow the last item, halts and
/// failures stop every process, and cycles end by termination detection.
/// </remarks>
public interface IPlacement
{
    /// <summary>The name <see cref="RunOptions.Placement"/> (<c>--placement</c>) chooses it by: lower case, no spaces.</summary>
    string Name { get; }

    /// <summary>
    /// Runs the part of the graph that this OS process is responsible for and says how it ended.
    /// Failures of the run are reported in the result, not thrown.
    /// </summary>
    Task<RunResult> RunAsync(PlacementContext context);

    /// <summary>
    /// Whether it takes checkpoints (<see cref="PlacementContext.TakesCheckpoints"/>) through
    /// <see cref="PlacementContext.OpenCheckpoints"/>; a run with checkpoints on is refused by a placement that does not.
    /// </summary>
    bool CarriesCheckpoints => false;
}

/// <summary>
/// Names a placement that an assembly provides, so that <see cref="PlacementRegistry"/> finds it by name:
/// <c>[assembly: MillracePlacement&lt;MyPlacement&gt;]</c>.
/// </summary>
/// <typeparam name="TPlacement">A class implementing <see cref="IPlacement"/> with a constructor without parameters.</typeparam>
/// <remarks>
/// Found from the assembly's metadata alone. The older form <see cref="MillracePlacementAttribute"/> names the type by its
/// name, which the runtime resolves with its type name parser: milliseconds at the start of every run that looks for it.
/// </remarks>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class MillracePlacementAttribute<TPlacement> : Attribute where TPlacement : IPlacement, new();

/// <summary>Names a placement that an assembly provides, so that <see cref="PlacementRegistry"/> finds it by name (<see cref="MillracePlacementAttribute{TPlacement}"/> is found faster).</summary>
/// <param name="placementType">A class implementing <see cref="IPlacement"/> with a constructor without parameters.</param>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class MillracePlacementAttribute(Type placementType) : Attribute
{
    /// <summary>The class implementing <see cref="IPlacement"/>.</summary>
    public Type PlacementType { get; } = placementType;
}
