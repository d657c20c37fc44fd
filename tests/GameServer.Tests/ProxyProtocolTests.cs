using System.Buffers.Binary;
using System.Net;
using System.Text;
using GameProtocol;
using GameServer.Tests.Infrastructure;

namespace GameServer.Tests;

/// <summary>
/// Behind a load balancer that sends the PROXY protocol (<c>Server:ProxyProtocol</c>), a connection's close record
/// names the client from the header, whichever version and however the header's bytes arrive; a connection without a
/// header, or with a bad one, is a protocol error, never a client that names itself.
/// </summary>
public class ProxyProtocolTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    [Theory]
    [InlineData("203.0.113.7", 40123, false)]
    [InlineData("2001:db8::7", 40124, false)]
    [InlineData("203.0.113.8", 40125, true)]
    public async Task AV2Header_NamesTheClient_InTheCloseRecord_EvenByteByByte(string client, int port, bool byteByByte)
    {
        await using var server = await TestServer.StartAsync("--Server:ProxyProtocol=true");
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        var bytes = V2(new IPEndPoint(IPAddress.Parse(client), port), server.EndPoint).Concat(Wire.Frame(new Hello(1, "proxied", null))).ToArray();
        if (byteByByte)
        {
            foreach (var b in bytes)
            {
                await wire.SendRawAsync([b]);
            }
        }
        else
        {
            await wire.SendRawAsync(bytes); // the header and the Hello in one segment
        }

        var close = await PlayToGoodbyeAsync(wire, server);
        Assert.Contains($"from {new IPEndPoint(IPAddress.Parse(client), port)} closed: client_goodbye", close.Message, StringComparison.Ordinal);
        var proxied = Assert.Single(server.Logs.Entries, e => e.EventId.Id == 1005);
        Assert.Contains($"by the PROXY protocol v2 header from {TcpConnections.TcpConnection.FormatEndPoint(wire.Socket.LocalEndPoint)}", proxied.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AV1Line_NamesTheClient()
    {
        await using var server = await TestServer.StartAsync("--Server:ProxyProtocol=true");
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendRawAsync(Encoding.ASCII.GetBytes($"PROXY TCP4 198.51.100.9 127.0.0.1 50001 {server.EndPoint.Port}\r\n"));
        await wire.SendAsync(new Hello(1, "v1", null));
        var close = await PlayToGoodbyeAsync(wire, server);
        Assert.Contains("from 198.51.100.9:50001 closed: client_goodbye", close.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ALocalHeader_KeepsThePeersAddress()
    {
        // LOCAL: the balancer speaking for itself (a health check through the game port), not for a client.
        await using var server = await TestServer.StartAsync("--Server:ProxyProtocol=true");
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        var local = V2(null, null);
        await wire.SendRawAsync([.. local, .. Wire.Frame(new Hello(1, "local", null))]);
        var close = await PlayToGoodbyeAsync(wire, server);
        Assert.Contains($"from {TcpConnections.TcpConnection.FormatEndPoint(wire.Socket.LocalEndPoint)} closed: client_goodbye", close.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, byte[]> BadStarts => new()
    {
        { "no PROXY protocol header (first byte 0x00)", Wire.Frame(new Hello(1, "direct", null)) },
        { "PROXY protocol v1 line is malformed: 'PROXY TCP4 999.1.1.1 127.0.0.1 1 2'", Encoding.ASCII.GetBytes("PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n") },
        { "PROXY protocol v1 line longer than 107 bytes", Encoding.ASCII.GetBytes("PROXY TCP4 " + new string('1', 120)) },
        { "PROXY protocol version 3 is not 2", [.. V2(null, null)[..12], 0x31, 0x00, 0x00, 0x00] },
        { "PROXY protocol v2 header of 4016 bytes is longer than 2064", [.. V2(null, null)[..12], 0x21, 0x11, 0x0F, 0xA0] },
        { "PROXY protocol v2 address block of 4 bytes is too short for its family", [.. V2(null, null)[..12], 0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4] },
        { "PROXY protocol v2 family and protocol 0x13 is invalid", [.. V2(null, null)[..12], 0x21, 0x13, 0x00, 0x00] },
        { "PROXY protocol v1 line is malformed: 'PROXY TCP4 010.0.0.1 127.0.0.1 1 2'", Encoding.ASCII.GetBytes("PROXY TCP4 010.0.0.1 127.0.0.1 1 2\r\n") },
        { "PROXY protocol v1 line is malformed: 'PROXY TCP4 10.0.0.1 127.0.0.1 080 2'", Encoding.ASCII.GetBytes("PROXY TCP4 10.0.0.1 127.0.0.1 080 2\r\n") },
        { "PROXY protocol v1 line is malformed: 'PROXY TCP6 fe80::1%eth0 ::1 1 2'", Encoding.ASCII.GetBytes("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n") },
        { "PROXY protocol v1 line is malformed: 'PROXY TCP4 10.0.0.1 ::1 1 2'", Encoding.ASCII.GetBytes("PROXY TCP4 10.0.0.1 ::1 1 2\r\n") },
        { "PROXY protocol v1 line is malformed: 'PROXY TCP4 \\x1b[31m 127.0.0.1 1 2'", Encoding.ASCII.GetBytes("PROXY TCP4 \u001b[31m 127.0.0.1 1 2\r\n") },
    };

    [Theory]
    [MemberData(nameof(BadStarts))]
    public async Task AConnectionWithoutAGoodHeader_IsAProtocolError_NamingWhatWasWrong(string expected, byte[] start)
    {
        await using var server = await TestServer.StartAsync("--Server:ProxyProtocol=true");
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendRawAsync(start);
        var received = await wire.ReceiveUntilEndAsync(Patience);

        var close = await server.WaitForLogAsync(e => e.EventId.Id == 1001);
        Assert.Contains($"from {TcpConnections.TcpConnection.FormatEndPoint(wire.Socket.LocalEndPoint)} closed: protocol_error", close.Message, StringComparison.Ordinal);
        Assert.Contains(expected, close.Message, StringComparison.Ordinal);
        var error = Assert.IsType<Error>(Assert.Single(received));
        Assert.Equal("proxy_header", error.Code);
        Assert.StartsWith(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AfterABadStart_WhatThePeerStillSends_IsDrained_NotParsedAgain()
    {
        // The graceful close reads to the peer's FIN; megabytes in that time must not each fail the header again.
        // The tail ignores protocol errors of a closing connection in silence, so count the decoder's throws.
        var thrown = 0;
        void Count(object? sender, System.Runtime.ExceptionServices.FirstChanceExceptionEventArgs e)
        {
            if (e.Exception is TcpConnections.ProxyProtocolException)
            {
                Interlocked.Increment(ref thrown);
            }
        }

        AppDomain.CurrentDomain.FirstChanceException += Count;
        try
        {
            await using var server = await TestServer.StartAsync("--Server:ProxyProtocol=true");
            using var wire = await Wire.ConnectAsync(server.EndPoint);
            await wire.SendRawAsync(Wire.Frame(new Hello(1, "direct", null)));
            var chunk = new byte[64 * 1024];
            for (var i = 0; i < 64; i++)
            {
                await wire.SendRawAsync(chunk);
            }

            wire.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
            var received = await wire.ReceiveUntilEndAsync(Patience);

            Assert.Equal("proxy_header", Assert.IsType<Error>(Assert.Single(received)).Code);
            var close = await server.WaitForLogAsync(e => e.EventId.Id == 1001);
            Assert.Contains("closed: protocol_error", close.Message, StringComparison.Ordinal);
        }
        finally
        {
            AppDomain.CurrentDomain.FirstChanceException -= Count;
        }

        Assert.InRange(thrown, 1, 8); // the one failure, seen again as each layer rethrows it (280 without the drain)
    }

    [Fact]
    public async Task WithTrustedProxies_AHeaderFromAnyOtherPeer_IsRefused_AndFromOneOfThem_Believed()
    {
        await using (var strict = await TestServer.StartAsync("--Server:ProxyProtocol=true", "--Server:ProxyProtocolTrustedProxies:0=10.0.0.0/8"))
        {
            using var wire = await Wire.ConnectAsync(strict.EndPoint);
            await wire.SendRawAsync([.. V2(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 1), strict.EndPoint), .. Wire.Frame(new Hello(1, "spoof", null))]);
            var error = Assert.IsType<Error>(Assert.Single(await wire.ReceiveUntilEndAsync(Patience)));
            Assert.Equal("proxy_header", error.Code);
            Assert.Equal($"{TcpConnections.TcpConnection.FormatEndPoint(wire.Socket.LocalEndPoint)} is not a trusted proxy", error.Message);
        }

        await using var trusting = await TestServer.StartAsync("--Server:ProxyProtocol=true", "--Server:ProxyProtocolTrustedProxies:0=10.0.0.0/8", "--Server:ProxyProtocolTrustedProxies:1=127.0.0.0/8");
        using var through = await Wire.ConnectAsync(trusting.EndPoint);
        await through.SendRawAsync([.. V2(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 2), trusting.EndPoint), .. Wire.Frame(new Hello(1, "proxied", null))]);
        var close = await PlayToGoodbyeAsync(through, trusting);
        Assert.Contains("from 203.0.113.7:2 closed: client_goodbye", close.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithoutTheSetting_AHeaderIsNotRead_AndIsAProtocolError()
    {
        // Off by default: a client cannot name itself by sending a header to a server not behind a balancer.
        await using var server = await TestServer.StartAsync();
        using var wire = await Wire.ConnectAsync(server.EndPoint);
        await wire.SendRawAsync(V2(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 1), server.EndPoint));
        await wire.ReceiveUntilEndAsync(Patience);

        var close = await server.WaitForLogAsync(e => e.EventId.Id == 1001);
        Assert.Contains($"from {TcpConnections.TcpConnection.FormatEndPoint(wire.Socket.LocalEndPoint)} closed: protocol_error", close.Message, StringComparison.Ordinal);
    }

    /// <summary>After the header and Hello were sent: Welcome, Goodbye both ways, and the server's close line.</summary>
    private static async Task<CapturingLoggerProvider.LogEntry> PlayToGoodbyeAsync(Wire wire, TestServer server)
    {
        Assert.IsType<Welcome>(await wire.ReceiveAsync(Patience));
        await wire.SendAsync(new Goodbye("bye", 1));
        await wire.ReceiveUntilEndAsync(Patience);
        return await server.WaitForLogAsync(e => e.EventId.Id == 1001);
    }

    /// <summary>A version 2 header: PROXY for TCP with <paramref name="source"/>, or LOCAL when it is null.</summary>
    private static byte[] V2(IPEndPoint? source, IPEndPoint? destination)
    {
        byte[] signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
        if (source is null || destination is null)
        {
            return [.. signature, 0x20, 0x00, 0x00, 0x00];
        }

        var v6 = source.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        var to = v6 ? destination.Address.MapToIPv6() : destination.Address;
        var addresses = source.Address.GetAddressBytes().Concat(to.GetAddressBytes()).ToArray();
        var block = new byte[addresses.Length + 4 + 5];
        addresses.CopyTo(block, 0);
        BinaryPrimitives.WriteUInt16BigEndian(block.AsSpan(addresses.Length), (ushort)source.Port);
        BinaryPrimitives.WriteUInt16BigEndian(block.AsSpan(addresses.Length + 2), (ushort)destination.Port);
        block[^5] = 0x04; // a TLV (PP2_TYPE_NOOP, 2 bytes), skipped as unknown ones must be
        block[^4] = 0x00;
        block[^3] = 0x02;
        var length = new byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(length, (ushort)block.Length);
        return [.. signature, 0x21, (byte)(v6 ? 0x21 : 0x11), .. length, .. block];
    }
}
