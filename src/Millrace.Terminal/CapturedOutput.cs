using System.Text;

namespace Millrace.Terminal;

/// <summary>
/// Standard output while the live view draws: lines the program writes are kept (the last few are
/// shown under the view) and written out, in order, when the view ends, instead of being drawn over.
/// Past <see cref="MaxLines"/> kept lines, everything goes straight out (nothing is lost).
/// </summary>
internal sealed class CapturedOutput(TextWriter original) : TextWriter
{
    public const int MaxLines = 10_000;
    private readonly object _lock = new();
    private readonly List<string> _lines = new();
    private readonly StringBuilder _current = new();
    private bool _passThrough;

    public override Encoding Encoding => original.Encoding;

    public override void Write(char value)
    {
        lock (_lock)
        {
            if (_passThrough)
            {
                original.Write(value);
                return;
            }
            if (value == '\n')
            {
                _lines.Add(_current.ToString().TrimEnd('\r'));
                _current.Clear();
                if (_lines.Count >= MaxLines) DrainLocked(passThrough: true);
            }
            else
            {
                _current.Append(value);
            }
        }
    }

    public override void Write(string? value)
    {
        if (value is null) return;
        lock (_lock) foreach (char c in value) Write(c);
    }

    /// <summary>The last <paramref name="count"/> lines written.</summary>
    public IReadOnlyList<string> Last(int count)
    {
        lock (_lock) return _lines.Skip(Math.Max(0, _lines.Count - count)).ToList();
    }

    /// <summary>Writes everything kept to the real output; from then on, writes go straight through.</summary>
    public void Release()
    {
        lock (_lock) DrainLocked(passThrough: true);
    }

    private void DrainLocked(bool passThrough)
    {
        foreach (string line in _lines) original.WriteLine(line);
        _lines.Clear();
        if (_current.Length > 0)
        {
            original.Write(_current.ToString());
            _current.Clear();
        }
        original.Flush();
        _passThrough = passThrough;
    }
}
