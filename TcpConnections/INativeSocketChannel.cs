using DotNetty.Transport.Channels;

namespace TcpConnections;

/// <summary>
/// A transport capability: a channel over a native socket descriptor (Transport.Epoll), so the kernel's view of the
/// connection (TCP_INFO) can be read without a .NET <see cref="System.Net.Sockets.Socket"/>. Read it on the channel's
/// event loop only: there the descriptor cannot be closed, and its number reused, under the call.
/// </summary>
public interface INativeSocketChannel : IChannel
{
    /// <summary>The socket's descriptor, or -1 once closed.</summary>
    int FileDescriptor { get; }
}
