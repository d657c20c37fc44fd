using GameClient;
using GameProtocol;

namespace GameServer.Tests.Infrastructure;

/// <summary>Reads a client's incoming messages until one of the wanted kind arrives, skipping the rest.</summary>
public static class Receive
{
    public static async Task<T> NextAsync<T>(GameConnection client, Func<T, bool>? match = null, TimeSpan? timeout = null)
        where T : class, IMessage
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(15));
        while (true)
        {
            if (await client.Incoming.ReadAsync(cts.Token) is T wanted && (match is null || match(wanted)))
            {
                return wanted;
            }
        }
    }
}
