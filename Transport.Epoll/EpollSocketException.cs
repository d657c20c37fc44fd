using System.Net.Sockets;
using System.Runtime.InteropServices;
using TcpConnections;
using Transport.Epoll.Native;

namespace Transport.Epoll;

/// <summary>
/// A <see cref="SocketException"/> that keeps the errno it came from. Handlers written for the stock transport read
/// <see cref="SocketException.SocketErrorCode"/> and find what they expect; but .NET rebuilds
/// <see cref="System.ComponentModel.Win32Exception.NativeErrorCode"/> from that code, which loses some errnos (EMFILE
/// reads back as ENFILE, EBADF as ECANCELED, one without a <see cref="SocketError"/> as -131074). <see cref="Errno"/>
/// is the number the kernel returned, and the connection library reads it through <see cref="IErrnoException"/>.
/// </summary>
public sealed class EpollSocketException : SocketException, IErrnoException
{
    public EpollSocketException(int errno, bool onWrite = false)
        : base((int)Native.Errno.ToSocketError(errno), $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})")
    {
        Errno = errno;
        OnWrite = onWrite;
    }

    /// <summary>True when the failed call was a send.</summary>
    public bool OnWrite { get; }

    /// <summary>The errno, as the failed call set it.</summary>
    public int Errno { get; }
}
