using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace GameServer.Tests.Infrastructure;

/// <summary>Keeps every log entry so tests can assert on the one close line and on the absence of stack traces.</summary>
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<LogEntry> entries = new();

    public IReadOnlyCollection<LogEntry> Entries => entries.ToArray();

    /// <summary>Runs on the logging thread as each entry is written: to see the state of things at that moment.</summary>
    public Action<LogEntry>? OnEntry { get; set; }

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, this);

    public void Dispose()
    {
    }

    public sealed record LogEntry(string Category, LogLevel Level, EventId EventId, string Message, Exception? Exception);

    private sealed class Logger(string category, CapturingLoggerProvider provider) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var entry = new LogEntry(category, logLevel, eventId, formatter(state, exception), exception);
            provider.entries.Enqueue(entry);
            provider.OnEntry?.Invoke(entry);
        }
    }
}
