using System.Net.Sockets;

namespace Tests.Shared;

/// <summary>Reads on a plain socket, shared by the transport test projects (linked into each as source).</summary>
internal static class SocketReads
{
    /// <summary>Exactly <paramref name="count"/> bytes, each read bounded by <paramref name="timeout"/>; end of stream first is an error.</summary>
    public static async Task<byte[]> ReceiveExactlyAsync(Socket socket, int count, TimeSpan timeout)
    {
        var buffer = new byte[count];
        var offset = 0;
        while (offset < count)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(offset)).AsTask().WaitAsync(timeout);
            if (read == 0)
            {
                throw new InvalidOperationException($"end of stream after {offset} of {count} bytes");
            }

            offset += read;
        }

        return buffer;
    }
}
