namespace Transport.Epoll;

/// <summary>What the event loop needs of a channel it polls.</summary>
internal interface IEpollChannel
{
    int FileDescriptor { get; }

    /// <summary>Handles the events epoll reported for this descriptor. On the loop thread.</summary>
    void OnEvents(uint events);

    /// <summary>Closes through the pipeline (the loop is shutting down gracefully).</summary>
    void Close();

    /// <summary>Closes at once, the last resort when the loop terminates.</summary>
    void ForceClose();
}
