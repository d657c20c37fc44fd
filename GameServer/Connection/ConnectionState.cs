using System.Diagnostics;
using System.Net;
using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;

namespace GameServer.Connection;

/// <summary>Where a connection is in its life. Only moves forward.</summary>
public enum ConnectionPhase
{
    Open,

    /// <summary>A graceful close is under way: Goodbye sent, write side shut, reading until FIN or the deadline.</summary>
    Draining,

    Closed,
}

/// <summary>
/// Per-connection facts kept on the channel: identity, counters and the first close cause. Written only on the
/// channel's event loop, so it needs no locks; other threads may read the counters for reports.
/// </summary>
public sealed class ConnectionState
{
    private static readonly AttributeKey<ConnectionState> Key = AttributeKey<ConnectionState>.ValueOf("gameserver.connection");
    private static long nextId;

    private readonly TaskCompletionSource<ConnectionClosedEvent> closed =
        new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ConnectionState(IChannel channel)
    {
        Channel = channel;
        Id = $"c{Interlocked.Increment(ref nextId):x6}";
        RemoteEndPoint = FormatEndPoint(channel.RemoteAddress);
        OpenedAt = Stopwatch.GetTimestamp();
    }

    public IChannel Channel { get; }

    /// <summary>A short id unique in this process, used in every log scope.</summary>
    public string Id { get; }

    public string RemoteEndPoint { get; }

    public long OpenedAt { get; }

    public ConnectionPhase Phase { get; internal set; }

    public long FramesReceived { get; internal set; }

    public long FramesSent { get; internal set; }

    public long BytesReceived { get; internal set; }

    public long BytesSent { get; internal set; }

    /// <summary>The first recorded cause; null while nothing has ended the connection.</summary>
    public CloseReason? Reason { get; private set; }

    /// <summary>The errno behind <see cref="Reason"/>, 0 when no socket error was involved.</summary>
    public int Errno { get; private set; }

    /// <summary>How long a graceful close waits for the peer's FIN; set by <see cref="CloseClassifier"/>.</summary>
    public TimeSpan DrainTimeout { get; internal set; } = TimeSpan.FromSeconds(5);

    internal DotNetty.Common.Concurrency.IScheduledTask? DrainTimer { get; set; }

    /// <summary>What the peer's Goodbye said it received from us, when it said goodbye.</summary>
    public long? PeerFramesReceived { get; set; }

    /// <summary>Free text for the log line (the protocol error, the Goodbye reason).</summary>
    public string? Detail { get; private set; }

    /// <summary>Completes once, when the connection has closed and its event has been raised.</summary>
    public Task<ConnectionClosedEvent> Closed => closed.Task;

    public TimeSpan Age => Stopwatch.GetElapsedTime(OpenedAt);

    /// <summary>Gets the state of a channel, creating it on first use.</summary>
    public static ConnectionState Of(IChannel channel)
    {
        var attribute = channel.GetAttribute(Key);
        var state = attribute.Get();
        if (state is null)
        {
            state = new ConnectionState(channel);
            if (!attribute.CompareAndSet(null!, state))
            {
                state = attribute.Get();
            }
        }

        return state!;
    }

    /// <summary>Gets the state if a handler has created it.</summary>
    public static ConnectionState? Find(IChannel channel) => channel.GetAttribute(Key).Get();

    /// <summary>Records why the connection ends. The first call wins; later calls return false and change nothing.</summary>
    public bool TrySetReason(CloseReason reason, int errno = 0, string? detail = null)
    {
        if (Reason is not null)
        {
            return false;
        }

        Reason = reason;
        Errno = errno;
        Detail = detail;
        return true;
    }

    internal void Complete(ConnectionClosedEvent evt)
    {
        Phase = ConnectionPhase.Closed;
        closed.TrySetResult(evt);
    }

    /// <summary>Prints IPv4-mapped IPv6 addresses as IPv4, which is what an operator expects to read.</summary>
    public static string FormatEndPoint(EndPoint? endPoint) => endPoint switch
    {
        IPEndPoint ip when ip.Address.IsIPv4MappedToIPv6 => new IPEndPoint(ip.Address.MapToIPv4(), ip.Port).ToString(),
        null => "-",
        _ => endPoint.ToString() ?? "-",
    };
}
