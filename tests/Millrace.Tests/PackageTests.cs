using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Millrace.Tests;

/// <summary>
/// Millrace as a user gets it: the packages packed into a folder feed, used from fresh projects in a temporary folder outside
/// the repository (no Directory.Build.props above them, no project references) — the README's quick start, and what
/// <c>dotnet new millrace</c> creates — built and run in the threads, processes and broker placements.
/// </summary>
public class PackageTests : IClassFixture<PackageTests.Feed>
{
    private readonly Feed _feed;

    public PackageTests(Feed feed) => _feed = feed;

    /// <summary>Packs every package of the solution, once, from the build the tests run from (as <c>scripts/pack.sh</c> does).</summary>
    public sealed class Feed : IDisposable
    {
        public Feed()
        {
            Root = RepositoryRoot();
            // The one version, with a suffix of this run's own: a package of that version the machine has seen before (a
            // developer who followed the README) can never stand in for the fresh one.
            string suffix = $"test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
            Version = XDocument.Load(Path.Combine(Root, "Directory.Build.props")).Descendants("VersionPrefix").Single().Value + "-" + suffix;
            Folder = Directory.CreateTempSubdirectory("millrace-feed-").FullName;
            string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}") ? "Debug" : "Release";
            Command.Run(Root, 300, "dotnet", "pack", "Millrace.sln", "-c", configuration, "--no-build", "-o", Folder, "--nologo", "-v", "quiet", $"--version-suffix", suffix);
        }

        public string Root { get; }
        public string Version { get; }
        public string Folder { get; }

