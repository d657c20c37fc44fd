using System.Net.Sockets;
using System.Text;

namespace GameServer.Tests.Infrastructure;

/// <summary>HAProxy's runtime API (<c>show stat</c>) over its Unix socket: one row per proxy and server, by column name.</summary>
public static class HaproxyStats
{
    public static async Task<IReadOnlyList<Dictionary<string, string>>> ReadAsync(string socketPath)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        await socket.SendAsync(Encoding.ASCII.GetBytes("show stat\n"), SocketFlags.None);
        var text = new StringBuilder();
        var buffer = new byte[8192];
        int read;
        while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None)) > 0)
        {
            text.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        var lines = text.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var header = lines[0].TrimStart('#', ' ').Split(',');
        return [.. lines.Skip(1).Select(l => l.Split(',')).Select(fields => header
            .Select((name, i) => (name, value: i < fields.Length ? fields[i] : string.Empty))
            .Where(c => c.name.Length > 0)
            .ToDictionary(c => c.name, c => c.value, StringComparer.Ordinal))];
    }
}
