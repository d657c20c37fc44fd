// A line echo server on the TcpConnections and Transport.Epoll packages alone. Each line comes back;
// "stream N MS" sends N lines MS apart, reading nothing meanwhile; "ping n" / "pong n" lines are the heartbeat.
// Every close prints one line: "closed <reason> errno=<n> remote=<address>".
// Usage: EchoServer [--port 7000] [--transport epoll|sockets] [--heartbeat-ms 1000] [--misses 2]
using System.Net;
using DotNetty.Codecs;
using DotNetty.Transport.Bootstrapping;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using TcpConnections;
using Transport.Epoll;

var port = int.Parse(Arg("--port", "7000"));
var epoll = Arg("--transport", OperatingSystem.IsLinux() ? "epoll" : "sockets") == "epoll";
var heartbeat = new HeartbeatOptions { IntervalMs = int.Parse(Arg("--heartbeat-ms", "1000")), Misses = int.Parse(Arg("--misses", "2")) };

var connection = new ConnectionHandler(new ConnectionOptions { DrainTimeoutMs = 2000 });
var tail = new ConnectionTailHandler(new LineProtocol());
IEventLoopGroup group = epoll ? new EpollEventLoopGroup(1) : new MultithreadEventLoopGroup(1);
var bootstrap = new ServerBootstrap().Group(group)
    .ChildOption(ChannelOption.AllowHalfClosure, epoll) // only epoll half-closes; the stock channel closes on EOF
    .ChildHandler(new ActionChannelInitializer<IChannel>(ch =>
    {
        ch.Pipeline.AddLast(connection); // first: owns the connection's life and its close record
        ch.Pipeline.AddLast(new LineBasedFrameDecoder(1024), new StringDecoder(), new StringEncoder());
        ch.Pipeline.AddLast(new IdleDetector(heartbeat.Interval, TimeSpan.Zero));
        ch.Pipeline.AddLast(new HeartbeatHandler(heartbeat, new LineProtocol()));
        ch.Pipeline.AddLast(new EchoHandler());
        ch.Pipeline.AddLast(tail); // last: every exception ends here
    }));
if (epoll)
{
    bootstrap.Channel<EpollServerSocketChannel>();
}
else
{
    bootstrap.Channel<TcpServerSocketChannel>();
}

var server = await bootstrap.BindAsync(IPAddress.Loopback, port);
Console.WriteLine($"listening {((IPEndPoint)server.LocalAddress).Port} {(epoll ? "epoll" : "sockets")}");
var stop = new TaskCompletionSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.TrySetResult(); };
AppDomain.CurrentDomain.ProcessExit += (_, _) => stop.TrySetResult();
await stop.Task;
await server.CloseAsync();
await group.ShutdownGracefullyAsync(TimeSpan.Zero, TimeSpan.FromSeconds(2));

string Arg(string name, string fallback)
{
    var at = Array.IndexOf(args, name);
    return at >= 0 && at + 1 < args.Length ? args[at + 1] : fallback;
}

sealed class EchoHandler : ChannelHandlerAdapter
{
    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        var line = (string)message;
        if (line.StartsWith("stream ", StringComparison.Ordinal))
        {
            var parts = line.Split(' ');
            context.Channel.Configuration.AutoRead = false; // a request/response server: no new request mid-response
            Stream(context, 0, int.Parse(parts[1]), TimeSpan.FromMilliseconds(int.Parse(parts[2])));
            return;
        }

        context.WriteAndFlushAsync(line + "\n");
    }

    public override void UserEventTriggered(IChannelHandlerContext context, object evt)
    {
        if (evt is ConnectionClosedEvent closed)
        {
            Console.WriteLine($"closed {closed.ReasonName} errno={closed.Errno} remote={closed.RemoteEndPoint}");
        }

        context.FireUserEventTriggered(evt);
    }

    private static void Stream(IChannelHandlerContext context, int next, int count, TimeSpan interval)
    {
        if (next == count || TcpConnection.Of(context.Channel).Phase != ConnectionPhase.Open)
        {
            context.Channel.Configuration.AutoRead = true;
            return;
        }

        context.WriteAndFlushAsync($"line {next}\n");
        context.Executor.Schedule(() => Stream(context, next + 1, count, interval), interval);
    }
}

/// <summary>The protocol's words for the library: "error" lines, and "ping"/"pong" lines for the heartbeat.</summary>
sealed class LineProtocol : IConnectionProtocol, IHeartbeatProtocol
{
    public object? CreateError(string code, string message) => $"error {code}: {message}\n";

    public bool TryGetProtocolError(Exception exception, out string code, out string message)
    {
        (code, message) = exception is TooLongFrameException ? ("line_too_long", exception.Message) : (string.Empty, string.Empty);
        return code.Length > 0;
    }

    public object CreatePing(long seq, long sentAtUnixMs) => $"ping {seq}\n";

    public bool TryReadPong(object message, out long seq)
    {
        seq = 0;
        return message is string line && line.StartsWith("pong ", StringComparison.Ordinal) && long.TryParse(line[5..], out seq);
    }
}
