namespace GameClient;

/// <summary>The ways a client can end a connection; each is one of the cases in docs/CLOSE-HANDLING.md.</summary>
public enum ClientCloseMode
{
    /// <summary>The Goodbye handshake: send Goodbye, wait for the server's Goodbye and its FIN, then close.</summary>
    Goodbye,

    /// <summary>Close normally after sending, without Goodbye (FIN).</summary>
    Fin,

    /// <summary>Shut down the write side (FIN) and keep reading until the server closes.</summary>
    HalfClose,

    /// <summary>SO_LINGER 0 and close: RST at once, queued data discarded.</summary>
    Abort,

    /// <summary>Stop reading, let received data pile up unread, then close: the kernel turns the close into an RST.</summary>
    CloseWithUnread,

    /// <summary>The process exits with the socket still open (the bot CLI only; the kernel closes it).</summary>
    ExitWithoutClose,

    /// <summary>Stop reading and writing but keep the socket open: a hung client.</summary>
    Silent,
}

/// <summary>Command-line names of <see cref="ClientCloseMode"/>.</summary>
public static class ClientCloseModes
{
    public static string ToName(this ClientCloseMode mode) => mode switch
    {
        ClientCloseMode.Goodbye => "goodbye",
        ClientCloseMode.Fin => "fin",
        ClientCloseMode.HalfClose => "half-close",
        ClientCloseMode.Abort => "abort",
        ClientCloseMode.CloseWithUnread => "close-with-unread",
        ClientCloseMode.ExitWithoutClose => "exit-without-close",
        ClientCloseMode.Silent => "silent",
        _ => throw new ArgumentOutOfRangeException(nameof(mode)),
    };

    public static bool TryParse(string name, out ClientCloseMode mode)
    {
        foreach (var candidate in Enum.GetValues<ClientCloseMode>())
        {
            if (candidate.ToName() == name)
            {
                mode = candidate;
                return true;
            }
        }

        mode = default;
        return false;
    }
}
