using DotNetty.Transport.Channels;

namespace TcpConnections;

/// <summary>
/// Caps the open connections of a server. The one over the cap is told why (the protocol's error message, with the
/// refusal reason's name as its code) and closed gracefully with the application's refusal reason (a game says
/// <c>server_full</c>); it is not passed on to the handlers above, so it never becomes a session. Share one instance
/// across all channels of a server.
/// </summary>
public sealed class ConnectionLimitHandler : ChannelHandlerAdapter
{
    private static readonly object Admitted = new();
    private static readonly DotNetty.Common.Utilities.AttributeKey<object> AdmittedKey =
        DotNetty.Common.Utilities.AttributeKey<object>.ValueOf("tcpconnections.admitted");

    private readonly int maxConnections;
    private readonly CloseReason refusal;
    private readonly IConnectionProtocol? protocol;
    private int open;

    /// <param name="refusal">The reason a refused connection closes with; its name is the error code sent.</param>
    public ConnectionLimitHandler(int maxConnections, CloseReason refusal, IConnectionProtocol? protocol = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxConnections, 1);
        ArgumentNullException.ThrowIfNull(refusal);
        this.maxConnections = maxConnections;
        this.refusal = refusal;
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
            _ = TcpConnection.Of(context.Channel).CloseGracefullyAsync(refusal, _ => protocol?.CreateError(refusal.Name, text), text);
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
