namespace Millrace;

/// <summary>The graph is not valid; nothing ran. <see cref="Problems"/> lists every problem found.</summary>
public sealed class GraphValidationException : Exception
{
    internal GraphValidationException(IReadOnlyList<string> problems)
        : base("The graph is not valid:" + Environment.NewLine + string.Join(Environment.NewLine, problems.Select(p => "  - " + p)))
    {
        Problems = problems;
    }

    /// <summary>One sentence per problem.</summary>
    public IReadOnlyList<string> Problems { get; }
}

/// <summary>A run failed; thrown by <see cref="RunResult.EnsureSuccess"/>.</summary>
public sealed class ProcessFailedException : Exception
{
    internal ProcessFailedException(IReadOnlyList<ProcessFailure> errors)
        : base(errors.Count == 0 ? "The run failed." : errors[0].Message, errors.Count == 0 ? null : errors[0].Exception)
    {
        Errors = errors;
    }

    /// <summary>Every error of the run, first first.</summary>
    public IReadOnlyList<ProcessFailure> Errors { get; }
}
