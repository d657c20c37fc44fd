using System.Net.Sockets;

namespace Transport.Epoll.Tests;

/// <summary>The errno survives next to the <see cref="SocketError"/> handlers written for the stock transport read.</summary>
public class EpollSocketExceptionTests
{
    [Theory]
    [InlineData(104, SocketError.ConnectionReset)]
    [InlineData(32, SocketError.Shutdown)]
    [InlineData(110, SocketError.TimedOut)]
    [InlineData(112, SocketError.HostDown)]
    [InlineData(113, SocketError.HostUnreachable)]
    public void CommonErrnos_MapToTheirSocketError_AndReadBackAsTheSameNativeErrorCode(int errno, SocketError expected)
    {
        var error = new EpollSocketException(errno);
        Assert.Equal(expected, error.SocketErrorCode);
        Assert.Equal(errno, error.NativeErrorCode);
        Assert.Equal(errno, error.Errno);
    }

    [Theory]
    [InlineData(24, SocketError.TooManyOpenSockets)] // EMFILE: NativeErrorCode would say ENFILE (23)
    [InlineData(9, SocketError.OperationAborted)] // EBADF: NativeErrorCode would say ECANCELED (125)
    [InlineData(12, SocketError.SocketError)] // ENOMEM: no SocketError of its own
    public void ErrnosDotNetCannotRoundTrip_AreKeptInErrno_AndNamedInTheMessage(int errno, SocketError expected)
    {
        var error = new EpollSocketException(errno);
        Assert.Equal(expected, error.SocketErrorCode);
        Assert.Equal(errno, error.Errno);
        Assert.Contains($"(errno {errno})", error.Message, StringComparison.Ordinal);
    }
}
