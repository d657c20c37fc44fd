using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Embedded;
using DotNetty.Transport.Channels.Sockets;
using GameProtocol;
using GameProtocol.Pipeline;
using TcpConnections;

namespace GameServer.Tests;

/// <summary>The connection library's structure: one owner, a head that records, a tail that judges, open reasons.</summary>
public class ConnectionLibraryTests
{
    private static EmbeddedChannel NewChannel(params IChannelHandler[] middle) =>
        new([new ConnectionHandler(), .. middle, new ConnectionTailHandler(GameConnectionProtocol.Instance)]);

    [Fact]
    public async Task AnExceptionFromAnyHandler_EndsInTheTail_AsInternalError_AndTheConnectionIsAborted()
    {
        var channel = NewChannel(new Throws(new InvalidOperationException("a bug")), new PassThrough());
        var connection = TcpConnection.Of(channel);

        channel.WriteInbound(new Move(1, 0, 0));

        var closed = await connection.Closed.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(CloseReason.InternalError, closed.Reason);
        Assert.Equal("a bug", closed.Detail);
        Assert.False(channel.Open);
        channel.CheckException(); // nothing reached DotNetty's own tail
    }

    [Fact]
    public async Task AProtocolErrorThrownAboveTheCodec_ClosesGracefully_WithTheProtocolsErrorFirst()
    {
        var channel = NewChannel(new Throws(new ProtocolViolationException(ProtocolErrorCodes.InvalidArgument, "bad move")));
        var connection = TcpConnection.Of(channel);

        channel.WriteInbound(new Move(1, float.NaN, 0));

        var closed = await connection.Closed.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(CloseReason.ProtocolError, closed.Reason);
        Assert.Equal($"{ProtocolErrorCodes.InvalidArgument}: bad move", closed.Detail);
        var error = Assert.IsType<Error>(channel.ReadOutbound<object>());
        Assert.Equal(ProtocolErrorCodes.InvalidArgument, error.Code);
        channel.CheckException();
    }

    [Fact]
    public async Task ThePeersFin_ThatNoHandlerAnswers_IsAnsweredByTheTail_WithAGracefulClose()
    {
        var channel = NewChannel(new PassThrough());
        var connection = TcpConnection.Of(channel);

        channel.Pipeline.FireUserEventTriggered(ChannelInputShutdownEvent.Instance);

        var closed = await connection.Closed.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(CloseReason.PeerClosed, closed.Reason);
        Assert.False(channel.Open);
    }

    [Fact]
    public async Task ThePeersFin_WhileOurFarewellIsStillFlushing_WaitsForTheFlush_ThenCloses()
    {
        var hold = new HoldWrites();
        var channel = NewChannel(hold);
        var connection = TcpConnection.Of(channel);
        _ = connection.CloseGracefullyAsync(CloseReason.LocalClose, _ => new Goodbye("local_close", 0));

        // The peer's FIN (a half-closing transport) while the Goodbye waits in the channel, not yet in the kernel.
        channel.Pipeline.FireUserEventTriggered(ChannelInputShutdownEvent.Instance);
        Assert.True(channel.Open, "the FIN closed the connection before the promised Goodbye was flushed");

        hold.Release();
        var closed = await connection.Closed.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(CloseReason.LocalClose, closed.Reason);
        Assert.IsType<Goodbye>(channel.ReadOutbound<object>());
        Assert.False(channel.Open);
    }

    [Fact]
    public async Task ADecoderErrorTheProtocolDoesNotKnow_IsOurFault_NotThePeers()
    {
        var channel = NewChannel(new Throws(new DotNetty.Codecs.DecoderException(new FormatException("a decoder bug"))));
        var connection = TcpConnection.Of(channel);

        channel.WriteInbound(new Move(1, 0, 0));

        var closed = await connection.Closed.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(CloseReason.InternalError, closed.Reason);
        Assert.Null(channel.ReadOutbound<object>()); // no Error frame with an empty code
    }

    [Fact]
    public async Task TheFirstReasonWins_AndTheCloseRecordCarriesIt()
    {
        var channel = NewChannel();
        var connection = TcpConnection.Of(channel);

        Assert.True(connection.TrySetReason(GameCloseReasons.ClientGoodbye, "bye"));
        Assert.False(connection.TrySetReason(CloseReason.ProtocolError));
        var closed = await connection.CloseAsync(CloseReason.LocalClose, "ignored").WaitAsync(TimeSpan.FromSeconds(5));

        Assert.Equal(GameCloseReasons.ClientGoodbye, closed.Reason);
        Assert.Equal("bye", closed.Detail);
        Assert.Equal(ConnectionPhase.Closed, connection.Phase);
    }

    [Fact]
    public void AChannelWithoutTheConnectionHandler_HasNoConnection_AndSaysWhatIsMissing()
    {
        var channel = new EmbeddedChannel(new PassThrough());
        Assert.Null(TcpConnection.Find(channel));
        var ex = Assert.Throws<InvalidOperationException>(() => TcpConnection.Of(channel));
        Assert.Contains(nameof(ConnectionHandler), ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnApplicationsOwnReasons_AreSnakeCase_NeverACoreName_AndEqualByName()
    {
        Assert.Throws<ArgumentException>(() => CloseReason.Define("Kicked Out", CloseKind.Abnormal));
        Assert.Throws<ArgumentException>(() => CloseReason.Define("peer_reset", CloseKind.Normal));
        var banned = CloseReason.Define("banned", CloseKind.Abnormal);
        Assert.Equal(banned, CloseReason.Define("banned", CloseKind.Abnormal));
        Assert.Equal("banned", banned.ToString());
        Assert.True(CloseReason.TryParse("banned", [banned], out var parsed) && parsed == banned);
        Assert.True(GameCloseReasons.TryParse("peer_reset", out var core) && core == CloseReason.PeerReset);
        Assert.False(GameCloseReasons.TryParse("banned", out _));
        Assert.All(CloseReason.Core, r => Assert.Matches("^[a-z][a-z0-9_]*$", r.Name));
        Assert.Equal(CloseReason.Core.Count, CloseReason.Core.Select(r => r.Name).Distinct().Count());
        Assert.Equal([CloseReason.InternalError], CloseReason.Core.Where(r => r.IsServerFault));
    }

    [Fact]
    public void HandlersTakingOptions_RejectInvalidOnes_NamingTheKey()
    {
        var ex = Assert.Throws<ArgumentException>(() => new HeartbeatHandler(new HeartbeatOptions { Misses = 0 }, GameConnectionProtocol.Instance));
        Assert.Contains("Heartbeat:Misses = '0' is invalid", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new ConnectionHandler(new ConnectionOptions { DrainTimeoutMs = 0 }));
    }

    private sealed class Throws(Exception exception) : ChannelHandlerAdapter
    {
        public override void ChannelRead(IChannelHandlerContext context, object message) => throw exception;
    }

    private sealed class PassThrough : ChannelHandlerAdapter;

    /// <summary>Keeps the writes that reach it until <see cref="Release"/>: a flush that has not reached the kernel yet.</summary>
    private sealed class HoldWrites : ChannelHandlerAdapter
    {
        private readonly List<(IChannelHandlerContext Context, object Message, TaskCompletionSource Done)> held = [];

        public override Task WriteAsync(IChannelHandlerContext context, object message)
        {
            var done = new TaskCompletionSource();
            held.Add((context, message, done));
            return done.Task;
        }

        public void Release()
        {
            foreach (var (context, message, done) in held)
            {
                _ = context.WriteAndFlushAsync(message);
                done.SetResult();
            }

            held.Clear();
        }
    }
}
