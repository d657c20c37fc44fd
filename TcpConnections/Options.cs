using System.Globalization;

namespace TcpConnections;

/// <summary>
/// An options class that can say what is wrong with it, naming the configuration key and the value. Every options
/// class here and in the applications built on it validates this one way; a host runs <see cref="Validate"/> on start,
/// and the handlers that take options run <see cref="OptionErrors.ThrowIfInvalid"/> when they are made.
/// </summary>
public interface IValidatedOptions
{
    IEnumerable<string> Validate();
}

/// <summary>Error texts that name the key and the value, so an operator can fix the configuration at once.</summary>
public static class OptionErrors
{
    public static string Invalid(string section, string key, object? value, string expected) =>
        string.Create(CultureInfo.InvariantCulture, $"{section}:{key} = '{value}' is invalid: expected {expected}");

    public static IEnumerable<string> Range(string section, string key, long value, long min, long max)
    {
        if (value < min || value > max)
        {
            yield return Invalid(section, key, value, $"a number from {min} to {max}");
        }
    }

    /// <summary>Throws one <see cref="ArgumentException"/> listing every error, for code that builds options by hand.</summary>
    public static T ThrowIfInvalid<T>(this T options)
        where T : IValidatedOptions
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = options.Validate().ToList();
        if (errors.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", errors), nameof(options));
        }

        return options;
    }
}

/// <summary>The connection's own life: how a graceful close ends. Bound from the <c>Connection</c> section.</summary>
public sealed class ConnectionOptions : IValidatedOptions
{
    public const string Section = "Connection";

    /// <summary>
    /// How long a graceful close keeps reading (and discarding) after shutting down its write side, waiting for the
    /// peer's FIN. Closing earlier with unread data turns the FIN into an RST that can overtake data in flight.
    /// </summary>
    public int DrainTimeoutMs { get; set; } = 5000;

    public TimeSpan DrainTimeout => TimeSpan.FromMilliseconds(DrainTimeoutMs);

    public IEnumerable<string> Validate() => OptionErrors.Range(Section, nameof(DrainTimeoutMs), DrainTimeoutMs, 1, 600_000);
}
