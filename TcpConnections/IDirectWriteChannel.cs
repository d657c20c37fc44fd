using DotNetty.Buffers;

namespace TcpConnections;

/// <summary>
/// A channel that can hand bytes straight to its socket from its event loop, past the pipeline: for a server that
/// sends one pre-encoded frame to many connections every tick, where the pipeline's per-write machinery (a task per
/// write, a hop per outbound handler, the flush path) costs as much as the send itself. Only when nothing is queued
/// ahead, so the bytes keep their order with everything written through the pipeline.
/// </summary>
public interface IDirectWriteChannel
{
    /// <summary>
    /// On the channel's event loop: sends the readable bytes of <paramref name="data"/> now, if the channel is open
    /// for writing and nothing is queued ahead of them. False: nothing was sent (write through the pipeline instead;
    /// it queues them behind what is ahead, or meets the same state). When the socket takes only part, the rest is
    /// queued ahead of any later write and goes out as room comes. A send error is handled as one in a flush is (the
    /// pipeline hears the cause, the channel closes) and the bytes count as taken. <paramref name="data"/> stays the
    /// caller's: its reader index is not moved and it is not released.
    /// </summary>
    bool TryWriteNow(IByteBuffer data);

    /// <summary>
    /// How many steps <see cref="PrefetchForWrite"/> takes to bring in what <see cref="TryWriteNow"/> reads: one per
    /// object in the chain from the channel, as each step reads a reference the step before brought in.
    /// </summary>
    int PrefetchSteps => 0;

    /// <summary>
    /// Starts loading step <paramref name="step"/> (0 = the channel itself) of what <see cref="TryWriteNow"/> reads;
    /// a caller about to write to many channels calls each step some work after the one before, so it has arrived.
    /// A hint only: any thread, any state, no effect but on timing. Both default to nothing, for a transport that has
    /// not measured what it reads.
    /// </summary>
    void PrefetchForWrite(int step)
    {
    }
}
