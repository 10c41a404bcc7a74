using System.Text.RegularExpressions;

namespace Millrace.Tests;

/// <summary>
/// docs/operators.md shows whole programs: each code block is built as written, outside the repository
/// (a project that references Millrace and Millrace.Data), and run in the threads and the processes
/// placement; both must succeed and print the same lines.
/// </summary>
public class OperatorsPageTests
{
    [Fact]
    public async Task Every_code_block_of_the_operators_page_runs_alike_in_threads_and_processes_placement()
    {
        string root = RepositoryRoot();
        string page = await File.ReadAllTextAsync(Path.Combine(root, "docs", "operators.md"));
        string[] blocks = Regex.Matches(page, "```csharp\n(.*?)```", RegexOptions.Singleline).Select(m => m.Groups[1].Value).ToArray();
        Assert.True(blocks.Length >= 5, $"docs/operators.md has {blocks.Length} C# blocks; expected its programs");

        string folder = Path.Combine(Path.GetTempPath(), "millrace-operators-page-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            var projects = new List<string>();
            for (int i = 0; i < blocks.Length; i++)
            {
                string name = $"Block{i + 1}";
                string dir = Path.Combine(folder, name);
                Directory.CreateDirectory(dir);
                await File.WriteAllTextAsync(Path.Combine(dir, "Program.cs"), blocks[i]);
                await File.WriteAllTextAsync(Path.Combine(dir, name + ".csproj"), $"""
                    <Project Sdk="Microsoft.NET.Sdk">
                      <PropertyGroup>
                        <OutputType>Exe</OutputType>
                        <TargetFramework>net10.0</TargetFramework>
                        <ImplicitUsings>enable</ImplicitUsings>
                        <Nullable>enable</Nullable>
                      </PropertyGroup>
                      <ItemGroup>
                        <ProjectReference Include="{Path.Combine(root, "src", "Millrace", "Millrace.csproj")}" />
                        <ProjectReference Include="{Path.Combine(root, "src", "Millrace.Data", "Millrace.Data.csproj")}" />
                      </ItemGroup>
                    </Project>
                    """);
                projects.Add($"{name}/{name}.csproj");
            }
            string solution = Path.Combine(folder, "Blocks.slnx");
            await File.WriteAllTextAsync(solution,
                "<Solution>\n" + string.Concat(projects.Select(p => $"  <Project Path=\"{p}\" />\n")) + "</Solution>\n");
            var build = await ExampleProgram.RunFileAsync("dotnet", ["build", solution, "-c", "Release", "--nologo", "-v", "q"], seconds: 900);
            Assert.True(build.ExitCode == 0, $"the page's blocks do not build:\n{build.Out}\n{build.Err}");

            for (int i = 0; i < blocks.Length; i++)
            {
                string name = $"Block{i + 1}";
                string dll = Path.Combine(folder, name, "bin", "Release", "net10.0", name + ".dll");
                var threads = await ExampleProgram.RunFileAsync("dotnet", [dll, "--placement", "threads"], seconds: 120);
                var processes = await ExampleProgram.RunFileAsync("dotnet", [dll, "--placement", "processes"], seconds: 120);
                string what = $"block {i + 1} of docs/operators.md (starts \"{First(blocks[i])}\")";
                Assert.True(threads.ExitCode == 0, $"{what}, threads placement: exit {threads.ExitCode}\n{threads.Out}\n{threads.Err}");
                Assert.True(processes.ExitCode == 0, $"{what}, processes placement: exit {processes.ExitCode}\n{processes.Out}\n{processes.Err}");
                string[] expected = Sorted(threads.Out), actual = Sorted(processes.Out);
                Assert.True(expected.Length > 0, $"{what} prints nothing");
                Assert.True(expected.SequenceEqual(actual),
                    $"{what} prints differently.\nthreads:\n{string.Join("\n", expected)}\nprocesses:\n{string.Join("\n", actual)}");
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    // Sinks of the processes placement run in several OS processes: their lines interleave in any order.
    private static string[] Sorted(string output) =>
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Order(StringComparer.Ordinal).ToArray();

    private static string First(string block) =>
        block.Split('\n').First(l => l.Length > 0 && !l.StartsWith("using", StringComparison.Ordinal)).Trim();

    private static string RepositoryRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Millrace.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("The tests run outside the repository: docs/operators.md is not found.");
    }
}
