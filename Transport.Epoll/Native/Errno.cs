using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Transport.Epoll.Native;

/// <summary>
/// Turns an errno into the <see cref="SocketException"/> the stock transport would have thrown, so handlers written
/// for it (a close classifier reading <see cref="SocketException.SocketErrorCode"/>) need no case for this one; the
/// exact errno stays in <see cref="EpollSocketException.Errno"/>.
/// </summary>
internal static class Errno
{
    public const int EPIPE = 32;
    public const int ECONNRESET = 104;

    public static int Last => Marshal.GetLastPInvokeError();

    public static EpollSocketException ToException(int errno, bool onWrite = false) => new(errno, onWrite);

    public static SocketError ToSocketError(int errno) => errno switch
    {
        0 => SocketError.Success,
        4 => SocketError.Interrupted,
        9 => SocketError.OperationAborted,    // EBADF: the socket was closed under the call
        11 => SocketError.WouldBlock,
        13 => SocketError.AccessDenied,
        22 => SocketError.InvalidArgument,
        24 or 23 => SocketError.TooManyOpenSockets,
        32 => SocketError.Shutdown,           // EPIPE: writing after the peer (or we) shut the connection
        97 => SocketError.AddressFamilyNotSupported,
        98 => SocketError.AddressAlreadyInUse,
        99 => SocketError.AddressNotAvailable,
        100 => SocketError.NetworkDown,
        101 => SocketError.NetworkUnreachable,
        102 => SocketError.NetworkReset,
        103 => SocketError.ConnectionAborted,
        104 => SocketError.ConnectionReset,
        105 => SocketError.NoBufferSpaceAvailable,
        106 => SocketError.IsConnected,
        107 => SocketError.NotConnected,
        110 => SocketError.TimedOut,
        111 => SocketError.ConnectionRefused,
        112 => SocketError.HostDown,
        113 => SocketError.HostUnreachable,
        114 => SocketError.AlreadyInProgress,
        115 => SocketError.InProgress,
        _ => SocketError.SocketError,
    };
}
