using System.Runtime.CompilerServices;
using GameServer.Hosting;

namespace GameServer.Tests.Infrastructure;

internal static class DotNettyLogging
{
    /// <summary>
    /// Unit tests make buffers before any test server starts; the loggers DotNetty's types take then must already be
    /// the bridge's, or a leak report (and any other DotNetty warning) would go nowhere for the whole run.
    /// </summary>
#pragma warning disable CA2255 // a test assembly is where process-wide set-up belongs; xunit 2 has no assembly fixture
    [ModuleInitializer]
    internal static void Install() => DotNettyLogBridge.Install();
#pragma warning restore CA2255
}
