using System.CommandLine;
using GameClient;
using GameClient.Bot;

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

var root = new RootCommand("Plays a short session against a game server and prints what it received.")
{
    host, port, name, room, moves, moveInterval, echoes, stream, streamPayload, streamInterval, waitItems, stopReading,
    flood, hold, close, quiet,
};

root.SetAction((result, cancellationToken) =>
{
    _ = ClientCloseModes.TryParse(result.GetValue(close)!, out var mode); // checked by the option's validator
    var plan = new BotPlan
    {
        Client = new GameClientOptions
        {
            Host = result.GetValue(host)!,
            Port = result.GetValue(port),
            PlayerName = result.GetValue(name)!,
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
    };
    return new Bot(plan, Console.Out).RunAsync(cancellationToken);
});

return await root.Parse(args).InvokeAsync();
