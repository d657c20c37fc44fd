using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using Transport.Epoll.Native;

namespace Transport.Epoll;

/// <summary>
/// Socket options of an epoll connection, set with setsockopt on its descriptor. Options set before a client channel
/// has its socket (a bootstrap sets them before connect) are kept and applied when the socket is made.
/// </summary>
public sealed unsafe class EpollSocketChannelConfig : DefaultChannelConfiguration, ISocketChannelConfiguration
{
    // The options that are one int (or bool) setsockopt each.
    private static readonly Dictionary<ChannelOption, (int Level, int Name)> IntOptions = new(ReferenceEqualityComparer.Instance)
    {
        [ChannelOption.SoRcvbuf] = (LibC.SOL_SOCKET, LibC.SO_RCVBUF),
        [ChannelOption.SoSndbuf] = (LibC.SOL_SOCKET, LibC.SO_SNDBUF),
        [ChannelOption.SoKeepalive] = (LibC.SOL_SOCKET, LibC.SO_KEEPALIVE),
        [ChannelOption.SoReuseaddr] = (LibC.SOL_SOCKET, LibC.SO_REUSEADDR),
        [ChannelOption.TcpNodelay] = (LibC.IPPROTO_TCP, LibC.TCP_NODELAY),
        [EpollChannelOption.TcpKeepIdle] = (LibC.IPPROTO_TCP, LibC.TCP_KEEPIDLE),
        [EpollChannelOption.TcpKeepInterval] = (LibC.IPPROTO_TCP, LibC.TCP_KEEPINTVL),
        [EpollChannelOption.TcpKeepCount] = (LibC.IPPROTO_TCP, LibC.TCP_KEEPCNT),
        [EpollChannelOption.TcpUserTimeout] = (LibC.IPPROTO_TCP, LibC.TCP_USER_TIMEOUT),
    };

    private readonly EpollSocketChannel channel;
    private readonly List<Action<int>> pending = [];
    private volatile bool allowHalfClosure;
    private volatile int maxBytesPerGatheringWrite = DefaultMaxBytesPerGatheringWrite;

    /// <summary>Larger than a loopback socket's send buffer takes in one call, small enough to bound one pass.</summary>
    public const int DefaultMaxBytesPerGatheringWrite = 1 << 20;

    public EpollSocketChannelConfig(EpollSocketChannel channel)
        : base(channel)
    {
        this.channel = channel;
        if (channel.FileDescriptor >= 0)
        {
            TcpNoDelay = true; // as Netty does for accepted connections: games send small frames
        }
    }

    public bool AllowHalfClosure
    {
        get => allowHalfClosure;
        set => allowHalfClosure = value;
    }

