namespace Millrace.Engine;

/// <summary>Carries a failure already attributed to a process, stream and item.</summary>
internal sealed class ProcessFailureException : Exception
{
    public ProcessFailureException(ProcessFailure failure) : base(failure.Message, failure.Exception) => Failure = failure;

    public ProcessFailure Failure { get; }
}
