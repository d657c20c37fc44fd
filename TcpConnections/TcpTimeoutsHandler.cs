using System.Net.Sockets;
using DotNetty.Transport.Channels;
using Microsoft.Extensions.Logging;

namespace TcpConnections;

/// <summary>
/// Sets keepalive, and TCP_USER_TIMEOUT when it is turned on (<see cref="TcpTimeoutOptions.UserTimeoutMs"/>), on each
/// connection's socket when it becomes active, then leaves the pipeline. When the kernel gives up on the peer the
/// pending read fails with ETIMEDOUT, which <see cref="ConnectionTailHandler"/> records as <see cref="CloseReason.TimedOut"/>.
/// </summary>
public sealed class TcpTimeoutsHandler : ChannelHandlerAdapter
{
    private const int IpProtoTcp = 6;
    private const int TcpUserTimeout = 18; // linux/tcp.h

    private static int userTimeoutUnsupportedLogged;

    private readonly TcpTimeoutOptions options;
    private readonly ILogger logger;

    public TcpTimeoutsHandler(TcpTimeoutOptions options, ILogger? logger = null)
    {
        this.options = options.ThrowIfInvalid();
        this.logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
    }

    public override bool IsSharable => true;

    public override void ChannelActive(IChannelHandlerContext context)
    {
        if (SocketAccess.TryGetSocket(context.Channel) is { } socket)
        {
            Apply(socket);
        }
        else
        {
            Apply(context.Channel.Configuration);
        }

        context.Channel.Pipeline.Remove(this);
        context.FireChannelActive();
    }

    /// <summary>
    /// Applies the options through channel options, for transports without a .NET socket. The TCP ones are looked up
    /// by their Linux names, which is how the epoll transport declares them; a transport that knows none of them
    /// ignores them.
    /// </summary>
    public void Apply(IChannelConfiguration configuration)
    {
        try
        {
            if (options.KeepAliveTimeSeconds > 0)
            {
                configuration.SetOption(ChannelOption.SoKeepalive, true);
                configuration.SetOption(ChannelOption.ValueOf<int>("TCP_KEEPIDLE"), options.KeepAliveTimeSeconds);
                configuration.SetOption(ChannelOption.ValueOf<int>("TCP_KEEPINTVL"), options.KeepAliveIntervalSeconds);
                configuration.SetOption(ChannelOption.ValueOf<int>("TCP_KEEPCNT"), options.KeepAliveRetryCount);
            }

            if (options.UserTimeoutMs > 0)
            {
                configuration.SetOption(ChannelOption.ValueOf<int>("TCP_USER_TIMEOUT"), options.UserTimeoutMs);
            }
        }
        catch (SocketException ex)
        {
            ConnectionLog.TcpTimeoutsNotApplied(logger, ex.SocketErrorCode);
        }
    }

    /// <summary>Applies the options to a connected socket.</summary>
    public void Apply(Socket socket)
    {
        try
        {
            if (options.KeepAliveTimeSeconds > 0)
            {
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
                socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, options.KeepAliveTimeSeconds);
                socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, options.KeepAliveIntervalSeconds);
                socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, options.KeepAliveRetryCount);
            }

            if (options.UserTimeoutMs > 0)
            {
                if (OperatingSystem.IsLinux())
                {
                    Span<byte> value = stackalloc byte[sizeof(int)];
                    BitConverter.TryWriteBytes(value, options.UserTimeoutMs);
                    socket.SetRawSocketOption(IpProtoTcp, TcpUserTimeout, value);
                }
                else if (Interlocked.Exchange(ref userTimeoutUnsupportedLogged, 1) == 0)
                {
                    ConnectionLog.UserTimeoutUnavailable(logger);
                }
            }
        }
        catch (SocketException ex)
        {
            // The peer may already be gone; the close path will say so. Nothing to tune on a dead socket.
            ConnectionLog.TcpTimeoutsNotApplied(logger, ex.SocketErrorCode);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Reads TCP_USER_TIMEOUT back (Linux), for checks and diagnostics.</summary>
    public static int ReadUserTimeoutMs(Socket socket)
    {
        Span<byte> value = stackalloc byte[sizeof(int)];
        socket.GetRawSocketOption(IpProtoTcp, TcpUserTimeout, value);
        return BitConverter.ToInt32(value);
    }
}
