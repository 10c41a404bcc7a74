using Millrace.State;

// Two state stores of this library, one named by each form of the attribute; each knows only locations of its own.
[assembly: MillraceStateStore<Millrace.Tests.StoreNamedByTypeArgument>]
[assembly: MillraceStateStore(typeof(Millrace.Tests.StoreNamedByTypeOf))]

namespace Millrace.Tests;

internal sealed class StoreNamedByTypeArgument : IStateStoreProvider
{
    public IStateStore? Open(string location, string name) =>
        location.StartsWith("type-argument:", StringComparison.Ordinal) ? new FolderStateStore(location["type-argument:".Length..]) : null;
}

internal sealed class StoreNamedByTypeOf : IStateStoreProvider
{
    public IStateStore? Open(string location, string name) =>
        location.StartsWith("typeof:", StringComparison.Ordinal) ? new FolderStateStore(location["typeof:".Length..]) : null;
}

/// <summary>
/// The state stores that <c>--state</c> opens (a folder, a SQLite file, a PostgreSQL database) keep the
/// same contract: random writes, reads, lists and deletes agree with a dictionary; programs sharing a
/// database do not see each other's keys; the lock excludes other OS processes and is let go when the OS
/// process holding it dies. MILLRACE_PROPERTY_RUNS sets how many random sequences (default 10).
/// </summary>
public class StateStoreTests
{
    private static string Postgres => Environment.GetEnvironmentVariable("MILLRACE_POSTGRES")
        ?? throw new InvalidOperationException("MILLRACE_POSTGRES is not set: run the tests with bash scripts/test.sh, which starts PostgreSQL.");

    /// <summary>A fresh location of a kind: a folder, a SQLite file, or the test database (with a fresh name).</summary>
    private static string Location(string kind) => kind switch
    {
        "folder" => Path.Combine(Path.GetTempPath(), "millrace-store-" + Guid.NewGuid().ToString("N")),
        "sqlite" => Path.Combine(Path.GetTempPath(), "millrace-store-" + Guid.NewGuid().ToString("N") + ".db"),
        "postgres" => Postgres,
        _ => throw new ArgumentException(kind),
    };

    private static string NewName() => "test-" + Guid.NewGuid().ToString("N")[..12];

    [Fact]
    public void A_folder_tells_a_missing_key_without_an_exception_and_reads_every_other()
    {
        // A missing key is the common case at a run's start; the first exception a program throws costs it milliseconds.
        string location = Location("folder");
        IStateStore store = StateStores.Open(location, NewName());
        try
        {
            store.Write("FORMAT", [1]);
            store.Write("checkpoint-0000000001/db.json", [2, 3]);
            int thrown = 0;
            int thread = Environment.CurrentManagedThreadId;
            EventHandler<System.Runtime.ExceptionServices.FirstChanceExceptionEventArgs> count = (_, _) =>
            {
                if (Environment.CurrentManagedThreadId == thread) Interlocked.Increment(ref thrown);
            };
            AppDomain.CurrentDomain.FirstChanceException += count;
            try
            {
                Assert.Null(store.Read("GENERATION"));
                Assert.Null(store.Read("checkpoint-0000000001/web.json"));
                Assert.Null(store.Read("checkpoint-0000000001/db.jso")); // a name that is a prefix of another's is not it
            }
            finally
            {
                AppDomain.CurrentDomain.FirstChanceException -= count;
            }
            Assert.Equal(0, thrown);
            Assert.Equal([1], store.Read("FORMAT"));
            Assert.Equal([2, 3], store.Read("checkpoint-0000000001/db.json"));
            // A folder that is not there, and a key whose folder is a file: missing, as before.
            Assert.Null(store.Read("checkpoint-0000000002/db.json"));
            Assert.Null(store.Read("FORMAT/x"));
            // A key that is a folder is not a missing key: reading it fails loudly.
            Assert.ThrowsAny<Exception>(() => store.Read("checkpoint-0000000001"));
        }
        finally
        {
            Directory.Delete(location, recursive: true);
        }
    }

