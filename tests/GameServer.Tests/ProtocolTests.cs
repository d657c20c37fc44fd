using GameProtocol;

namespace GameServer.Tests;

/// <summary>The documented wire format cannot drift: golden bytes, every tag round-trips, bad payloads are errors.</summary>
public class ProtocolTests
{
    public static TheoryData<IMessage> EveryMessage() =>
    [
        new Hello(1, "bob", null),
        new Hello(1, "bob", "token"),
        new Welcome("s1", 5000, 1_700_000_000_000),
        new Ping(1, 1_700_000_000_000),
        new Pong(2, 1_700_000_000_001),
        new Echo(3, [1, 2, 3]),
        new JoinRoom("lobby"),
        new Move(4, 1.5f, -2.25f),
        new StateUpdate(5, 1_700_000_000_002, [new PlayerState("p1", 1, 2, 3), new PlayerState("p2", -1, -2, 4)]),
        new StreamRequest(10, 256, 0),
        new StreamItem(6, [9, 8, 7]),
        new Goodbye("bye", 42),
        new Error("bad_message", "nope"),
    ];

    [Theory]
    [MemberData(nameof(EveryMessage))]
    public void EveryTag_RoundTripsToTheSameBytes(IMessage message)
    {
        var bytes = ProtocolSerializer.Serialize(message);
        var back = ProtocolSerializer.Deserialize(bytes);
        Assert.Equal(message.GetType(), back.GetType());
        Assert.Equal(bytes, ProtocolSerializer.Serialize(back));
    }

    [Fact]
    public void EveryTag_IsTheDocumentedNumber()
    {
        var expected = new (IMessage Message, int Tag)[]
        {
            (new Hello(1, "a", null), 0), (new Welcome("s", 1, 1), 1), (new Ping(1, 1), 2), (new Pong(1, 1), 3),
            (new Echo(1, []), 4), (new JoinRoom("r"), 5), (new Move(1, 0, 0), 6), (new StateUpdate(1, 1, []), 7),
            (new StreamRequest(1, 1, 1), 8), (new StreamItem(1, []), 9), (new Goodbye("x", 1), 10), (new Error("c", "m"), 11),
        };
        foreach (var (message, tag) in expected)
        {
            var bytes = ProtocolSerializer.Serialize(message);
            Assert.Equal(0x92, bytes[0]); // [tag, body]
            Assert.Equal(tag, bytes[1]);
        }
    }

    [Fact]
    public void Hello_GoldenFrame()
    {
        byte[] golden = [0, 0, 0, 9, 0x92, 0x00, 0x93, 0x01, 0xa3, (byte)'b', (byte)'o', (byte)'b', 0xc0];
        Assert.Equal(golden, Infrastructure.Wire.Frame(new Hello(1, "bob", null)));
        Assert.Equal(new Hello(1, "bob", null), ProtocolSerializer.Deserialize(golden.AsMemory(4)));
    }

    [Fact]
    public void Echo_GoldenFrame()
    {
        byte[] golden = [0, 0, 0, 9, 0x92, 0x04, 0x92, 0x07, 0xc4, 0x03, 1, 2, 3];
        Assert.Equal(golden, Infrastructure.Wire.Frame(new Echo(7, [1, 2, 3])));
        var echo = Assert.IsType<Echo>(ProtocolSerializer.Deserialize(golden.AsMemory(4)));
        Assert.Equal(7, echo.Seq);
        Assert.Equal([1, 2, 3], echo.Payload);
    }

    [Fact]
    public void Goodbye_GoldenFrame()
    {
        byte[] golden = [0, 0, 0, 8, 0x92, 0x0a, 0x92, 0xa3, (byte)'b', (byte)'y', (byte)'e', 0x2a];
        Assert.Equal(golden, Infrastructure.Wire.Frame(new Goodbye("bye", 42)));
        Assert.Equal(new Goodbye("bye", 42), ProtocolSerializer.Deserialize(golden.AsMemory(4)));
    }

    /// <summary>The version 2 worked examples of docs/PROTOCOL.md, byte for byte.</summary>
    [Theory]
    [InlineData("00 00 00 0a 92 00 94 02 a3 62 6f 62 c0 00")]
    [InlineData("00 00 00 0d 92 00 94 02 a3 62 6f 62 a3 74 6f 6b 11")]
    [InlineData("00 00 00 1b 92 01 97 a2 73 31 cd 13 88 cf 00 00 01 8b cf e5 68 00 a3 74 6f 6b cd 75 30 c3 05")]
    [InlineData("00 00 00 0e 92 0d 93 01 00 92 04 92 07 c4 03 01 02 03")]
    [InlineData("00 00 00 04 92 0c 91 05")]
    [InlineData("00 00 00 1e 92 07 94 2a cf 00 00 01 8b cf e5 68 00 91 94 a2 73 31 ca 3f c0 00 00 ca c0 10 00 00 03 c3")]
    public void Version2_GoldenFrames(string hex)
    {
        IMessage expected = hex switch
        {
            _ when hex.StartsWith("00 00 00 0a", StringComparison.Ordinal) => new Hello(2, "bob", null, 0),
            _ when hex.StartsWith("00 00 00 0d", StringComparison.Ordinal) => new Hello(2, "bob", "tok", 17),
            _ when hex.StartsWith("00 00 00 1b", StringComparison.Ordinal) => new Welcome("s1", 5000, 1_700_000_000_000, "tok", 30000, Resumed: true, LastReceivedSeq: 5),
            _ when hex.StartsWith("00 00 00 0e", StringComparison.Ordinal) => new Reliable(1, 0, new Echo(7, [1, 2, 3])),
            _ when hex.StartsWith("00 00 00 04", StringComparison.Ordinal) => new Ack(5),
            _ => new StateUpdate(42, 1_700_000_000_000, [new PlayerState("s1", 1.5f, -2.25f, 3)], AfterGap: true),
        };
        var golden = Convert.FromHexString(hex.Replace(" ", string.Empty, StringComparison.Ordinal));
        Assert.Equal(golden, Infrastructure.Wire.Frame(expected));
        var read = ProtocolSerializer.Deserialize(golden.AsMemory(4));
        Assert.Equal(ProtocolSerializer.Serialize(expected), ProtocolSerializer.Serialize(read));
    }

