using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using GameProtocol;

namespace GameServer.Tests.Infrastructure;

/// <summary>A raw socket speaking the documented wire format by hand, independent of the project's codec.</summary>
public sealed class Wire : IDisposable
{
    public Wire(Socket socket) => Socket = socket;

    public Socket Socket { get; }

    public static async Task<Wire> ConnectAsync(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint);
        return new Wire(socket);
    }

    public static byte[] Frame(byte[] payload)
    {
        var frame = new byte[4 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame, (uint)payload.Length);
        payload.CopyTo(frame, 4);
        return frame;
    }

    public static byte[] Frame(IMessage message) => Frame(ProtocolSerializer.Serialize(message));

    public Task SendAsync(IMessage message) => SendRawAsync(Frame(message));

    public async Task SendRawAsync(byte[] bytes) => await Socket.SendAsync(bytes, SocketFlags.None);

    /// <summary>
    /// Reads one frame; null at end of stream. Socket errors surface as <see cref="SocketException"/>; the timeout, or
    /// <paramref name="stop"/>, as <see cref="OperationCanceledException"/>.
    /// </summary>
    public async Task<IMessage?> ReceiveAsync(TimeSpan? timeout = null, CancellationToken stop = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(stop);
        cts.CancelAfter(timeout ?? TimeSpan.FromSeconds(15));
        var header = new byte[4];
        if (!await ReadExactlyAsync(header, cts.Token))
        {
            return null;
        }

        var payload = new byte[BinaryPrimitives.ReadUInt32BigEndian(header)];
        if (!await ReadExactlyAsync(payload, cts.Token))
        {
            throw new EndOfStreamException("end of stream inside a frame");
        }

        return ProtocolSerializer.Deserialize(payload);
    }

    /// <summary>Reads frames until end of stream, then answers the FIN with ours, as a well-behaved peer does.</summary>
    public async Task<List<IMessage>> ReceiveUntilEndAsync(TimeSpan? timeout = null)
    {
        var all = new List<IMessage>();
        while (await ReceiveAsync(timeout) is { } message)
        {
            all.Add(message);
        }

        try
        {
            Socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
            // already reset: nothing to answer
        }

        return all;
    }

    /// <summary>
    /// Reads whatever has already arrived, then closes. Data left unread at close makes the kernel send RST instead
    /// of FIN; on a loaded machine a paced frame can land between the test's last read and its close.
    /// </summary>
    public async Task CloseAfterDrainingAsync()
    {
        while (Socket.Available > 0)
        {
            await ReceiveAsync();
        }

        Socket.Close();
    }

    public void Dispose() => Socket.Dispose();

    private async Task<bool> ReadExactlyAsync(byte[] buffer, CancellationToken cancellationToken)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await Socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cancellationToken);
            if (n == 0)
            {
                return read == 0 ? false : throw new EndOfStreamException("end of stream inside a frame");
            }

            read += n;
        }

        return true;
    }
}