    /// <inheritdoc cref="EpollChannelOption.MaxBytesPerGatheringWrite"/>
    public int MaxBytesPerGatheringWrite
    {
        get => maxBytesPerGatheringWrite;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            maxBytesPerGatheringWrite = value;
        }
    }

    public int ReceiveBufferSize
    {
        get => Get(LibC.SOL_SOCKET, LibC.SO_RCVBUF);
        set => Set(LibC.SOL_SOCKET, LibC.SO_RCVBUF, value);
    }

    public int SendBufferSize
    {
        get => Get(LibC.SOL_SOCKET, LibC.SO_SNDBUF);
        set => Set(LibC.SOL_SOCKET, LibC.SO_SNDBUF, value);
    }

    /// <summary>SO_LINGER in seconds; -1 is off. 0 makes close() send RST and drop what is unsent: an abortive close.</summary>
    public int Linger
    {
        get
        {
            var fd = channel.FileDescriptor;
            if (fd < 0)
            {
                return -1;
            }

            LibC.Linger linger;
            var size = sizeof(LibC.Linger);
            return LibC.getsockopt(fd, LibC.SOL_SOCKET, LibC.SO_LINGER, &linger, &size) == 0 && linger.OnOff != 0 ? linger.Seconds : -1;
        }

        set => Apply(fd =>
        {
            var linger = new LibC.Linger { OnOff = value >= 0 ? 1 : 0, Seconds = Math.Max(0, value) };
            Check(LibC.setsockopt(fd, LibC.SOL_SOCKET, LibC.SO_LINGER, &linger, sizeof(LibC.Linger)));
        });
    }

    public bool KeepAlive
    {
        get => Get(LibC.SOL_SOCKET, LibC.SO_KEEPALIVE) != 0;
        set => Set(LibC.SOL_SOCKET, LibC.SO_KEEPALIVE, value ? 1 : 0);
    }

    public bool ReuseAddress
    {
        get => Get(LibC.SOL_SOCKET, LibC.SO_REUSEADDR) != 0;
        set => Set(LibC.SOL_SOCKET, LibC.SO_REUSEADDR, value ? 1 : 0);
    }

    public bool TcpNoDelay
    {
        get => Get(LibC.IPPROTO_TCP, LibC.TCP_NODELAY) != 0;
        set => Set(LibC.IPPROTO_TCP, LibC.TCP_NODELAY, value ? 1 : 0);
    }

    public override T GetOption<T>(ChannelOption<T> option)
    {
        if (IntOptions.TryGetValue(option, out var o))
        {
            var value = Get(o.Level, o.Name);
            return typeof(T) == typeof(bool) ? (T)(object)(value != 0) : (T)(object)value;
        }

        if (ReferenceEquals(option, ChannelOption.SoLinger))
        {
            return (T)(object)Linger;
        }

        if (ReferenceEquals(option, ChannelOption.AllowHalfClosure))
        {
            return (T)(object)AllowHalfClosure;
        }

        if (ReferenceEquals(option, EpollChannelOption.MaxBytesPerGatheringWrite))
        {
            return (T)(object)MaxBytesPerGatheringWrite;
        }

        return base.GetOption(option);
    }

    public override bool SetOption<T>(ChannelOption<T> option, T value)
    {
        Validate(option, value);
        object boxed = value!;
        if (IntOptions.TryGetValue(option, out var o))
        {
            Set(o.Level, o.Name, boxed is bool on ? (on ? 1 : 0) : (int)boxed);
        }
        else if (ReferenceEquals(option, ChannelOption.SoLinger))
        {
            Linger = (int)boxed;
        }
        else if (ReferenceEquals(option, ChannelOption.AllowHalfClosure))
        {
            AllowHalfClosure = (bool)boxed;
        }
        else if (ReferenceEquals(option, EpollChannelOption.MaxBytesPerGatheringWrite))
        {
            MaxBytesPerGatheringWrite = (int)boxed;
        }
        else
        {
            return base.SetOption(option, value);
        }

        return true;
    }

    protected override void AutoReadCleared() => channel.StopReadingSoon();

    /// <summary>Applies the options set before the socket existed. Called once the client socket is made.</summary>
    internal void ApplyPending()
    {
        foreach (var apply in pending)
        {
            apply(channel.FileDescriptor);
        }

        pending.Clear();
    }

    private int Get(int level, int name)
    {
        var fd = channel.FileDescriptor;
        if (fd < 0)
        {
            return 0;
        }

        int value;
        var size = sizeof(int);
        Check(LibC.getsockopt(fd, level, name, &value, &size));
        return value;
    }

    private void Set(int level, int name, int value) => Apply(fd =>
    {
        var copy = value;
        Check(LibC.setsockopt(fd, level, name, &copy, sizeof(int)));
    });

    private void Apply(Action<int> apply)
    {
        var fd = channel.FileDescriptor;
        if (fd >= 0)
        {
            apply(fd);
        }
        else
        {
            pending.Add(apply);
        }
    }

    private static void Check(int result)
    {
        if (result != 0)
        {
            throw Errno.ToException(Errno.Last);
        }
    }
}
