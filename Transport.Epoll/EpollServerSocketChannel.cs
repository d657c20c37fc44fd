using System.Net;
using System.Net.Sockets;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using Transport.Epoll.Native;

namespace Transport.Epoll;

/// <summary>
/// A listening socket on the epoll transport: accepts inline on its loop with accept4 and hands each connection, as
/// an <see cref="EpollSocketChannel"/>, to the pipeline (ServerBootstrap registers it with the child group).
/// </summary>
public sealed class EpollServerSocketChannel : AbstractChannel, IServerSocketChannel, IEpollChannel
{
    private static readonly ChannelMetadata ChannelMetadata = new(false, 16);

    private readonly EpollServerSocketChannelConfig config;
    private int fd = -1;
    private bool open = true;
    private bool active;
    private bool readPending;
    private uint interest;
    private IPEndPoint? local;

    public EpollServerSocketChannel()
        : base(null)
    {
        config = new EpollServerSocketChannelConfig(this);
    }

    public int FileDescriptor => fd;

    public override IChannelConfiguration Configuration => config;

    public override bool Open => open;

    public override bool Active => active && open;

    public override ChannelMetadata Metadata => ChannelMetadata;

    protected override EndPoint? LocalAddressInternal => local;

    protected override EndPoint? RemoteAddressInternal => null;

    void IEpollChannel.OnEvents(uint events) => Accept();

    void IEpollChannel.Close() => _ = CloseAsync(); // through the pipeline, as a user's close would go

    void IEpollChannel.ForceClose() => _ = Unsafe.CloseAsync(); // completes CloseCompletion, unlike CloseForcibly

    protected override IChannelUnsafe NewUnsafe() => new ServerUnsafe(this);

    protected override bool IsCompatible(IEventLoop eventLoop) => eventLoop is EpollEventLoop;

    private EpollEventLoop Loop => (EpollEventLoop)EventLoop;

    protected override void DoRegister() => Loop.Register(this);

    protected override void DoDeregister() => Loop.Deregister(this);

    protected override unsafe void DoBind(EndPoint localAddress)
    {
        fd = LibC.socket(localAddress.AddressFamily == AddressFamily.InterNetworkV6 ? LibC.AF_INET6 : LibC.AF_INET, LibC.SOCK_STREAM | LibC.SOCK_NONBLOCK | LibC.SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            throw Errno.ToException(Errno.Last);
        }

        try
        {
            config.Apply(fd);
            EpollSocketChannel.Bind(fd, localAddress);
            if (LibC.listen(fd, config.Backlog) != 0)
            {
                throw Errno.ToException(Errno.Last);
            }
        }
        catch
        {
            _ = LibC.close(fd);
            fd = -1;
            throw;
        }

        local = SockAddr.LocalOf(fd);
        active = true;
        Loop.Add(this, interest);
    }

    protected override void DoBeginRead()
    {
        readPending = true;
        SetInterest(LibC.EPOLLIN);
    }

    protected override void DoDisconnect() => throw new NotSupportedException("a listening socket cannot disconnect");

    protected override void DoClose()
    {
        active = false;
        open = false;
        if (fd >= 0)
        {
            Loop.Remove(this);
            _ = LibC.close(fd);
            fd = -1;
        }
    }

    protected override void DoWrite(ChannelOutboundBuffer input) => throw new NotSupportedException("a listening socket cannot write");

    /// <summary>
    /// AutoRead was turned off (ServerBootstrap does so for a second after accept fails, e.g. EMFILE): stop accepting
    /// now, or level-triggered epoll would report the waiting connection, and accept fail, on every loop pass.
    /// </summary>
    internal void StopAccepting()
    {
        if (Registered && EventLoop is { } loop) // the getter throws before registration
        {
            loop.Execute(() =>
            {
                if (!config.AutoRead)
                {
                    readPending = false;
                    SetInterest(0);
                }
            });
        }
    }

    private void SetInterest(uint next)
    {
        if (next != interest && fd >= 0)
        {
            Loop.Modify(this, next);
        }

        interest = next;
    }

    private unsafe void Accept()
    {
        var pipeline = Pipeline;
        var allocHandle = Unsafe.RecvBufAllocHandle;
        allocHandle.Reset(config);
        Exception? error = null;
        var address = stackalloc byte[SockAddr.MaxSize];
        do
        {
            var addressLength = SockAddr.MaxSize;
            var accepted = LibC.accept4(fd, address, &addressLength, LibC.SOCK_NONBLOCK | LibC.SOCK_CLOEXEC);
            if (accepted < 0)
            {
                var errno = Errno.Last;
                if (errno is not LibC.EAGAIN and not LibC.EINTR)
                {
                    // EMFILE and friends: tell the pipeline; the connection waits in the backlog for the next try.
                    error = Errno.ToException(errno);
                }

                break;
            }

            allocHandle.IncMessagesRead(1);
            readPending = false;
            pipeline.FireChannelRead(new EpollSocketChannel(this, accepted, addressLength > 0 ? SockAddr.Read(address, addressLength) : null));
        }
        while (allocHandle.ContinueReading());

        allocHandle.ReadComplete();
        pipeline.FireChannelReadComplete();
        if (error is not null)
        {
            pipeline.FireExceptionCaught(error);
        }

        if (!readPending && !config.AutoRead)
        {
            SetInterest(0);
        }
    }

    private sealed class ServerUnsafe(EpollServerSocketChannel channel) : AbstractUnsafe(channel)
    {
        public override Task ConnectAsync(EndPoint remoteAddress, EndPoint localAddress) =>
            Task.FromException(new NotSupportedException("a listening socket does not connect"));
    }
}
