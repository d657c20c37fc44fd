using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;

namespace Bench;

/// <summary>Kestrel's transport with a <see cref="ConnectionHandler"/> that copies its input pipe to its output.</summary>
internal static class KestrelEchoServer
{
    public static async Task RunAsync(int port, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ListenLocalhost(port, listen => listen.UseConnectionHandler<EchoHandler>()));
        await using var app = builder.Build();
        await app.StartAsync(cancellationToken);
        Console.WriteLine($"listening on {port}");
        await Task.Delay(Timeout.Infinite, cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
        await app.StopAsync(CancellationToken.None);
    }

    private sealed class EchoHandler : ConnectionHandler
    {
        public override async Task OnConnectedAsync(ConnectionContext connection)
        {
            var input = connection.Transport.Input;
            var output = connection.Transport.Output;
            try
            {
                while (true)
                {
                    var result = await input.ReadAsync();
                    foreach (var segment in result.Buffer)
                    {
                        await output.WriteAsync(segment);
                    }

                    input.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted)
                    {
                        break;
                    }
                }
            }
            catch (ConnectionResetException)
            {
                // a peer that resets is the churn benchmark's normal case
            }
        }
    }
}
