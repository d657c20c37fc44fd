using GameClient;
using GameProtocol;
using GameProtocol.Pipeline;
using TcpConnections;
using GameServer.Tests.Infrastructure;

namespace GameServer.Tests;

/// <summary>Bad input ends only the offending connection, with an Error frame first and the protocol_error reason.</summary>
public class ProtocolErrorTests
{
    public static TheoryData<byte[], string> BadInputs() => new()
    {
        { [0, 0, 0, 0], ProtocolErrorCodes.EmptyFrame },
        { [0xff, 0xff, 0xff, 0xff], ProtocolErrorCodes.FrameTooLarge },
        { Wire.Frame([0x92, 0x63, 0x90]), ProtocolErrorCodes.UnknownMessage },
        { Wire.Frame([0xc1]), ProtocolErrorCodes.BadMessage },
        { Wire.Frame(new Move(1, 1, 1)), ProtocolErrorCodes.HelloRequired },
        { Wire.Frame(new Hello(3, "x", null)), ProtocolErrorCodes.UnsupportedVersion },
        { Wire.Frame(new Hello(0, "x", null)), ProtocolErrorCodes.UnsupportedVersion },
        { Wire.Frame(new Hello(1, "", null)), ProtocolErrorCodes.InvalidArgument },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public async Task BadInput_GetsErrorThenGracefulClose_OthersCarryOn(byte[] bytes, string expectedCode)
    {
        await using var server = await TestServer.StartAsync();
        await using var bystander = await GameConnection.ConnectAsync(server.ClientOptions("bystander"));
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        var serverSide = await server.ServerSideOfAsync(wire.Socket.LocalEndPoint);
        await wire.SendRawAsync(bytes);

        var messages = await wire.ReceiveUntilEndAsync(); // ends with FIN, never a reset
        var error = Assert.IsType<Error>(messages[^1]);
        Assert.Equal(expectedCode, error.Code);
        var closed = await serverSide.Closed.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(CloseReason.ProtocolError, closed.Reason);
        Assert.StartsWith(expectedCode, closed.Detail, StringComparison.Ordinal);

        await bystander.SendAsync(new Echo(1, [42]));
        await Receive.NextAsync<Echo>(bystander);

        await bystander.GoodbyeAsync();
        await server.AssertAllClosedAsync();
    }

    [Theory]
    [InlineData(MessageTags.Welcome)]
    [InlineData(MessageTags.StateUpdate)]
    [InlineData(MessageTags.StreamItem)]
    [InlineData(MessageTags.Error)]
    public async Task ServerOnlyMessage_FromAClient_IsUnexpected(int tag)
    {
        await using var server = await TestServer.StartAsync();
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendAsync(new Hello(1, "x", null));
        IMessage message = tag switch
        {
            MessageTags.Welcome => new Welcome("s", 1, 1),
            MessageTags.StateUpdate => new StateUpdate(1, 1, []),
            MessageTags.StreamItem => new StreamItem(1, []),
            _ => new Error("x", "y"),
        };
        await wire.SendAsync(message);
        var messages = await wire.ReceiveUntilEndAsync();
        Assert.Equal(ProtocolErrorCodes.UnexpectedMessage, Assert.IsType<Error>(messages[^1]).Code);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task SecondHello_IsDuplicateHello()
    {
        await using var server = await TestServer.StartAsync();
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendAsync(new Hello(1, "x", null));
        await wire.SendAsync(new Hello(1, "x", null));
        var messages = await wire.ReceiveUntilEndAsync();
        Assert.IsType<Welcome>(messages[0]);
        Assert.Equal(ProtocolErrorCodes.DuplicateHello, Assert.IsType<Error>(messages[^1]).Code);
        await server.AssertAllClosedAsync();
    }

    [Fact]
    public async Task NoHelloInTime_IsHandshakeTimeout_WithAnErrorFrame()
    {
        await using var server = await TestServer.StartAsync("--Server:HandshakeTimeoutMs=300");
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        var serverSide = await server.ServerSideOfAsync(wire.Socket.LocalEndPoint);
        var messages = await wire.ReceiveUntilEndAsync();
        Assert.Equal(ProtocolErrorCodes.HandshakeTimeout, Assert.IsType<Error>(Assert.Single(messages)).Code);
        var closed = await serverSide.Closed.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(GameCloseReasons.HandshakeTimeout, closed.Reason);
        Assert.InRange(closed.Duration, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(10));
        await server.AssertAllClosedAsync();
    }
}