    [Fact]
    public async Task A_folder_tells_a_missing_key_while_another_writer_removes_and_makes_its_folder_again()
    {
        // Another OS process removes a folder of keys when its last key goes (Delete) and makes it again to write: a read of
        // a missing key in that folder meanwhile is a missing key, never an error.
        string location = Location("folder");
        IStateStore store = StateStores.Open(location, NewName());
        string folder = Path.Combine(location, "checkpoint-0000000001");
        using var stop = new CancellationTokenSource();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var churn = Task.Run(() =>
        {
            long rounds = 0;
            while (!stop.IsCancellationRequested)
            {
                Directory.CreateDirectory(folder);
                started.TrySetResult();
                try { Directory.Delete(folder); } catch (IOException) { }
                rounds++;
            }
            return rounds;
        });
        try
        {
            await started.Task.WaitAsync(TimeSpan.FromSeconds(60));
            for (int i = 0; i < 30_000; i++) Assert.Null(store.Read("checkpoint-0000000001/db.json"));
        }
        finally
        {
            stop.Cancel();
            Assert.True(await churn > 0);
            Directory.Delete(location, recursive: true);
        }
    }

    [Fact]
    public void A_library_names_its_extensions_by_either_form_of_the_attribute_and_both_are_found()
    {
        List<Type> Stores(System.Reflection.Assembly assembly) =>
            Millrace.Placements.MillraceLibraries.ExtensionTypes(assembly, typeof(MillraceStateStoreAttribute<>), typeof(MillraceStateStoreAttribute));
        Assert.Equal(
            new[] { typeof(StoreNamedByTypeArgument).FullName, typeof(StoreNamedByTypeOf).FullName }.Order(),
            Stores(typeof(StateStoreTests).Assembly).Select(t => t.FullName).Order());
        Assert.Equal("Millrace.Data.DatabaseStateStores", Assert.Single(Stores(typeof(Millrace.Data.Table<int>).Assembly)).FullName);
        Assert.Empty(Stores(typeof(Graph).Assembly));
        Assert.Equal("Millrace.RabbitMQ.BrokerPlacement", Assert.Single(Millrace.Placements.MillraceLibraries.ExtensionTypes(
            typeof(Millrace.RabbitMQ.BrokerPlacement).Assembly, typeof(Millrace.Placements.MillracePlacementAttribute<>), typeof(Millrace.Placements.MillracePlacementAttribute))).FullName);
        // And --state reaches each.
        string folder = Path.Combine(Path.GetTempPath(), "millrace-named-" + Guid.NewGuid().ToString("N"));
        try
        {
            Assert.Equal(folder + "-a", StateStores.Open("type-argument:" + folder + "-a", "n").Where);
            Assert.Equal(folder + "-b", StateStores.Open("typeof:" + folder + "-b", "n").Where);
        }
        finally
        {
            foreach (string made in new[] { folder + "-a", folder + "-b" })
                if (Directory.Exists(made)) Directory.Delete(made, recursive: true);
        }
    }

    [Fact]
    public void Only_assemblies_that_reference_Millrace_are_asked_for_extensions()
    {
        Assert.True(Millrace.Placements.MillraceLibraries.ReferencesMillrace(typeof(Millrace.Data.Table<int>).Assembly));
        Assert.True(Millrace.Placements.MillraceLibraries.ReferencesMillrace(typeof(StateStoreTests).Assembly));
        Assert.True(Millrace.Placements.MillraceLibraries.ReferencesMillrace(typeof(Graph).Assembly));
        Assert.False(Millrace.Placements.MillraceLibraries.ReferencesMillrace(typeof(object).Assembly));
        Assert.False(Millrace.Placements.MillraceLibraries.ReferencesMillrace(typeof(Uri).Assembly));
    }

