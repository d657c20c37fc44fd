using System.Threading.Channels;
using DotNetty.Transport.Channels;
using GameProtocol;
using TcpConnections;

namespace GameClient;

/// <summary>
/// The client's end of the session: Pong for every Ping, the Goodbye handshake in both directions, and a queue of
/// everything else for the application to read.
/// </summary>
internal sealed class ClientHandler : ChannelHandlerAdapter
{
    private readonly GameClientOptions options;
    private readonly Channel<IMessage> incoming = Channel.CreateUnbounded<IMessage>(new UnboundedChannelOptions { SingleWriter = true });
    private readonly TaskCompletionSource<Goodbye> serverGoodbye = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ClientHandler(GameClientOptions options) => this.options = options;

    public ChannelReader<IMessage> Incoming => incoming.Reader;

    public Task<Goodbye> ServerGoodbye => serverGoodbye.Task;

    public Error? ServerError { get; private set; }

    /// <summary>True once this side has sent its Goodbye; the server's Goodbye then answers it.</summary>
    public bool GoodbyeSent { get; set; }

    public override void ChannelRead(IChannelHandlerContext context, object message)
    {
        var msg = (IMessage)message;
        switch (msg)
        {
            case Ping ping when options.AnswerPings && !GoodbyeSent && TcpConnection.Of(context.Channel).Phase == ConnectionPhase.Open:
                _ = context.WriteAndFlushAsync(new Pong(ping.Seq, ping.SentAtUnixMs));
                break;
            case Goodbye goodbye:
                // Nothing but the answer may follow a Goodbye, or the counts would not match.
                StopHeartbeat(context.Channel);
                var connection = TcpConnection.Of(context.Channel);
                if (!GoodbyeSent && connection.Phase == ConnectionPhase.Open)
                {
                    // The server leaves first: answer with our count so it can prove nothing was lost, then let it close.
                    GoodbyeSent = true;
                    _ = context.WriteAndFlushAsync(new Goodbye("ack", connection.FramesReceived));
                }

                serverGoodbye.TrySetResult(goodbye);
                break;
            case Error error:
                ServerError = error;
                break;
        }

        incoming.Writer.TryWrite(msg);
    }

    /// <summary>Removes the heartbeat so no Ping follows a Goodbye. Call on the event loop.</summary>
    public static void StopHeartbeat(IChannel channel)
    {
        if (channel.Pipeline.Get("heartbeat") is not null)
        {
            channel.Pipeline.Remove("heartbeat");
        }
    }

    public override void ChannelInactive(IChannelHandlerContext context)
    {
        incoming.Writer.TryComplete();
        serverGoodbye.TrySetCanceled();
        context.FireChannelInactive();
    }
}
