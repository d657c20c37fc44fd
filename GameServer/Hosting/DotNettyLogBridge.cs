using DotNetty.Common.Internal.Logging;
using Microsoft.Extensions.Logging;

namespace GameServer.Hosting;

/// <summary>
/// Routes DotNetty's internal logging (unknown options, leaked buffers) to the running host's logging. DotNetty
/// keeps one process-wide factory and caches its loggers in static fields, so it must never be handed a host's
/// factory directly: when that host is disposed, every later DotNetty type initialiser would throw. This bridge
/// outlives hosts and forwards to whichever host is attached, or nowhere. It must be installed before DotNetty's
/// types first run: a logger a type initialiser took from DotNetty's default factory logs nowhere for good (seen:
/// the leak detector's, when a buffer was made before the first host started).
/// </summary>
public sealed class DotNettyLogBridge : ILoggerFactory
{
    private static readonly DotNettyLogBridge Instance = new();
    private static ILoggerFactory? current;

    private DotNettyLogBridge()
    {
    }

    /// <summary>Makes the bridge DotNetty's logger factory; call before anything else touches DotNetty.</summary>
    public static void Install() => InternalLoggerFactory.DefaultFactory = Instance;

    public static void Attach(ILoggerFactory factory)
    {
        Volatile.Write(ref current, factory);
        Install();
    }

    public static void Detach(ILoggerFactory factory) => Interlocked.CompareExchange(ref current, null, factory);

    public ILogger CreateLogger(string categoryName) => new ForwardingLogger(categoryName);

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("attach a host's factory instead");

    public void Dispose()
    {
    }

    private sealed class ForwardingLogger(string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => Target()?.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => Target()?.IsEnabled(logLevel) ?? false;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Target()?.Log(logLevel, eventId, state, exception, formatter);

        private ILogger? Target()
        {
            try
            {
                return Volatile.Read(ref current)?.CreateLogger(category);
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
        }
    }
}
