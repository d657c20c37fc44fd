using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;

namespace TcpConnections;

/// <summary>
/// Reaches the <see cref="Socket"/> under a stock DotNetty socket channel. DotNetty 0.7.6 keeps it in a protected
/// field and offers neither a true half-close nor a true abort: its <c>DoClose</c> always calls
/// <c>Shutdown(Both)</c>, which sends FIN before any RST. Both operations here must run on the channel's event loop.
/// A transport that half-closes properly (an <see cref="IDuplexChannel"/>, such as Transport.Epoll's) is driven through
/// <see cref="IDuplexChannel.ShutdownOutputAsync"/> and <see cref="ChannelOption.SoLinger"/> instead, and one over a
/// native descriptor (<see cref="INativeSocketChannel"/>) is asked for TCP_INFO through it.
/// </summary>
public static partial class SocketAccess
{
    private const int ShutWr = 1;

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "Socket")]
    private static extern ref Socket SocketField(AbstractSocketChannel channel);

    /// <summary>The underlying socket, or null for channels that have none (embedded, other transports).</summary>
    public static Socket? TryGetSocket(IChannel channel) =>
        channel is AbstractSocketChannel socketChannel ? SocketField(socketChannel) : null;

    /// <summary>
    /// Sends FIN after everything already handed to the kernel, keeps the read side open. Returns false when the
    /// transport has no socket to shut down or the socket is already gone.
    /// </summary>
    /// <remarks>
    /// On Unix this calls <c>shutdown(fd, SHUT_WR)</c> directly. <see cref="Socket.Shutdown"/> would also mark the
    /// .NET socket as disconnected, and DotNetty's read path treats a disconnected socket as end of stream: the next
    /// bytes from the peer would make it close at once with those bytes unread, which sends an RST (measured here).
    /// </remarks>
    public static bool TryShutdownOutput(IChannel channel)
    {
        var socket = TryGetSocket(channel);
        if (socket is null)
        {
            if (channel is IDuplexChannel { Active: true } duplex)
            {
                // A transport without the stock one's flaw: its own half-close is shutdown(SHUT_WR), done inline on the loop.
                return !duplex.ShutdownOutputAsync().IsFaulted;
            }

            return false;
        }

        try
        {
            if (OperatingSystem.IsWindows())
            {
                socket.Shutdown(SocketShutdown.Send);
                return true;
            }

            var handle = socket.SafeHandle;
            var added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                return Shutdown((int)handle.DangerousGetHandle(), ShutWr) == 0;
            }
            finally
            {
                if (added)
                {
                    handle.DangerousRelease();
                }
            }
        }
        catch (SocketException)
        {
            return false; // not connected any more: nothing to half-close
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>
    /// An abortive close: SO_LINGER {on, 0} then close, so the kernel discards queued data and sends RST at once.
    /// The channel still has to be closed afterwards to run DotNetty's bookkeeping; its <c>Shutdown(Both)</c> then
    /// meets a closed socket and sends nothing.
    /// </summary>
    public static bool TryAbort(IChannel channel)
    {
        var socket = TryGetSocket(channel);
        if (socket is null)
        {
            // Other transports close without a shutdown first, so SO_LINGER 0 makes their close an RST.
            return channel is ISocketChannel { Open: true } && channel.Configuration.SetOption(ChannelOption.SoLinger, 0);
        }

        try
        {
            socket.LingerState = new LingerOption(true, 0);
            socket.Close(0);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>
    /// Closes the socket without the <c>shutdown()</c> DotNetty would do first, so the kernel's own rule applies:
    /// with unread data in the receive buffer the close becomes an RST (the case a graceful close must avoid).
    /// </summary>
    public static bool TryCloseWithoutShutdown(IChannel channel)
    {
        var socket = TryGetSocket(channel);
        if (socket is null)
        {
            return false;
        }

        try
        {
            socket.Close();
            return true;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>
    /// Reads the kernel's view of the connection (TCP_INFO, Linux only): on the stock transport through the .NET socket,
    /// on a native transport (<see cref="INativeSocketChannel"/>) through the channel's descriptor. False when it cannot be known: another system, another
    /// transport, a closed socket, a kernel older than 4.6. Call it on the channel's event loop, where the descriptor
    /// cannot be closed (and its number reused) under the call.
    /// </summary>
    public static bool TryGetTcpInfo(IChannel channel, out TcpInfo info)
    {
        if (TryGetSocket(channel) is { } socket)
        {
            return TryGetTcpInfo(socket, out info);
        }

        if (OperatingSystem.IsLinux() && channel is INativeSocketChannel { Open: true, FileDescriptor: >= 0 and var fd })
        {
            return TryGetTcpInfo(fd, out info);
        }

        info = default;
        return false;
    }

    /// <summary>Reads TCP_INFO from a .NET socket (Linux only); false when it cannot be known.</summary>
    public static bool TryGetTcpInfo(Socket socket, out TcpInfo info)
    {
        info = default;
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        Span<byte> value = stackalloc byte[TcpInfo.BufferBytes];
        try
        {
            var length = socket.GetRawSocketOption(TcpInfo.IpProtoTcp, TcpInfo.OptionName, value);
            return TcpInfo.TryParse(value[..length], out info);
        }
        catch (SocketException)
        {
            return false;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    private static unsafe bool TryGetTcpInfo(int fd, out TcpInfo info)
    {
        var value = stackalloc byte[TcpInfo.BufferBytes];
        var length = TcpInfo.BufferBytes;
        if (GetSockOpt(fd, TcpInfo.IpProtoTcp, TcpInfo.OptionName, value, ref length) != 0)
        {
            info = default;
            return false;
        }

        return TcpInfo.TryParse(new ReadOnlySpan<byte>(value, Math.Min(length, TcpInfo.BufferBytes)), out info);
    }

    [LibraryImport("libc", EntryPoint = "shutdown", SetLastError = true)]
    private static partial int Shutdown(int fd, int how);

    [LibraryImport("libc", EntryPoint = "getsockopt", SetLastError = true)]
    private static unsafe partial int GetSockOpt(int fd, int level, int name, byte* value, ref int length);
}
