using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using GameClient;
using GameProtocol;
using LoadTests.Harness;

namespace LoadTests.Scenarios;

/// <summary>
/// One player for the load suite: it reads everything the server sends on a loop of its own, answers Echo round
/// trips, and reports how late each StateUpdate arrived (server time in the update to receipt; the server and the
/// suite share this machine's clock). A plain connection (version 1), or against a cluster a resumable session
/// (version 2) that outlives a killed gateway.
/// </summary>
public sealed class PlayerBot : IAsyncDisposable
{
    private readonly ConcurrentDictionary<long, TaskCompletionSource> echoes = new();
    private readonly GameConnection? connection;
    private readonly GameSession? session;
    private readonly Task reader;
    private long seq;

    private PlayerBot(GameConnection? connection, GameSession? session, Action<TimeSpan> onUpdate)
    {
        this.connection = connection;
        this.session = session;
        reader = Task.Run(() => ReadAsync(onUpdate));
    }

    /// <summary>Completes when the player is gone for good (a connection closed; a session ended, not merely dropped).</summary>
    public Task Ended => connection?.Closed ?? (Task)session!.Ended;

    /// <summary>Resumes the session made (0 for a plain connection).</summary>
    public int Resumes => session?.Resumes ?? 0;

    private ChannelReader<IMessage> Incoming => connection?.Incoming ?? session!.Incoming;

    public static async Task<PlayerBot> ConnectAsync(GameClientOptions options, string room, Action<TimeSpan> onUpdate, bool resumable = false)
    {
        PlayerBot bot;
        if (resumable)
        {
            bot = new PlayerBot(null, await GameSession.ConnectAsync(options), onUpdate);
        }
        else
        {
            bot = new PlayerBot(await GameConnection.ConnectAsync(options), null, onUpdate);
        }

        await bot.SendAsync(new JoinRoom(room));
        return bot;
    }

    public Task MoveAsync() => SendAsync(new Move(Interlocked.Increment(ref seq), 1, 2));

    private Task SendAsync(IMessage message) => connection?.SendAsync(message) ?? session!.SendAsync(message);

    /// <summary>One Echo round trip.</summary>
    public async Task<TimeSpan> EchoAsync(byte[] payload, TimeSpan timeout)
    {
        var id = Interlocked.Increment(ref seq);
        var answered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        echoes[id] = answered;
        var started = Stopwatch.GetTimestamp();
        await SendAsync(new Echo(id, payload));
        await answered.Task.WaitAsync(timeout);
        return Stopwatch.GetElapsedTime(started);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (connection is { Channel.Active: true })
            {
                await connection.GoodbyeAsync("load_done");
                GameScenarios.CountGoodbye();
            }
            else if (session is { Ended.IsCompleted: false } && await session.GoodbyeAsync("load_done") is not null)
            {
                GameScenarios.CountGoodbye();
            }
        }
        catch (GameClientException)
        {
            // the report of the connection says how it ended
        }

        if (connection is not null)
        {
            await connection.DisposeAsync();
        }
        else
        {
            GameScenarios.CountResumes(session!.Resumes);
            await session.DisposeAsync();
        }

        await reader;
    }

    private async Task ReadAsync(Action<TimeSpan> onUpdate)
    {
        await foreach (var message in Incoming.ReadAllAsync())
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
