using DotNetty.Transport.Channels;

namespace GameServer.Connection;

/// <summary>
/// Caps the open connections of a server. The one over the cap is told why (an error frame, e.g.
/// Error("server_full")) and closed gracefully as <see cref="CloseReason.ServerFull"/>; it is not passed on to the
/// handlers above, so it never becomes a session. Share one instance across all channels of a server.
/// </summary>
public sealed class ConnectionLimitHandler : ChannelHandlerAdapter
{
    private static readonly object Admitted = new();
    private static readonly DotNetty.Common.Utilities.AttributeKey<object> AdmittedKey =
        DotNetty.Common.Utilities.AttributeKey<object>.ValueOf("gameserver.admitted");

    private readonly int maxConnections;
    private readonly IConnectionProtocol protocol;
    private int open;

    public ConnectionLimitHandler(int maxConnections, IConnectionProtocol protocol)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxConnections, 1);
        this.maxConnections = maxConnections;
        this.protocol = protocol;
    }

    public override bool IsSharable => true;

    public int Open => Volatile.Read(ref open);

    public override void ChannelActive(IChannelHandlerContext context)
    {
        if (Interlocked.Increment(ref open) > maxConnections)
        {
            Interlocked.Decrement(ref open);
            var text = $"the server is at its limit of {maxConnections} connections";
            _ = ConnectionCloser.CloseGracefullyAsync(
                context.Channel, CloseReason.ServerFull, _ => protocol.CreateError(CloseReason.ServerFull.ToName(), text), text);
            return; // the handlers above never see this connection
        }

        context.Channel.GetAttribute(AdmittedKey).Set(Admitted);
        context.FireChannelActive();
    }

    public override void ChannelInactive(IChannelHandlerContext context)
    {
        if (context.Channel.GetAttribute(AdmittedKey).GetAndRemove() is not null)
        {
            Interlocked.Decrement(ref open);
            context.FireChannelInactive();
        }
    }

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        if (context.Channel.GetAttribute(AdmittedKey).Get() is null)
        {
            DotNetty.Common.Utilities.ReferenceCountUtil.Release(message); // a refused connection's bytes go nowhere
            return;
        }

        context.FireChannelRead(message);
    }
}
