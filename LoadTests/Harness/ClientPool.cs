using System.Collections.Concurrent;
using System.Diagnostics;

namespace LoadTests.Harness;

/// <summary>
/// Long-lived clients, one slot per scenario copy. NBomber's pool hands out whatever it holds, so a copy whose
/// connection the server (or the network) ended keeps failing on a corpse until the run ends. This pool watches
/// each client's end as it happens and, when a copy asks for its client, replaces a dead one with a fresh connection;
/// the replacement and the connect time are recorded as steps (<c>reconnect</c>, <c>connect</c>) so a run shows how
/// often its clients died instead of hiding it.
/// </summary>
public sealed class ClientPool<TClient> : IAsyncDisposable
    where TClient : class
{
    private readonly Func<IScenarioContext, Task<TClient>> connect;
    private readonly Func<TClient, Task> ended;
    private readonly Func<TClient, ValueTask> dispose;
    private readonly ConcurrentDictionary<int, Slot> slots = new();
    private long died;
    private long replaced;

    /// <param name="connect">Opens a client for the copy asking (its instance number is the slot).</param>
    /// <param name="ended">A task that completes when the client's connection has ended, for whatever reason.</param>
    /// <param name="dispose">Ends a client the pool no longer wants (a dead one, or all of them at the end).</param>
    public ClientPool(Func<IScenarioContext, Task<TClient>> connect, Func<TClient, Task> ended, Func<TClient, ValueTask> dispose)
    {
        this.connect = connect;
        this.ended = ended;
        this.dispose = dispose;
    }

    /// <summary>Clients currently held, alive or not yet noticed by their copy.</summary>
    public int Count => slots.Count;

    /// <summary>Clients whose connection ended while they were in the pool.</summary>
    public long Died => Interlocked.Read(ref died);

    /// <summary>Dead clients replaced by a fresh connection.</summary>
    public long Replaced => Interlocked.Read(ref replaced);

    /// <summary>The copy's client: the one it had if that is still alive, otherwise a new connection.</summary>
    public async Task<TClient> GetAsync(IScenarioContext context)
    {
        var number = context.ScenarioInfo.InstanceNumber;
        if (slots.TryGetValue(number, out var slot))
        {
            if (!slot.Ended.IsCompleted)
            {
                return slot.Client;
            }

            slots.TryRemove(number, out _);
            Interlocked.Increment(ref replaced);
            context.Record("reconnect", Response.Ok(), TimeSpan.Zero);
            await dispose(slot.Client);
        }

        var started = Stopwatch.GetTimestamp();
        var client = await connect(context);
        context.Record("connect", Response.Ok(), Stopwatch.GetElapsedTime(started));
        var end = ended(client);
        slots[number] = new Slot(client, end);
        _ = end.ContinueWith(
            _ =>
            {
                // Clients the pool ends itself were taken out first; only an end that came from outside is a death.
                if (slots.TryGetValue(number, out var held) && ReferenceEquals(held.Client, client))
                {
                    Interlocked.Increment(ref died);
                }
            },
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        return client;
    }

    /// <summary>
    /// Ends every client still held (the scenario's clean step), <paramref name="concurrency"/> at a time, and stops
    /// waiting at <paramref name="deadline"/>: a run with thousands of players must not spend minutes on one Goodbye
    /// handshake after another, nor wait for ever on one that hangs. What did not finish in time is reported, not
    /// waited on (its connection is closed with the process).
    /// </summary>
    public async Task<CleanOutcome> CloseAllAsync(int concurrency, TimeSpan deadline)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrency, 1);
        var held = new List<TClient>();
        foreach (var number in slots.Keys)
        {
            if (slots.TryRemove(number, out var slot))
            {
                held.Add(slot.Client);
            }
        }

        var started = Stopwatch.GetTimestamp();
        var closed = 0;
        var failed = 0;

        // Not disposed: after the deadline, ends still in flight or queued carry on in the background (the process
        // closes whatever is left), and they still need the gate.
        var gate = new SemaphoreSlim(concurrency);
        var all = Task.WhenAll(held.Select(async client =>
        {
            await gate.WaitAsync();
            try
            {
                await dispose(client);
                Interlocked.Increment(ref closed);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Interlocked.Increment(ref failed); // counted, not thrown: one failed Goodbye must not lose the others' outcome
            }
            finally
            {
                gate.Release();
            }
        }));
        using var timeout = new CancellationTokenSource();
        await Task.WhenAny(all, Task.Delay(deadline, timeout.Token));
        await timeout.CancelAsync();
        var done = Volatile.Read(ref closed);
        var errors = Volatile.Read(ref failed);
        return new CleanOutcome(done, held.Count - done - errors, errors, Stopwatch.GetElapsedTime(started));
    }

    /// <summary>Ends every client still held, with the defaults of <see cref="CloseAllAsync"/>'s callers.</summary>
    public async ValueTask DisposeAsync() => await CloseAllAsync(DefaultCleanConcurrency, DefaultCleanDeadline);

    /// <summary>Goodbye handshakes in flight at once during a clean step.</summary>
    public const int DefaultCleanConcurrency = 64;

    /// <summary>How long a clean step waits for all its clients to end.</summary>
    public static readonly TimeSpan DefaultCleanDeadline = TimeSpan.FromSeconds(60);

    private sealed record Slot(TClient Client, Task Ended);
}

/// <summary>
/// How a clean step went: clients ended, clients still ending at the deadline, clients whose end threw, and the time
/// it took.
/// </summary>
public sealed record CleanOutcome(int Closed, int Unfinished, int Failed, TimeSpan Elapsed);
