namespace Transport.Epoll;

/// <summary>How an app's transport setting (<c>auto</c>, <c>epoll</c>, <c>sockets</c>) comes to this transport.</summary>
public static class EpollTransport
{
    /// <summary>
    /// True for <c>epoll</c>, and for <c>auto</c> on Linux (the only system it runs on); false for anything else,
    /// which the caller validates.
    /// </summary>
    public static bool IsChosenBy(string? setting) =>
        string.Equals(setting, "epoll", StringComparison.OrdinalIgnoreCase)
        || (string.Equals(setting, "auto", StringComparison.OrdinalIgnoreCase) && OperatingSystem.IsLinux());
}
