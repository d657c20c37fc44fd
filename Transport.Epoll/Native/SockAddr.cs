using System.Net;
using System.Net.Sockets;

namespace Transport.Epoll.Native;

/// <summary>
/// IP end points to and from native <c>sockaddr</c> bytes. On Linux, .NET's <see cref="SocketAddress"/> buffer is
/// the native layout (the runtime passes it to the kernel as is), so it does the byte work for us.
/// </summary>
internal static unsafe class SockAddr
{
    public const int MaxSize = 128;

    public static int Write(EndPoint endPoint, byte* buffer)
    {
        if (endPoint is not IPEndPoint ip)
        {
            throw new ArgumentException($"the epoll transport takes IP end points only, not {endPoint.GetType().Name} (resolve names first)", nameof(endPoint));
        }

        var address = ip.Serialize();
        address.Buffer.Span[..address.Size].CopyTo(new Span<byte>(buffer, MaxSize));
        return address.Size;
    }

    public static IPEndPoint Read(byte* buffer, int length)
    {
        var family = *(ushort*)buffer == LibC.AF_INET6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
        var address = new SocketAddress(family, length);
        new ReadOnlySpan<byte>(buffer, length).CopyTo(address.Buffer.Span);
        return (IPEndPoint)new IPEndPoint(IPAddress.Any, 0).Create(address);
    }

    public static IPEndPoint? LocalOf(int fd)
    {
        var buffer = stackalloc byte[MaxSize];
        var length = MaxSize;
        return LibC.getsockname(fd, buffer, &length) == 0 ? Read(buffer, length) : null;
    }

    public static IPEndPoint? RemoteOf(int fd)
    {
        var buffer = stackalloc byte[MaxSize];
        var length = MaxSize;
        return LibC.getpeername(fd, buffer, &length) == 0 ? Read(buffer, length) : null;
    }
}
