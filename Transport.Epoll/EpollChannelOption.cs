using DotNetty.Transport.Channels;

namespace Transport.Epoll;

/// <summary>
/// Options the stock transport has no names for: TCP ones (seconds for keepalive, milliseconds for the timeout) and
/// the transport's own.
/// </summary>
public static class EpollChannelOption
{
    /// <summary>TCP_KEEPIDLE: seconds of silence before the first keepalive probe.</summary>
    public static readonly ChannelOption<int> TcpKeepIdle = ChannelOption.ValueOf<int>("TCP_KEEPIDLE");

    /// <summary>TCP_KEEPINTVL: seconds between keepalive probes.</summary>
    public static readonly ChannelOption<int> TcpKeepInterval = ChannelOption.ValueOf<int>("TCP_KEEPINTVL");

    /// <summary>TCP_KEEPCNT: unanswered probes before the connection is reset.</summary>
    public static readonly ChannelOption<int> TcpKeepCount = ChannelOption.ValueOf<int>("TCP_KEEPCNT");

    /// <summary>TCP_USER_TIMEOUT: milliseconds sent data may stay unacknowledged before the connection is dropped.</summary>
    public static readonly ChannelOption<int> TcpUserTimeout = ChannelOption.ValueOf<int>("TCP_USER_TIMEOUT");

    /// <summary>
    /// The most bytes one gathering write (sendmsg) takes from the head of the backlog; at least one buffer is always
    /// taken. Bounds the work of a pass over a deep backlog. Default 1 MiB.
    /// </summary>
    public static readonly ChannelOption<int> MaxBytesPerGatheringWrite = ChannelOption.ValueOf<int>("EPOLL_MAX_BYTES_PER_GATHERING_WRITE");
}
