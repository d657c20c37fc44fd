using DotNetty.Buffers;
using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;
using GameProtocol;
using TcpConnections;

namespace GameServer.Game;

/// <summary>A player after Hello: identity, position and room. Position is written on the connection's event loop
/// and read by the room ticker, so it is swapped as one immutable value.</summary>
public sealed class PlayerSession
{
    private PlayerState state;

    public PlayerSession(TcpConnection connection, string sessionId, string playerName)
    {
        Connection = connection;
        SessionId = sessionId;
        PlayerName = playerName;
        state = new PlayerState(sessionId, 0, 0, 0);
    }

    public TcpConnection Connection { get; }

    public string SessionId { get; }

    public string PlayerName { get; }

    public Room? Room { get; set; }

    public PlayerState State => Volatile.Read(ref state);

    public void Move(long seq, float x, float y) => Volatile.Write(ref state, new PlayerState(SessionId, x, y, seq));

    /// <summary>
    /// Sends a pre-encoded frame from any thread. The check for an open connection runs on the event loop, in order
    /// with the close path, so nothing is sent after our Goodbye (the Goodbye's count stays exact).
    /// </summary>
    /// <returns>False when the frame was dropped because the peer is not writable (the caller may coalesce).</returns>
    public bool TrySend(IByteBuffer frame)
    {
        var channel = Connection.Channel;
        if (channel.EventLoop.IsShuttingDown)
        {
            frame.Release(); // a task queued to a loop that is ending would never run, nor release the frame
            return true;
        }

        if (!channel.IsWritable)
        {
            frame.Release();
            return false;
        }

        channel.EventLoop.Execute(
            static (c, f) =>
            {
                var connection = (TcpConnection)c!;
                if (connection.Phase == ConnectionPhase.Open && connection.Channel.Active)
                {
                    _ = connection.Channel.WriteAndFlushAsync(f);
                }
                else
                {
                    ReferenceCountUtil.Release(f);
                }
            },
            Connection,
            frame);
        return true;
    }
}