    [Theory]
    [InlineData("folder")]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public void Random_writes_reads_lists_and_deletes_agree_with_a_dictionary(string kind)
    {
        int runs = Helpers.Iterations("MILLRACE_PROPERTY_RUNS", 10);
        // Prefixes with '_' and '.' catch a store that matches them as patterns (SQL's LIKE) rather than as text.
        string[] keys = ["FORMAT", "GENERATION", "live-a_b", "live-a.b", "liveXa_b", "checkpoint-0000000001/db.json", "checkpoint-0000000001/COMPLETE",
                         "checkpoint-0000000012/db.json", "checkpoint-0000000012/a_b.json", "ended-db"];
        string[] prefixes = ["", "live-a_", "live-a.", "checkpoint-", "checkpoint-0000000001/", "checkpoint-0000000012/a_", "ended-", "nothing"];
        for (int seed = 0; seed < runs; seed++)
        {
            var random = new Random(seed);
            string location = Location(kind);
            IStateStore store = StateStores.Open(location, NewName());
            // Another program: beside it in the same database; a folder is one program's, so another folder.
            string otherLocation = kind == "folder" ? Location(kind) : location;
            IStateStore other = StateStores.Open(otherLocation, NewName());
            var model = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            try
            {
                other.Write("live-a_b", [1, 2, 3]);
                for (int step = 0; step < 40; step++)
                {
                    string key = keys[random.Next(keys.Length)];
                    switch (random.Next(4))
                    {
                        case 0 or 1:
                        {
                            // Empty values, and values past a page of the database.
                            byte[] value = new byte[random.Next(3) switch { 0 => 0, 1 => random.Next(1, 50), _ => random.Next(5_000, 200_000) }];
                            random.NextBytes(value);
                            store.Write(key, value);
                            model[key] = value;
                            break;
                        }
                        case 2:
                            store.Delete(key);
                            model.Remove(key);
                            break;
                        default:
                        {
                            string prefix = prefixes[random.Next(prefixes.Length)];
                            var listed = store.List(prefix).OrderBy(e => e.Key, StringComparer.Ordinal).ToArray();
                            var expected = model.Where(p => p.Key.StartsWith(prefix, StringComparison.Ordinal))
                                .Select(p => new StateEntry(p.Key, p.Value.Length)).OrderBy(e => e.Key, StringComparer.Ordinal).ToArray();
                            Assert.True(expected.SequenceEqual(listed), $"{kind}, seed {seed}, step {step}: List(\"{prefix}\") gave {string.Join(", ", listed)}; expected {string.Join(", ", expected)}");
                            break;
                        }
                    }
                    byte[]? read = store.Read(key);
                    if (model.TryGetValue(key, out byte[]? value2)) Assert.True(read is not null && read.AsSpan().SequenceEqual(value2), $"{kind}, seed {seed}, step {step}: {key} read back wrong");
                    else Assert.Null(read);
                }
                // The other program's key is its own.
                Assert.Equal([1, 2, 3], other.Read("live-a_b"));
                Assert.Single(other.List(""));
            }
            finally
            {
                foreach (StateEntry e in store.List("")) store.Delete(e.Key);
                foreach (StateEntry e in other.List("")) other.Delete(e.Key);
                Remove(kind, location);
                Remove(kind, otherLocation);
            }
        }
    }

    [Theory]
    [InlineData("folder")]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task The_lock_keeps_out_other_OS_processes_until_let_go_or_until_its_holder_is_killed(string kind)
    {
        string location = Location(kind), name = NewName();
        IStateStore store = StateStores.Open(location, name);
        try
        {
            // Held here: another holder waits, then gives up with a clear error.
            using (store.Lock("store", TimeSpan.FromSeconds(5)))
            {
                var e = Assert.Throws<TimeoutException>(() => StateStores.Open(location, name).Lock("store", TimeSpan.FromMilliseconds(200)));
                Assert.Contains("stayed locked", e.Message);
            }
            using (StateStores.Open(location, name).Lock("store", TimeSpan.FromSeconds(5)))
            {
                // Another program's lock (another name) is not this one. (A folder or a SQLite file is one program's.)
                if (kind == "postgres") StateStores.Open(location, NewName()).Lock("store", TimeSpan.FromSeconds(5)).Dispose();
            }

            // Held by another OS process: kept out until it is killed, then free.
            using var holder = ExampleProgram.Start("Millrace.Scenarios", "hold-state-lock", location, name);
            await holder.WaitForOutputAsync(o => o.Contains("locked", StringComparison.Ordinal), seconds: 60);
            Assert.Throws<TimeoutException>(() => store.Lock("store", TimeSpan.FromMilliseconds(300)));
            ExampleProgram.Kill(holder.Pid, 9);
            await holder.WaitAsync(seconds: 30);
            // The OS (or the database, seeing the connection end) lets it go; 30 s is a way out, not a wait.
            using (store.Lock("store", TimeSpan.FromSeconds(30)))
            {
            }
        }
        finally
        {
            Remove(kind, location);
        }
    }