    [Fact]
    public void Version1Shapes_AreUnchanged_ByVersion2Fields()
    {
        // Version 1 writers and readers see three fields in Hello, Welcome and StateUpdate, as before version 2.
        Assert.Equal(0x93, ProtocolSerializer.Serialize(new Hello(1, "bob", "ignored", 9))[2]);
        Assert.Equal(0x93, ProtocolSerializer.Serialize(new Welcome("s", 1, 2))[2]);
        Assert.Equal(0x93, ProtocolSerializer.Serialize(new StateUpdate(1, 2, []))[2]);
        var fromV1 = Assert.IsType<Welcome>(ProtocolSerializer.Deserialize(ProtocolSerializer.Serialize(new Welcome("s", 1, 2))));
        Assert.Null(fromV1.ResumeToken);
        Assert.False(fromV1.Resumed);
    }

    [Fact]
    public void Readers_AcceptAnyIntegerAndFloatWidth()
    {
        // Hello with protocolVersion as uint32 (0xce); Move with seq as int64 (0xd3) and coordinates as float64 (0xcb).
        byte[] hello = [0x92, 0x00, 0x93, 0xce, 0, 0, 0, 1, 0xa1, (byte)'x', 0xc0];
        Assert.Equal(new Hello(1, "x", null), ProtocolSerializer.Deserialize(hello));

        byte[] move =
        [
            0x92, 0x06, 0x93, 0xd3, 0, 0, 0, 0, 0, 0, 0, 5,
            0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, // 1.5
            0xcb, 0xc0, 0x02, 0, 0, 0, 0, 0, 0, // -2.25
        ];
        Assert.Equal(new Move(5, 1.5f, -2.25f), ProtocolSerializer.Deserialize(move));
    }

    [Fact]
    public void UnknownTag_IsAProtocolError_NeverNull()
    {
        byte[] unknown = [0x92, 0x63, 0x90]; // tag 99
        var ex = Assert.Throws<ProtocolViolationException>(() => ProtocolSerializer.Deserialize(unknown));
        Assert.Equal(ProtocolErrorCodes.UnknownMessage, ex.Code);
    }

    [Fact]
    public void NilPayload_IsAProtocolError()
    {
        var ex = Assert.Throws<ProtocolViolationException>(() => ProtocolSerializer.Deserialize(new byte[] { 0xc0 }));
        Assert.Equal(ProtocolErrorCodes.UnknownMessage, ex.Code);
    }

    [Theory]
    [InlineData(new byte[] { 0x01 })] // not an array
    [InlineData(new byte[] { 0x92, 0x05, 0x91, 0x07 })] // JoinRoom with an int room id
    [InlineData(new byte[] { 0x92, 0x00 })] // truncated
    [InlineData(new byte[] { 0x92, 0x05, 0x91, 0xa1, (byte)'r', 0x00 })] // trailing byte
    public void WrongShapes_AreBadMessages(byte[] payload)
    {
        var ex = Assert.Throws<ProtocolViolationException>(() => ProtocolSerializer.Deserialize(payload));
        Assert.Equal(ProtocolErrorCodes.BadMessage, ex.Code);
    }

    [Fact]
    public void DeepNesting_IsRejectedByTheUntrustedDataLimits()
    {
        // StateUpdate whose players list nests arrays far deeper than any legitimate message.
        var payload = new List<byte> { 0x92, 0x07, 0x93, 0x01, 0x01 };
        for (var i = 0; i < 100; i++)
        {
            payload.Add(0x91);
        }

        payload.Add(0x90);
        var ex = Assert.Throws<ProtocolViolationException>(() => ProtocolSerializer.Deserialize(payload.ToArray()));
        Assert.Equal(ProtocolErrorCodes.BadMessage, ex.Code);
    }

    [Theory]
    [InlineData(new byte[] { 0x92, 0x07, 0x93, 0x01, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff })] // players: 4 billion entries
    [InlineData(new byte[] { 0x92, 0x04, 0x92, 0x01, 0xc6, 0xff, 0xff, 0xff, 0xff })] // bin of 4 GB
    [InlineData(new byte[] { 0x92, 0x05, 0x91, 0xdb, 0x7f, 0xff, 0xff, 0xff })] // str of 2 GB
    [InlineData(new byte[] { 0x92, 0x05, 0x91, 0xdf, 0xff, 0xff, 0xff, 0xff })] // a map claiming 4 billion pairs
    public void HugeDeclaredLengths_AreBadMessages_WithoutAllocatingThem(byte[] payload)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        var ex = Assert.Throws<ProtocolViolationException>(() => ProtocolSerializer.Deserialize(payload));
        Assert.Equal(ProtocolErrorCodes.BadMessage, ex.Code);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1_000_000, "a declared length must not be allocated");
    }
}
