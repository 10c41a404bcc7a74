using System.Text;

namespace Millrace.Tests;

/// <summary>A seeded mutator for fuzz tests: bytes changed, removed, inserted, cut short, length fields made huge, garbage.</summary>
internal static class Fuzz
{
    private static readonly byte[] Punctuation = "{}[]\":,0123456789eE.-\\ntufl"u8.ToArray();

    public static byte[] Mutate(byte[] seed, Random random)
    {
        var bytes = new List<byte>(seed);
        int edits = random.Next(1, 4);
        for (int e = 0; e < edits; e++)
        {
            switch (random.Next(7))
            {
                case 0 when bytes.Count > 0:
                    bytes[random.Next(bytes.Count)] = (byte)random.Next(256);
                    break;
                case 1 when bytes.Count > 0:
                    bytes.RemoveAt(random.Next(bytes.Count));
                    break;
                case 2:
                    bytes.Insert(random.Next(bytes.Count + 1), Punctuation[random.Next(Punctuation.Length)]);
                    break;
                case 3:
                    // Truncated, as a connection cut mid-message would leave it.
                    bytes = bytes.Take(random.Next(bytes.Count + 1)).ToList();
                    break;
                case 4 when bytes.Count >= 4:
                {
                    // A length field made huge or negative.
                    int at = random.Next(bytes.Count - 3);
                    byte[] big = BitConverter.GetBytes(random.Next(2) == 0 ? int.MaxValue : -2 - random.Next(10));
                    for (int b = 0; b < 4; b++) bytes[at + b] = big[b];
                    break;
                }
                case 5:
                {
                    // Swap a number for a string or the other way round.
                    string text = Encoding.UTF8.GetString(bytes.ToArray());
                    text = random.Next(2) == 0 ? System.Text.RegularExpressions.Regex.Replace(text, "\\d+", "\"7\"") : text.Replace("\"Blocked\"", "12");
                    bytes = Encoding.UTF8.GetBytes(text).ToList();
                    break;
                }
                default:
                    return Enumerable.Range(0, random.Next(64)).Select(_ => (byte)random.Next(256)).ToArray();
            }
        }
        return bytes.ToArray();
    }
}
