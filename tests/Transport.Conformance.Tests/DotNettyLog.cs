using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using DotNetty.Common.Internal.Logging;
using Microsoft.Extensions.Logging;

namespace Transport.Conformance.Tests;

/// <summary>
/// Keeps what DotNetty logs at warning and above, so a case can assert on it: chiefly the leak detector's
/// <c>LEAK:</c> reports. DotNetty's types take their loggers in static initialisers, so the factory must be in place
/// before any of them runs, or a report goes nowhere for the whole run: a module initialiser is the only point early
/// enough for every case in this assembly.
/// </summary>
public sealed class DotNettyLog : ILoggerFactory
{
    private static readonly ConcurrentQueue<Entry> Entries = new();

    private DotNettyLog()
    {
    }

    /// <summary>Every entry so far, oldest first.</summary>
    public static IReadOnlyList<Entry> Snapshot() => [.. Entries];

    /// <summary>The entries logged after the first <paramref name="skip"/>: what one case caused.</summary>
    public static IReadOnlyList<Entry> Since(int skip) => [.. Entries.Skip(skip)];

    public static int Count => Entries.Count;

    public static bool IsLeakReport(Entry entry) =>
        entry.Level >= LogLevel.Error && entry.Message.Contains("LEAK", StringComparison.Ordinal);

#pragma warning disable CA2255 // a test assembly is where process-wide set-up belongs; xunit 2 has no assembly fixture
    [ModuleInitializer]
    internal static void Install() => InternalLoggerFactory.DefaultFactory = new DotNettyLog();
#pragma warning restore CA2255

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName);

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("the test log keeps entries itself");

    public void Dispose()
    {
    }

    public sealed record Entry(LogLevel Level, string Category, string Message);

    private sealed class Logger(string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                Entries.Enqueue(new Entry(logLevel, category, formatter(state, exception) + (exception is null ? string.Empty : $" ({exception.GetType().Name}: {exception.Message})")));
            }
        }
    }
}
