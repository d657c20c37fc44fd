namespace TcpConnections;

/// <summary>
/// A transport capability: an exception that knows the exact errno of the call that failed. .NET rebuilds
/// <see cref="System.Net.Sockets.SocketException.NativeErrorCode"/> from its <c>SocketError</c>, which loses some
/// errnos; a transport that calls the kernel itself (Transport.Epoll) keeps the real number, and the close record
/// shows it.
/// </summary>
public interface IErrnoException
{
    /// <summary>The errno, as the failed call set it.</summary>
    int Errno { get; }

    /// <summary>
    /// True when the failed call was a send: a write error is classified as one (an errno with no close reason of its
    /// own is <c>broken_pipe</c> on a write, <c>peer_reset</c> on a read), wherever the pipeline hears of it.
    /// </summary>
    bool OnWrite => false;
}
