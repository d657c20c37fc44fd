using DotNetty.Buffers;
using DotNetty.Common.Utilities;
using DotNetty.Transport.Channels;

namespace TcpConnections;

/// <summary>
/// Two token buckets per connection, on frames and on bytes. A peer that empties either bucket is closed
/// gracefully as <see cref="CloseReason.RateLimited"/> with the protocol's error message first, and nothing it sent after that is
/// passed on. Place it right after the frame decoder, so a flood costs no deserialisation.
/// </summary>
public sealed class RateLimitHandler : ChannelHandlerAdapter
{
    private readonly LimitsOptions options;
    private readonly IConnectionProtocol? protocol;
    private readonly TimeProvider time;
    private double frameTokens;
    private double byteTokens;
    private long lastRefill;
    private bool limited;

    public RateLimitHandler(LimitsOptions options, IConnectionProtocol? protocol = null, TimeProvider? time = null)
    {
        this.options = options.ThrowIfInvalid();
        this.protocol = protocol;
        this.time = time ?? TimeProvider.System;
        frameTokens = options.FrameBurst;
        byteTokens = options.ByteBurst;
        lastRefill = this.time.GetTimestamp();
    }

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        if (limited)
        {
            ReferenceCountUtil.Release(message);
            return;
        }

        var bytes = message is IByteBuffer buffer ? buffer.ReadableBytes + FrameDecoder.HeaderBytes : 0;
        Refill();
        frameTokens -= 1;
        byteTokens -= bytes;
        if (frameTokens < 0 || byteTokens < 0)
        {
            limited = true;
            ReferenceCountUtil.Release(message);
            var text = frameTokens < 0
                ? $"more than {options.FramesPerSecond} frames/s (burst {options.FrameBurst})"
                : $"more than {options.BytesPerSecond} bytes/s (burst {options.ByteBurst})";
            _ = TcpConnection.Of(context.Channel).CloseGracefullyAsync(
                CloseReason.RateLimited, _ => protocol?.CreateError(CloseReason.RateLimited.Name, text), text);
            return;
        }

        context.FireChannelRead(message);
    }

    private void Refill()
    {
        var now = time.GetTimestamp();
        var seconds = time.GetElapsedTime(lastRefill, now).TotalSeconds;
        lastRefill = now;
        frameTokens = Math.Min(options.FrameBurst, frameTokens + (seconds * options.FramesPerSecond));
        byteTokens = Math.Min(options.ByteBurst, byteTokens + (seconds * options.BytesPerSecond));
    }
}
