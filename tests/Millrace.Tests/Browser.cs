using Microsoft.Playwright;

namespace Millrace.Tests;

/// <summary>Headless Chromium (Debian's chromium package, which the test command installs) driven by Playwright.</summary>
internal static class Browser
{
    public static string ChromiumPath => Environment.GetEnvironmentVariable("MILLRACE_CHROMIUM") ?? "/usr/bin/chromium";

    public static async Task<(IPlaywright Playwright, IBrowser Browser)> LaunchAsync()
    {
        if (!File.Exists(ChromiumPath))
            throw new InvalidOperationException($"No Chromium at {ChromiumPath}: run the tests with bash scripts/test.sh, which installs Debian's chromium.");
        IPlaywright playwright = await Playwright.CreateAsync();
        IBrowser browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            Timeout = 60_000,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
        return (playwright, browser);
    }

    /// <summary>Where tests leave screenshots: artifacts/ at the top of the repository (ignored by git).</summary>
    public static string ArtifactPath(string file)
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Millrace.sln")))
            {
                string folder = Path.Combine(dir.FullName, "artifacts");
                Directory.CreateDirectory(folder);
                return Path.Combine(folder, file);
            }
        }
        return Path.Combine(AppContext.BaseDirectory, file);
    }
}
