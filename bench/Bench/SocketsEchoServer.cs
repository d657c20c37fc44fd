using System.Net;
using System.Net.Sockets;

namespace Bench;

/// <summary>The plain .NET baseline: a byte echo on async Socket calls, one loop per connection, one buffer each.</summary>
internal static class SocketsEchoServer
{
    public static async Task RunAsync(int port, CancellationToken cancellationToken)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, port));
        listener.Listen(4096);
        Console.WriteLine($"listening on {port}");
        while (!cancellationToken.IsCancellationRequested)
        {
            var socket = await listener.AcceptAsync(cancellationToken);
            socket.NoDelay = true;
            _ = EchoAsync(socket);
        }
    }

    private static async Task EchoAsync(Socket socket)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            int read;
            while ((read = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None)) > 0)
            {
                await socket.SendAsync(buffer.AsMemory(0, read), SocketFlags.None);
            }
        }
        catch (SocketException)
        {
            // a peer that resets is the churn benchmark's normal case
        }
        finally
        {
            socket.Dispose();
        }
    }
}
