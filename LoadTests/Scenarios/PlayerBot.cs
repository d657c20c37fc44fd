using System.Collections.Concurrent;
using System.Diagnostics;
using GameClient;
using GameProtocol;
using LoadTests.Harness;

namespace LoadTests.Scenarios;

/// <summary>
/// One playing connection for the load suite: it reads everything the server sends on a loop of its own, answers
/// Echo round trips, and reports how late each StateUpdate arrived (server time in the update to receipt; the server
/// and the suite share this machine's clock).
/// </summary>
public sealed class PlayerBot : IAsyncDisposable
{
    private readonly ConcurrentDictionary<long, TaskCompletionSource> echoes = new();
    private readonly Task reader;
    private long seq;

    private PlayerBot(GameConnection connection, Action<TimeSpan> onUpdate)
    {
        Connection = connection;
        reader = Task.Run(() => ReadAsync(onUpdate));
    }

    public GameConnection Connection { get; }

    public static async Task<PlayerBot> ConnectAsync(GameClientOptions options, string room, Action<TimeSpan> onUpdate)
    {
        var connection = await GameConnection.ConnectAsync(options);
        await connection.SendAsync(new JoinRoom(room));
        return new PlayerBot(connection, onUpdate);
    }

    public Task MoveAsync() => Connection.SendAsync(new Move(Interlocked.Increment(ref seq), 1, 2));

    /// <summary>One Echo round trip.</summary>
    public async Task<TimeSpan> EchoAsync(byte[] payload, TimeSpan timeout)
    {
        var id = Interlocked.Increment(ref seq);
        var answered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        echoes[id] = answered;
        var started = Stopwatch.GetTimestamp();
        await Connection.SendAsync(new Echo(id, payload));
        await answered.Task.WaitAsync(timeout);
        return Stopwatch.GetElapsedTime(started);
    }

    public async ValueTask DisposeAsync()
    {
        if (Connection.Channel.Active)
        {
            try
            {
                await Connection.GoodbyeAsync("load_done");
                GameScenarios.CountGoodbye();
            }
            catch (GameClientException)
            {
                // the report of the connection says how it ended
            }
        }

        await Connection.DisposeAsync();
        await reader;
    }

    private async Task ReadAsync(Action<TimeSpan> onUpdate)
    {
        await foreach (var message in Connection.Incoming.ReadAllAsync())
        {
            switch (message)
            {
                case StateUpdate update:
                    onUpdate(TimeSpan.FromMilliseconds(Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - update.ServerTimeUnixMs)));
                    break;
                case Echo echo when echoes.TryRemove(echo.Seq, out var answered):
                    answered.TrySetResult();
                    break;
            }
        }

        foreach (var pending in echoes.Values)
        {
            pending.TrySetCanceled();
        }
    }
}