    /// <summary>
    /// Writers of a checkpoint's parts while another OS process removes that checkpoint (its folder goes with its
    /// last key): every write lands whole or is removed, none fails.
    /// </summary>
    [Theory]
    [InlineData("folder")]
    [InlineData("sqlite")]
    public async Task Writes_into_a_checkpoint_being_removed_never_fail(string kind)
    {
        string location = Location(kind);
        IStateStore store = StateStores.Open(location, NewName());
        try
        {
            int rounds = Helpers.Iterations("MILLRACE_PROPERTY_RUNS", 10) * 30;
            var writers = Enumerable.Range(0, 3).Select(w => Task.Run(() =>
            {
                for (int i = 0; i < rounds; i++) store.Write($"checkpoint-0000000001/w{w}.json", [(byte)w, (byte)i]);
            })).ToArray();
            var remover = Task.Run(() =>
            {
                while (!writers.All(t => t.IsCompleted))
                    foreach (StateEntry e in store.List("checkpoint-")) store.Delete(e.Key);
            });
            await Task.WhenAll(writers);
            await remover;
            // The last write of each writer came after the remover's last pass or was removed: never a part of one.
            foreach (StateEntry e in store.List("checkpoint-")) Assert.Equal(2, e.Length);
        }
        finally
        {
            Remove(kind, location);
        }
    }

    [Fact]
    public async Task A_location_of_a_library_the_program_lacks_and_a_store_of_another_format_are_named()
    {
        string folder = Location("folder");
        try
        {
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, "FORMAT"), "millrace-state 99\n");
            var options = new RunOptions { CheckpointInterval = TimeSpan.FromSeconds(1), StatePath = folder };
            var view = new CountingObserver();
            options.Observers.Add(view);
            var graph = new Graph();
            Stream<int> s = graph.Stream<int>("s");
            graph.Source("numbers", s, Enumerable.Range(0, 10));
            int seen = 0;
            graph.Sink("sink", s, _ => seen++);
            var e = await Assert.ThrowsAnyAsync<Exception>(() => graph.RunWithin(options));
            Assert.Contains("millrace-state 99", e.Message);
            Assert.Contains(folder, e.Message);
            // Refused before anything ran or showed it (the store opens beside the run's wiring, before its views start).
            Assert.Equal(0, seen);
            Assert.Equal(0, view.Started);
        }
        finally
        {
            Remove("folder", folder);
        }
        // Locations read as what they are: a path with '=' in it, a SQLite file in such a folder, PostgreSQL by Host or Server; a URI is refused.
        string odd = Path.Combine(Path.GetTempPath(), "millrace-run=" + Guid.NewGuid().ToString("N"));
        try
        {
            Assert.Contains("(SQLite)", StateStores.Open(Path.Combine(odd, "state.db"), NewName()).Where);
            Assert.Equal(Path.GetFullPath(odd), StateStores.Open(odd, NewName()).Where);
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            if (Directory.Exists(odd)) Directory.Delete(odd, recursive: true);
        }
        string server = Postgres.Replace("Host=", "Server = ", StringComparison.Ordinal);
        Assert.Contains("PostgreSQL", StateStores.Open(server, NewName()).Where);
        Assert.Contains("not a URI", Assert.Throws<ArgumentException>(() => StateStores.Open("postgres://me:secret@127.0.0.1/state", NewName())).Message);
        // A password in a connection string never shows in what the store says of itself.
        IStateStore store = StateStores.Open(Postgres + ";Password=secret-word", NewName());
        Assert.DoesNotContain("secret-word", store.Where);
        Assert.Contains("PostgreSQL", store.Where);
    }

    private static void Remove(string kind, string location)
    {
        if (kind == "folder" && Directory.Exists(location)) Directory.Delete(location, recursive: true);
        if (kind == "sqlite")
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            foreach (string f in Directory.GetFiles(Path.GetDirectoryName(location)!, Path.GetFileName(location) + "*")) File.Delete(f);
        }
    }
}

internal sealed class CountingObserver : Millrace.Monitoring.IRunObserver
{
    public int Started;

    public Task StartAsync(Millrace.Monitoring.RunMonitor monitor)
    {
        Interlocked.Increment(ref Started);
        return Task.CompletedTask;
    }

    public Task StopAsync() => Task.CompletedTask;
}
