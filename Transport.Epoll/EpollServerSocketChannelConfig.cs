using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using Transport.Epoll.Native;

namespace Transport.Epoll;

/// <summary>Options of a listening socket: backlog, SO_REUSEADDR, SO_REUSEPORT and the receive buffer its connections inherit.</summary>
public sealed unsafe class EpollServerSocketChannelConfig : DefaultChannelConfiguration, IServerSocketChannelConfiguration
{
    private readonly EpollServerSocketChannel channel;

    public EpollServerSocketChannelConfig(EpollServerSocketChannel channel)
        : base(channel)
    {
        this.channel = channel;
    }

    public int Backlog { get; set; } = 1024;

    public bool ReuseAddress { get; set; } = true;

    public bool ReusePort { get; set; }

    public int ReceiveBufferSize { get; set; }

    public override T GetOption<T>(ChannelOption<T> option)
    {
        if (ReferenceEquals(option, ChannelOption.SoBacklog))
        {
            return (T)(object)Backlog;
        }

        if (ReferenceEquals(option, ChannelOption.SoReuseaddr))
        {
            return (T)(object)ReuseAddress;
        }

        if (ReferenceEquals(option, ChannelOption.SoReuseport))
        {
            return (T)(object)ReusePort;
        }

        if (ReferenceEquals(option, ChannelOption.SoRcvbuf))
        {
            return (T)(object)ReceiveBufferSize;
        }

        return base.GetOption(option);
    }

    public override bool SetOption<T>(ChannelOption<T> option, T value)
    {
        Validate(option, value);
        object boxed = value!;
        if (ReferenceEquals(option, ChannelOption.SoBacklog))
        {
            Backlog = (int)boxed;
        }
        else if (ReferenceEquals(option, ChannelOption.SoReuseaddr))
        {
            ReuseAddress = (bool)boxed;
        }
        else if (ReferenceEquals(option, ChannelOption.SoReuseport))
        {
            ReusePort = (bool)boxed;
        }
        else if (ReferenceEquals(option, ChannelOption.SoRcvbuf))
        {
            ReceiveBufferSize = (int)boxed;
        }
        else
        {
            return base.SetOption(option, value);
        }

        return true;
    }

    protected override void AutoReadCleared() => channel.StopAccepting();

    /// <summary>Sets the options on the socket before bind (they only take effect there).</summary>
    internal void Apply(int fd)
    {
        var reuseAddress = ReuseAddress ? 1 : 0;
        var reusePort = ReusePort ? 1 : 0;
        _ = LibC.setsockopt(fd, LibC.SOL_SOCKET, LibC.SO_REUSEADDR, &reuseAddress, sizeof(int));
        _ = LibC.setsockopt(fd, LibC.SOL_SOCKET, LibC.SO_REUSEPORT, &reusePort, sizeof(int));
        if (ReceiveBufferSize > 0)
        {
            var size = ReceiveBufferSize;
            _ = LibC.setsockopt(fd, LibC.SOL_SOCKET, LibC.SO_RCVBUF, &size, sizeof(int));
        }
    }
}
