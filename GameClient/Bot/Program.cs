using System.CommandLine;
using DotNetty.Common;
using GameClient;
using GameClient.Bot;

// A load generator should spend its CPU on load: DotNetty's default sampling leak detector captures a stack trace for
// one buffer in 128 (9 % of the server's CPU when measured there).
ResourceLeakDetector.Level = ResourceLeakDetector.DetectionLevel.Disabled;

var host = new Option<string>("--host") { Description = "Server address", DefaultValueFactory = _ => "127.0.0.1" };
var port = new Option<int>("--port") { Description = "Server port", DefaultValueFactory = _ => 7777 };
var name = new Option<string>("--name") { Description = "Player name", DefaultValueFactory = _ => "bot" };
var room = new Option<string?>("--room") { Description = "Room to join" };
var moves = new Option<int>("--moves") { Description = "Moves to send", DefaultValueFactory = _ => 0 };
var moveInterval = new Option<int>("--move-interval-ms") { Description = "Pause between moves", DefaultValueFactory = _ => 50 };
var echoes = new Option<int>("--echo") { Description = "Echo round trips to make", DefaultValueFactory = _ => 0 };
var stream = new Option<int>("--stream") { Description = "StreamItems to ask for", DefaultValueFactory = _ => 0 };
var streamPayload = new Option<int>("--stream-payload") { Description = "Bytes per StreamItem", DefaultValueFactory = _ => 256 };
var streamInterval = new Option<int>("--stream-interval-ms") { Description = "Pause between StreamItems (0: as fast as possible)", DefaultValueFactory = _ => 0 };
var waitItems = new Option<int>("--wait-stream-items") { Description = "Wait for this many StreamItems before closing", DefaultValueFactory = _ => 0 };
var stopReading = new Option<bool>("--stop-reading") { Description = "Stop reading before closing, so the server's data piles up unread" };
var flood = new Option<bool>("--flood") { Description = "Keep sending Moves until the close (or until killed)" };
var hold = new Option<int>("--hold-ms") { Description = "Wait this long before closing", DefaultValueFactory = _ => 0 };
var close = new Option<string>("--close")
{
    Description = "How to end: goodbye, fin, half-close, abort, close-with-unread, exit-without-close, silent",
    DefaultValueFactory = _ => "goodbye",
};
close.Validators.Add(result =>
{
    if (!ClientCloseModes.TryParse(result.GetValueOrDefault<string>(), out _))
    {
        result.AddError($"--close must be one of: {string.Join(", ", Enum.GetValues<ClientCloseMode>().Select(m => m.ToName()))}");
    }
});
var quiet = new Option<bool>("--quiet") { Description = "Print only the summary lines" };
var resume = new Option<bool>("--resume")
{
    Description = "Speak protocol version 2 and resume the session after a drop (reconnecting with backoff); prints disconnected/resumed lines and checks every stream item and Echo arrived exactly once",
};
var transport = new Option<string>("--transport") { Description = "auto (epoll on Linux), sockets (DotNetty's stock transport) or epoll (Linux)", DefaultValueFactory = _ => "auto" };
transport.AcceptOnlyFromAmong("auto", "sockets", "epoll");
var connections = new Option<int>("--connections")
{
    Description = "Connections this process holds, each running the same plan (names get -1, -2, ...)",
    DefaultValueFactory = _ => 1,
};
connections.Validators.Add(result =>
{
    if (result.GetValueOrDefault<int>() is < 1 or > 10_000)
    {
        result.AddError("--connections must be between 1 and 10000");
    }
});

var root = new RootCommand("Plays a short session against a game server and prints what it received.")
{
    host, port, name, room, moves, moveInterval, echoes, stream, streamPayload, streamInterval, waitItems, stopReading,
    flood, hold, close, quiet, connections, transport, resume,
};

root.Validators.Add(result =>
{
    if (result.GetValue(resume)
        && ((result.GetValue(close) ?? "goodbye") != ClientCloseMode.Goodbye.ToName() || result.GetValue(connections) > 1 || result.GetValue(flood) || result.GetValue(stopReading)))
    {
        result.AddError("--resume plays one session to its Goodbye: it takes neither --close other than goodbye, --connections above 1, --flood nor --stop-reading");
    }
});

root.SetAction(async (result, cancellationToken) =>
{
    _ = ClientCloseModes.TryParse(result.GetValue(close)!, out var mode); // checked by the option's validator
    BotPlan PlanFor(string playerName) => new()
    {
        Client = new GameClientOptions
        {
            Host = result.GetValue(host)!,
            Port = result.GetValue(port),
            PlayerName = playerName,
            Transport = result.GetValue(transport)!,
        },
        Room = result.GetValue(room),
        Moves = result.GetValue(moves),
        MoveIntervalMs = result.GetValue(moveInterval),
        Echoes = result.GetValue(echoes),
        StreamCount = result.GetValue(stream),
        StreamPayloadBytes = result.GetValue(streamPayload),
        StreamIntervalMs = result.GetValue(streamInterval),
        WaitStreamItems = result.GetValue(waitItems),
        StopReading = result.GetValue(stopReading),
        Flood = result.GetValue(flood),
        HoldMs = result.GetValue(hold),
        Close = mode,
        Quiet = result.GetValue(quiet),
        Resume = result.GetValue(resume),
    };

    var count = result.GetValue(connections);
    if (result.GetValue(resume))
    {
        return await new ResumingBot(PlanFor(result.GetValue(name)!), Console.Out).RunAsync(cancellationToken);
    }

    if (count == 1)
    {
        return await new Bot(PlanFor(result.GetValue(name)!), Console.Out).RunAsync(cancellationToken);
    }

    // Many connections in one process, so that killing the process ends all of them at once (the load suite's
    // SIGKILL victims). The process says "ready" once, when every connection is.
    var output = TextWriter.Synchronized(Console.Out);
    var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    var bots = Enumerable.Range(1, count)
        .Select(i => new Bot(PlanFor($"{result.GetValue(name)}-{i}"), output, gate.Task))
        .ToList();
    var runs = bots.Select(bot => Task.Run(() => bot.RunAsync(cancellationToken), cancellationToken)).ToList();
    var allReady = Task.WhenAll(bots.Select(bot => bot.Ready));
    await Task.WhenAny(allReady, Task.WhenAny(runs)); // a run that ends before it is ready failed
    if (!allReady.IsCompletedSuccessfully)
    {
        await Console.Error.WriteLineAsync("error: not every connection got ready");
        gate.TrySetResult();
        await Task.WhenAll(runs).ContinueWith(_ => { }, TaskScheduler.Default);
        return 1;
    }

    await output.WriteLineAsync("ready");
    await output.FlushAsync(cancellationToken);
    gate.TrySetResult();
    if (mode == ClientCloseMode.ExitWithoutClose)
    {
        var allSet = Task.WhenAll(bots.Select(bot => bot.ReadyToExit));
        await Task.WhenAny(allSet, Task.WhenAll(runs));
        if (allSet.IsCompletedSuccessfully)
        {
            Environment.Exit(0); // the kernel closes every socket, not the program
        }
    }

    var codes = await Task.WhenAll(runs);
    return codes.Max();
});

return await root.Parse(args).InvokeAsync();
