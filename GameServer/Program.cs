using GameServer.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

try
{
    using var host = GameServerApp.CreateBuilder(args).Build();
    await host.RunAsync();
    return 0;
}
catch (OptionsValidationException ex)
{
    // A configuration mistake is the operator's to fix: say which key and value, no stack trace.
    foreach (var failure in ex.Failures)
    {
        await Console.Error.WriteLineAsync($"Configuration error: {failure}");
    }

    return 2;
}
catch (InvalidOperationException ex) when (ex.Message.StartsWith("Failed to convert configuration value", StringComparison.Ordinal))
{
    await Console.Error.WriteLineAsync($"Configuration error: {ex.Message} {ex.InnerException?.Message}");
    return 2;
}
catch (InvalidOperationException ex) when (ex.Message.Contains("'ErrorOnUnknownConfiguration'", StringComparison.Ordinal))
{
    // A key its section does not have (misspelt or moved): the binder's message names the class and the key. Exit 2
    // like every configuration error, so a supervisor does not restart into the same mistake.
    await Console.Error.WriteLineAsync($"Configuration error: {ex.Message}");
    return 2;
}
catch (IOException ex) when (ex.Message.StartsWith("Failed to bind", StringComparison.Ordinal))
{
    // Kestrel's words for the metrics and probes listener: the address and why.
    await Console.Error.WriteLineAsync($"Cannot start the metrics and probes listener: {ex.Message}");
    return 3;
}
catch (System.Net.Sockets.SocketException ex)
{
    await Console.Error.WriteLineAsync($"Cannot start: {ex.Message} ({ex.SocketErrorCode})");
    return 3;
}
