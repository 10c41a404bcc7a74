namespace Millrace;

/// <summary>
/// A value that is part of a process's state (<see cref="ProcessBuilder.State{T}(string, T)"/>): with
/// checkpoints on (<see cref="RunOptions.CheckpointInterval"/>), it is saved in every checkpoint and
/// restored when the run resumes from one. Read and set it from the process's handlers.
/// </summary>
public sealed class ProcessState<T>
{
    internal ProcessState(string name, T initial)
    {
        Name = name;
        Value = initial;
    }

    /// <summary>The state's name, unique within its process.</summary>
    public string Name { get; }

    /// <summary>The current value.</summary>
    public T Value { get; set; }
}
