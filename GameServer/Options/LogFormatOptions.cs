using TcpConnections;

namespace GameServer.Options;

/// <summary>
/// <c>Logging:Format</c>: how console lines look. <c>simple</c> (the default) is one readable line per event;
/// <c>json</c> is the built-in JSON console formatter, one object per line whose <c>State</c> carries every field of
/// the message (a close line's reason, errno, duration, frames and bytes) for a log shipper to index.
/// </summary>
public sealed class LogFormatOptions : IValidatedOptions
{
    public const string Section = "Logging";

    public string Format { get; set; } = "simple";

    public IEnumerable<string> Validate()
    {
        if (Format is not ("simple" or "json"))
        {
            yield return OptionErrors.Invalid(Section, nameof(Format), Format, "simple or json");
        }
    }
}
