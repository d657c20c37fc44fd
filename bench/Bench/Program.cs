using System.Globalization;
using Bench;

// ./run.sh bench [--rounds 3] [--seconds 5] [--warmup 2] [--connections 64,1000] [--idle 15000] [--churn 100000] [--only a,b] [--out docs/PERFORMANCE.md]
//   Bench serve sockets|kestrel|dotnetty-frame|epoll-frame PORT   (a baseline server, started by the driver)
if (args.Length >= 3 && args[0] == "serve")
{
    var port = int.Parse(args[2], CultureInfo.InvariantCulture);
    using var stop = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) =>
    {
        e.Cancel = true;
        stop.Cancel();
    };
    switch (args[1])
    {
        case "sockets":
            await SocketsEchoServer.RunAsync(port, stop.Token);
            break;
        case "kestrel":
            await KestrelEchoServer.RunAsync(port, stop.Token);
            break;
        case "dotnetty-frame":
            await DotNettyFrameEchoServer.RunAsync(port, Environment.ProcessorCount, epoll: false, stop.Token);
            break;
        case "epoll-frame":
            await DotNettyFrameEchoServer.RunAsync(port, Environment.ProcessorCount, epoll: true, stop.Token);
            break;
        default:
            await Console.Error.WriteLineAsync($"unknown server '{args[1]}': sockets, kestrel, dotnetty-frame, epoll-frame");
            return 2;
    }

    return 0;
}

BenchSettings settings;
try
{
    settings = BenchSettings.Parse(args);
}
catch (Exception ex) when (ex is ArgumentException or FormatException or OverflowException)
{
    await Console.Error.WriteLineAsync($"bench: {ex.Message}");
    return 2;
}

return await new BenchRunner(settings).RunAsync();
