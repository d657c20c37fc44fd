using DotNetty.Buffers;
using DotNetty.Codecs;
using DotNetty.Transport.Channels.Embedded;
using GameProtocol;
using TcpConnections;
using GameProtocol.Pipeline;
using GameServer.Tests.Infrastructure;

namespace GameServer.Tests;

/// <summary>Framing edge cases, in process through the real decoder and codec.</summary>
public class FramingTests
{
    private static EmbeddedChannel NewChannel(int maxFrameBytes = 65536) =>
        new(new ConnectionHandler(), new FrameDecoder(maxFrameBytes), new MessageCodec());

    [Fact]
    public void FrameSplitOverManyReads_IsReassembled()
    {
        var channel = NewChannel();
        var frame = Wire.Frame(new Echo(9, Enumerable.Range(0, 300).Select(i => (byte)i).ToArray()));
        foreach (var b in frame)
        {
            channel.WriteInbound(Unpooled.WrappedBuffer([b]));
        }

        var echo = Assert.IsType<Echo>(channel.ReadInbound<IMessage>());
        Assert.Equal(9, echo.Seq);
        Assert.Equal(300, echo.Payload.Length);
        Assert.Null(channel.ReadInbound<IMessage>());
        Assert.Equal(1, TcpConnection.Of(channel).FramesReceived);
        Assert.Equal(frame.Length, TcpConnection.Of(channel).BytesReceived);
    }

    [Fact]
    public void ManyFramesInOneRead_AreAllDecodedInOrder()
    {
        var channel = NewChannel();
        var bytes = Enumerable.Range(0, 500).SelectMany(i => Wire.Frame(new Move(i, i, i))).ToArray();
        channel.WriteInbound(Unpooled.WrappedBuffer(bytes));
        for (var i = 0; i < 500; i++)
        {
            Assert.Equal(i, Assert.IsType<Move>(channel.ReadInbound<IMessage>()).Seq);
        }

        Assert.Equal(500, TcpConnection.Of(channel).FramesReceived);
    }

    [Fact]
    public void LengthZero_IsAProtocolError()
    {
        var channel = NewChannel();
        var ex = Assert.Throws<CorruptedFrameException>(() => channel.WriteInbound(Unpooled.WrappedBuffer(new byte[] { 0, 0, 0, 0 })));
        Assert.Contains("length 0", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LengthOverTheLimit_IsRejectedFromTheHeaderAlone()
    {
        var channel = NewChannel(maxFrameBytes: 1024);
        var ex = Assert.Throws<TooLongFrameException>(() => channel.WriteInbound(Unpooled.WrappedBuffer(new byte[] { 0, 0, 4, 1, 0x92 })));
        Assert.Contains("1025", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Forged4GbLength_AllocatesNothingAndDiscardsTheRest()
    {
        var channel = NewChannel();
        var before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Throws<TooLongFrameException>(() => channel.WriteInbound(Unpooled.WrappedBuffer(new byte[] { 0xff, 0xff, 0xff, 0xff, 1, 2, 3 })));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1_000_000, "a forged length must not allocate its size");

        // Everything after the bad header is discarded, even a well-formed frame.
        channel.WriteInbound(Unpooled.WrappedBuffer(Wire.Frame(new Ping(1, 1))));
        Assert.Null(channel.ReadInbound<IMessage>());
    }

    [Theory]
    [InlineData(16)] // copied behind its header: one buffer
    [InlineData(FramePrepender.CopyBelowBytes - 16)] // the largest payloads that are still copied
    [InlineData(FramePrepender.CopyBelowBytes + 1)] // its own buffer after a separate header
    [InlineData(60_000)]
    public void Prepender_WritesTheDocumentedHeader_SmallFramesInOneBuffer(int echoBytes)
    {
        var channel = new EmbeddedChannel(new ConnectionHandler(), new FramePrepender(65536), new MessageCodec());
        var message = new Echo(7, Enumerable.Range(0, echoBytes).Select(i => (byte)i).ToArray());
        channel.WriteOutbound(message);
        var buffers = new List<IByteBuffer>();
        while (channel.ReadOutbound<IByteBuffer>() is { } buffer)
        {
            buffers.Add(buffer);
        }

        var expected = Wire.Frame(message);
        Assert.Equal(expected.Length - 4 <= FramePrepender.CopyBelowBytes ? 1 : 2, buffers.Count);
        var bytes = buffers.SelectMany(b =>
        {
            var part = new byte[b.ReadableBytes];
            b.ReadBytes(part);
            b.Release();
            return part;
        }).ToArray();
        Assert.Equal(expected, bytes);
        Assert.Equal(1, TcpConnection.Of(channel).FramesSent);
    }

    [Fact]
    public void Prepender_RefusesAFrameOverTheLimit()
    {
        var channel = new EmbeddedChannel(new ConnectionHandler(), new FramePrepender(64), new MessageCodec());
        var ex = Assert.ThrowsAny<Exception>(() => channel.WriteOutbound(new Echo(1, new byte[100])));
        var inner = ex is AggregateException aggregate ? aggregate.InnerException : ex;
        Assert.IsType<EncoderException>(inner);
        Assert.Contains("exceeds the limit of 64 bytes", inner!.Message, StringComparison.Ordinal);
    }
}