        public void Dispose() => Directory.Delete(Folder, recursive: true);
    }

    [Fact]
    public void Every_package_has_its_readme_license_docs_symbols_and_the_one_version()
    {
        string[] libraries = ["Millrace", "Millrace.RabbitMQ", "Millrace.Web", "Millrace.Data", "Millrace.Terminal", "Millrace.Dashboard", "Millrace.Hosting"];
        foreach (string id in libraries)
        {
            string package = Path.Combine(_feed.Folder, $"{id}.{_feed.Version}.nupkg");
            Assert.True(File.Exists(package), $"{package} was not packed; the feed has: {string.Join(", ", Directory.GetFiles(_feed.Folder).Select(Path.GetFileName))}");
            Assert.True(File.Exists(Path.Combine(_feed.Folder, $"{id}.{_feed.Version}.snupkg")), $"{id} has no symbol package");
            using var zip = System.IO.Compression.ZipFile.OpenRead(package);
            string[] entries = zip.Entries.Select(e => e.FullName).ToArray();
            Assert.Contains("README.md", entries);
            Assert.Contains($"lib/net10.0/{id}.dll", entries);
            Assert.Contains($"lib/net10.0/{id}.xml", entries);
            XDocument nuspec = XDocument.Load(zip.GetEntry($"{id}.nuspec")!.Open());
            string Meta(string name) => nuspec.Descendants().Single(e => e.Name.LocalName == name).Value;
            Assert.Equal(_feed.Version, Meta("version"));
            Assert.Equal("MIT", Meta("license"));
            Assert.Equal("README.md", Meta("readme"));
            Assert.DoesNotContain("Package Description", Meta("description"));
            // The packages depend on each other at the same version (Millrace.Data on Millrace, ...).
            foreach (XElement dependency in nuspec.Descendants().Where(e => e.Name.LocalName == "dependency" && ((string?)e.Attribute("id"))!.StartsWith("Millrace", StringComparison.Ordinal)))
                Assert.Equal(_feed.Version, (string?)dependency.Attribute("version"));
        }
        Assert.True(File.Exists(Path.Combine(_feed.Folder, $"Millrace.Templates.{_feed.Version}.nupkg")));
    }

    [Fact]
    public async Task The_readme_quick_start_builds_from_the_packages_and_runs_in_every_placement()
    {
        using var work = new Workspace(_feed);
        string project = Path.Combine(work.Folder, "Quick");
        work.Run(120, "dotnet", "new", "console", "-n", "Quick", "-o", project);
        work.Run(project, 120, "dotnet", "add", "package", "Millrace", "--version", _feed.Version, "--source", _feed.Folder);
        work.Run(project, 120, "dotnet", "add", "package", "Millrace.RabbitMQ", "--version", _feed.Version, "--source", _feed.Folder);
        // The quick start exactly as the README shows it.
        string readme = await File.ReadAllTextAsync(Path.Combine(_feed.Root, "README.md"));
        string quickStart = readme[readme.IndexOf("## Quick start", StringComparison.Ordinal)..];
        await File.WriteAllTextAsync(Path.Combine(project, "Program.cs"), Regex.Match(quickStart, @"```csharp\n(.*?)```", RegexOptions.Singleline).Groups[1].Value);
        work.Run(project, 300, "dotnet", "build", "-c", "Release", "--nologo", "-v", "quiet");
        string program = Path.Combine(project, "bin", "Release", "net10.0", "Quick.dll");

        foreach (string[] placement in Placements("quick"))
        {
            string output = work.Run(project, 120, ["dotnet", program, "--quiet", .. placement]);
            Assert.Contains("5000 items, sum 41654167500", output);
        }
        // A misspelt option is an error with a suggestion, exit code 2: never a run in the wrong placement.
        var (exit, text) = Command.Try(project, 60, work.Environment, "dotnet", program, "--placment", "processes");
        Assert.Equal(ExitCodes.Usage, exit);
        Assert.Contains("Did you mean", text);
    }

    [Fact]
    public async Task Dotnet_new_millrace_creates_a_program_whose_tests_pass_and_that_runs_in_every_placement()
    {
        using var work = new Workspace(_feed);
        string hive = Path.Combine(work.Folder, "template-hive"); // the test's own template store, not the user's
        work.Run(120, "dotnet", "new", "install", Path.Combine(_feed.Folder, $"Millrace.Templates.{_feed.Version}.nupkg"), "--debug:custom-hive", hive);
        string solution = Path.Combine(work.Folder, "acme");
        work.Run(120, "dotnet", "new", "millrace", "-n", "Acme.Flow", "-o", solution, "--debug:custom-hive", hive);
        Assert.True(File.Exists(Path.Combine(solution, "README.md")));
        Assert.Contains($"Include=\"Millrace\" Version=\"{_feed.Version}\"", await File.ReadAllTextAsync(Path.Combine(solution, "Acme.Flow", "Acme.Flow.csproj")));

        string tests = work.Run(solution, 300, "dotnet", "test", "--nologo");
        Assert.Matches(@"Passed!\s+- Failed:\s+0, Passed:\s+2", tests);

        string app = Path.Combine(solution, "Acme.Flow");
        work.Run(app, 300, "dotnet", "build", "-c", "Release", "--nologo", "-v", "quiet");
        foreach (string[] placement in Placements("acme"))
        {
            string output = work.Run(app, 120, ["dotnet", "run", "-c", "Release", "--no-build", "--", "--quiet", .. placement]);
            Assert.Contains("1000 lines, 3496 words", output);
        }
        string help = work.Run(app, 60, "dotnet", "run", "-c", "Release", "--no-build", "--", "--help");
        Assert.Contains("--lines", help);
        Assert.Contains("--placement", help);
    }

    private static IEnumerable<string[]> Placements(string name) =>
    [
        ["--placement", "threads"],
        ["--placement", "processes"],
        ["--placement", "broker", "--broker", Broker.Uri, "--run-id", $"package-{name}-{Guid.NewGuid():N}"],
    ];

    private static string RepositoryRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Millrace.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("The tests run outside the repository: there is nothing to pack.");
    }

    /// <summary>A temporary folder outside the repository whose NuGet settings see the feed (and, for everything else, the machine's package cache).</summary>
    private sealed class Workspace : IDisposable
    {
        public Workspace(Feed feed)
        {
            Folder = Directory.CreateTempSubdirectory("millrace-package-test-").FullName;
            Assert.False(Folder.StartsWith(feed.Root, StringComparison.Ordinal), "the workspace must be outside the repository");
            string cache = System.Environment.GetEnvironmentVariable("NUGET_PACKAGES") ??
                           Path.Combine(System.Environment.GetFolderPath(System.Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            // Its own package folder: the Millrace packages of this feed are never taken from (or left in) the user's cache;
            // the rest (System.CommandLine, RabbitMQ.Client, xunit...) come from the machine's cache, without the network.
            File.WriteAllText(Path.Combine(Folder, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <config><add key="globalPackagesFolder" value="{Path.Combine(Folder, "packages")}" /></config>
                  <packageSources><add key="millrace" value="{feed.Folder}" /></packageSources>
                  <fallbackPackageFolders><add key="machine" value="{cache}" /></fallbackPackageFolders>
                </configuration>
                """);
        }

        public string Folder { get; }

        public Dictionary<string, string?> Environment { get; } = new() { ["NUGET_PACKAGES"] = null };

        public string Run(int seconds, params string[] command) => Run(Folder, seconds, command);

        public string Run(string directory, int seconds, params string[] command) => Command.Run(directory, seconds, Environment, command);

        public void Dispose()
        {
            try
            {
                Directory.Delete(Folder, recursive: true);
            }
            catch (IOException)
            {
                // A build server may still hold a file a moment; the folder is in the temporary directory.
            }
        }
    }

    /// <summary>Runs a command to its end within a bound; a non-zero exit fails the test with everything it printed.</summary>
    private static class Command
    {
        public static string Run(string directory, int seconds, params string[] command) => Run(directory, seconds, null, command);

        public static string Run(string directory, int seconds, IReadOnlyDictionary<string, string?>? environment, params string[] command)
        {
            var (exit, output) = Try(directory, seconds, environment, command);
            Assert.True(exit == 0, $"`{string.Join(' ', command)}` in {directory} exited with {exit}:\n{output}");
            return output;
        }

        public static (int ExitCode, string Output) Try(string directory, int seconds, IReadOnlyDictionary<string, string?>? environment, params string[] command)
        {
            var info = new ProcessStartInfo(command[0])
            {
                WorkingDirectory = directory,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string argument in command.Skip(1)) info.ArgumentList.Add(argument);
            // What `dotnet test` set for its own MSBuild must not steer the builds of another project; and no build server or
            // compiler server outlives the command (holding its output open, or files of the temporary folder).
            foreach (string name in info.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
                info.Environment.Remove(name);
            info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
            info.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
            info.Environment["UseSharedCompilation"] = "false";
            info.Environment["DOTNET_NOLOGO"] = "1";
            info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
            info.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
            foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
            {
                if (value is null) info.Environment.Remove(name);
                else info.Environment[name] = value;
            }
            var output = new StringBuilder();
            using var process = new Process { StartInfo = info };
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            if (!process.WaitForExit(TimeSpan.FromSeconds(seconds)))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"`{string.Join(' ', command)}` did not end within {seconds} s:\n{output}");
            }
            process.WaitForExit(); // the output read to its end
            lock (output) return (process.ExitCode, output.ToString());
        }
    }
}
