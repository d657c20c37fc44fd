using System.IO;
using TcpConnections;

namespace Transport.Epoll;

/// <summary>
/// A write after this side's <see cref="IDuplexChannel.ShutdownOutputAsync"/>: the FIN is sent, nothing may follow it.
/// Only that write fails; the channel stays open and goes on reading, as Netty's half-closed channels do.
/// </summary>
public sealed class ChannelOutputShutdownException : IOException
{
    public ChannelOutputShutdownException()
        : base("the channel's output is shut down (FIN sent): nothing more can be written")
    {
    }

    public ChannelOutputShutdownException(string message)
        : base(message)
    {
    }

    public ChannelOutputShutdownException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
