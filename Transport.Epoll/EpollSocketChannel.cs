using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using DotNetty.Buffers;
using DotNetty.Common.Concurrency;
using DotNetty.Transport.Channels;
using DotNetty.Transport.Channels.Sockets;
using TcpConnections;
using Transport.Epoll.Native;

using TaskCompletionSource = System.Threading.Tasks.TaskCompletionSource;

namespace Transport.Epoll;

/// <summary>
/// A TCP connection on the epoll transport. Reads, writes, connects and closes happen inline on its event loop's
/// thread through libc. Unlike the stock transport it can half-close both ways: with <c>AllowHalfClosure</c> an EOF
/// fires <see cref="ChannelInputShutdownEvent"/> and leaves the output open, and <see cref="ShutdownOutputAsync"/>
/// sends a FIN and keeps reading. Errors reach <c>ExceptionCaught</c> as <see cref="SocketException"/>s that carry the
/// errno, on reads and on writes.
/// </summary>
public sealed class EpollSocketChannel : AbstractChannel, ISocketChannel, IDuplexChannel, INativeSocketChannel, IEpollChannel, IDirectWriteChannel
{
    private static readonly ChannelMetadata ChannelMetadata = new(false, 16);

    private readonly EpollSocketChannelConfig config;
    private int fd;
    private uint interest;
    private bool active;
    private bool open = true;
    private bool readPending;
    private bool inputShutdown;
    private bool outputShutdown;
    private bool parked;
    private TaskCompletionSource? connectPromise;
    private IScheduledTask? connectTimeout;
    private IPEndPoint? local;
    private IPEndPoint? remote;

    /// <summary>A client channel: its socket is made by <c>ConnectAsync</c>.</summary>
    public EpollSocketChannel()
        : base(null)
    {
        fd = -1;
        config = new EpollSocketChannelConfig(this);
    }

    /// <summary>An accepted connection; <paramref name="remoteAddress"/> is what accept4 reported.</summary>
    internal EpollSocketChannel(IChannel parent, int acceptedFd, IPEndPoint? remoteAddress)
        : base(parent)
    {
        fd = acceptedFd;
        active = true;
        config = new EpollSocketChannelConfig(this);
        local = SockAddr.LocalOf(fd);

        // accept4's own output, not getpeername: a peer that reset between its handshake and our accept leaves a
        // socket getpeername fails on, and the close report still wants to say who it was.
        remote = remoteAddress ?? SockAddr.RemoteOf(fd);
    }

    public int FileDescriptor => fd;

    /// <summary>send and sendmsg calls made so far; for tests of the write path. Loop thread only.</summary>
    internal long SendCalls { get; private set; }

    public override IChannelConfiguration Configuration => config;

    public override bool Open => open;

    public override bool Active => active && open;

    public override ChannelMetadata Metadata => ChannelMetadata;

    public bool IsInputShutdown => inputShutdown;

    /// <summary>Bytes in the kernel's receive buffer that nobody has read yet (FIONREAD); 0 once closed.</summary>
    public unsafe int UnreadBytes
    {
        get
        {
            int count;
            var socket = fd;
            return socket >= 0 && LibC.ioctl(socket, LibC.FIONREAD, &count) == 0 ? count : 0;
        }
    }

    /// <summary>
    /// AutoRead was turned off: stop asking epoll for reads unless a read is still pending. The read requested after
    /// the last read complete stays: like the stock transport's one posted receive, it takes the next bytes, which the
    /// project's tests and clients rely on to know exactly when reading stops.
    /// </summary>
    internal void StopReadingSoon()
    {
        // Before registration there is no loop to ask (and the getter throws): DoRegister starts with no interest and
        // only a read request turns reading on.
        if (Registered && EventLoop is { } loop)
        {
            loop.Execute(() =>
            {
                if (!readPending && !config.AutoRead)
                {
                    SetInterest(ReadInterest, false);
                }
            });
        }
    }

    public bool IsOutputShutdown => outputShutdown || !Active;

    protected override EndPoint? LocalAddressInternal => local;

    protected override EndPoint? RemoteAddressInternal => remote;

    public new IServerSocketChannel? Parent => (IServerSocketChannel?)base.Parent;

    /// <summary>
    /// Sends FIN (shutdown(SHUT_WR)) after what the kernel already holds; reading goes on. Writes still queued in the
    /// channel fail. On the loop the task is complete on return.
    /// </summary>
    public Task ShutdownOutputAsync()
    {
        var promise = new TaskCompletionSource();
        if (EventLoop.InEventLoop)
        {
            ShutdownOutput(promise);
        }
        else
        {
            EventLoop.Execute(() => ShutdownOutput(promise));
        }

        return promise.Task;
    }

    private void ShutdownOutput(TaskCompletionSource promise)
    {
        if (fd < 0 || !open)
        {
            promise.TrySetException(new ClosedChannelException());
            return;
        }

        if (LibC.shutdown(fd, LibC.SHUT_WR) != 0)
        {
            promise.TrySetException(Errno.ToException(Errno.Last));
            return;
        }

        outputShutdown = true;

        // What was flushed but not yet taken by the kernel can no longer be sent.
        Unsafe.OutboundBuffer?.FailFlushed(new ChannelOutputShutdownException(), true);
        SetInterest(LibC.EPOLLOUT, false);
        promise.TrySetResult();
    }

    /// <summary>Direct writes (<see cref="TryWriteNow"/>) the socket took only part of; the rest went to the outbound buffer.</summary>
    public long PartialDirectWrites { get; private set; }

    // How far into each object TryWriteNow's reads reach (offsets read off the JIT's code for it): this channel's own
    // fields come after DotNetty's references, up to 160 bytes in; the unsafe's outbound buffer is its second field;
    // the buffer's size and pending byte count sit just past its references, up to 64 bytes in.
    private const int DirectWriteFieldsSpan = 160;
    private const int UnsafeFieldsSpan = 24;
    private const int OutboundSizeFieldsSpan = 64;

    /// <inheritdoc/>
    public int PrefetchSteps => 3;

    /// <inheritdoc/>
    public void PrefetchForWrite(int step)
    {
        // TryWriteNow reads this channel (three lines of fields), its unsafe, and the unsafe's outbound buffer: a
        // chain, so each step reads a reference the one before brought in.
        switch (step)
        {
            case 0:
                CacheLines.Prefetch(this, DirectWriteFieldsSpan);
                break;
            case 1:
                CacheLines.Prefetch(Unsafe, UnsafeFieldsSpan);
                break;
            case 2:
                CacheLines.Prefetch(Unsafe.OutboundBuffer, OutboundSizeFieldsSpan);
                break;
        }
    }

    /// <inheritdoc/>
    public bool TryWriteNow(IByteBuffer data)
    {
        if (!EventLoop.InEventLoop)
        {
            throw new InvalidOperationException("TryWriteNow runs on the channel's event loop only");
        }

        var outbound = Unsafe.OutboundBuffer;
        var length = data.ReadableBytes;
        if (fd < 0 || !Active || outputShutdown || outbound is null || length == 0 || !data.HasArray || data.IoBufferCount != 1
            || outbound.Size > 0 || outbound.TotalPendingWriteBytes() > 0)
        {
            // Something queued ahead (flushed or not), or nothing to send on: the pipeline keeps the order.
            return false;
        }

        var sent = SendOne(data.GetIoBuffer(data.ReaderIndex, length));
        if (sent < 0)
        {
            var errno = Errno.Last;
            if (errno == LibC.EAGAIN)
            {
                // Not a byte taken: the pipeline write queues it all; waiting for room already spares its flush a
                // send that would meet EAGAIN again.
                SetInterest(LibC.EPOLLOUT, true);
                return false;
            }

            // As DoWrite does: the real cause to the pipeline, marked as a write's, then close. Sending again through
            // the pipeline would meet a different errno (a reset is reported once), and the close would be misnamed.
            Pipeline.FireExceptionCaught(Errno.ToException(errno, onWrite: true));
            Unsafe.CloseAsync();
            return true;
        }

        if (sent < length)
        {
            // Part went out: the rest must go before anything written after it. The outbound buffer is empty, so it
            // goes to its head; the flush meets EAGAIN and waits for EPOLLOUT like any other backlog.
            PartialDirectWrites++;
            _ = Unsafe.WriteAsync(data.RetainedSlice(data.ReaderIndex + (int)sent, length - (int)sent));
            SetInterest(LibC.EPOLLOUT, true); // the socket is full: the flush only marks the rest, EPOLLOUT sends it
            Unsafe.Flush();
        }

        return true;
    }

    void IEpollChannel.OnEvents(uint events) => ((EpollUnsafe)Unsafe).OnEvents(events);

    // Through the pipeline, as a user's close would go: outbound handlers see it and can say why the channel closed.
    void IEpollChannel.Close() => _ = CloseAsync();

    // The unsafe's own close, not CloseForcibly: CloseCompletion completes and queued writes fail and release their
    // buffers even when a handler never lets a close through the pipeline.
    void IEpollChannel.ForceClose() => _ = Unsafe.CloseAsync();

    protected override IChannelUnsafe NewUnsafe() => new EpollUnsafe(this);

    protected override bool IsCompatible(IEventLoop eventLoop) => eventLoop is EpollEventLoop;

    private EpollEventLoop Loop => (EpollEventLoop)EventLoop;

    // Level-triggered: EPOLLIN and EPOLLRDHUP are wanted only while reading, or a paused channel would be woken for
    // ever by data (or a FIN) it must leave unread. EPOLLERR and EPOLLHUP come regardless.
    private const uint ReadInterest = LibC.EPOLLIN | LibC.EPOLLRDHUP;

    // Buffers gathered into one sendmsg.
    internal const int MaxIov = 64;

    protected override void DoRegister()
    {
        // Into the epoll set first: if that fails (ENOSPC at max_user_watches), the channel is not on the loop's books.
        // The interest is kept: a channel registered again still waits for EPOLLOUT if its writes did.
        if (fd >= 0)
        {
            Loop.Add(this, interest);
        }

        Loop.Register(this);
    }

    protected override void DoDeregister()
    {
        Loop.Deregister(this);
        parked = false;
    }

    protected override void DoBind(EndPoint localAddress)
    {
        EnsureSocket(localAddress.AddressFamily);
        Bind(fd, localAddress);
        local = SockAddr.LocalOf(fd);
    }

    protected override void DoBeginRead()
    {
        if (inputShutdown || fd < 0)
        {
            return;
        }

        readPending = true;
        SetInterest(ReadInterest, true);
        Unpark();
    }

    protected override void DoDisconnect() => DoClose();

    protected override object FilterOutboundMessage(object msg)
    {
        if (outputShutdown)
        {
            throw new ChannelOutputShutdownException(); // the write fails (its buffer released), the channel stays open
        }

        return msg is IByteBuffer
            ? msg
            : throw new NotSupportedException($"the epoll transport writes IByteBuffer messages only, not {msg.GetType().Name}");
    }

    protected override void DoClose()
    {
        active = false;
        open = false;
        connectTimeout?.Cancel();
        connectPromise?.TrySetException(new ClosedChannelException());
        connectPromise = null;
        if (fd >= 0)
        {
            // Out of the epoll set first: once closed, the number can belong to the next accepted connection.
            if (Registered)
            {
                Loop.Remove(this);
            }

            _ = LibC.close(fd);
            fd = -1;
        }
    }

    protected override void DoWrite(ChannelOutboundBuffer input)
    {
        if (outputShutdown)
        {
            // Our FIN is out: these writes can never be sent. Only they fail; reading goes on (Netty's rule).
            input.FailFlushed(new ChannelOutputShutdownException(), true);
            SetInterest(LibC.EPOLLOUT, false);
            return;
        }

        var gatherer = Loop.Gatherer;
        while (input.Size > 0)
        {
            // One pass takes at most MaxIov buffers and MaxBytesPerGatheringWrite bytes from the head of the backlog,
            // so its cost does not grow with the backlog's length.
            long expected;
            long written;
            int errno;
            try
            {
                gatherer.Gather(input, config.MaxBytesPerGatheringWrite);
                var segments = gatherer.Segments;
                expected = gatherer.Bytes;
                written = segments.Count switch
                {
                    0 => 0, // only empty buffers at the head: RemoveBytes(0) takes them off
                    1 => SendOne(segments[0]),
                    _ => SendGathered(segments),
                };
                errno = written < 0 ? Errno.Last : 0;
            }
            finally
            {
                // The gatherer is the loop's, shared by every channel on it: left filled, the next channel to write
                // would send these bytes as its own.
                gatherer.Clear();
            }

            if (written < 0)
            {
                if (errno == LibC.EAGAIN)
                {
                    SetInterest(LibC.EPOLLOUT, true);
                    return;
                }

                // The stock Flush0 would turn this into a bare ClosedChannelException and never tell the pipeline:
                // fail the writes with the real cause, say it, and close.
                var cause = Errno.ToException(errno, onWrite: true);
                input.FailFlushed(cause, true);
                Pipeline.FireExceptionCaught(cause);
                Unsafe.CloseAsync();
                return;
            }

            input.RemoveBytes(written);
            if (written < expected || (written > 0 && input.Size > 0))
            {
                // The send buffer is full, or one full sendmsg went out with more behind it: either way go on when
                // epoll reports room (at once in the second case), so one connection with a deep backlog cannot keep
                // the loop from its other channels and tasks (Netty's writeSpinCount, by another name). Measured:
                // without it, 100 slow readers' streams starved new handshakes.
                SetInterest(LibC.EPOLLOUT, true);
                return;
            }
        }

        SetInterest(LibC.EPOLLOUT, false);
    }

    private unsafe long SendOne(ArraySegment<byte> segment)
    {
        SendCalls++;
        fixed (byte* data = &segment.Array![segment.Offset])
        {
            return LibC.send(fd, data, segment.Count, LibC.MSG_NOSIGNAL);
        }
    }

    private unsafe long SendGathered(List<ArraySegment<byte>> segments)
    {
        SendCalls++;
        var count = segments.Count; // at most MaxIov: the loop's gatherer takes no more
        var iov = stackalloc LibC.IoVec[count];
        var handles = stackalloc GCHandle[count];
        for (var i = 0; i < count; i++)
        {
            var segment = segments[i];
            handles[i] = GCHandle.Alloc(segment.Array, GCHandleType.Pinned);
            iov[i].Base = (byte*)handles[i].AddrOfPinnedObject() + segment.Offset;
            iov[i].Length = (nuint)segment.Count;
        }

        try
        {
            var message = new LibC.MsgHdr { Iov = iov, IovLength = (nuint)count };
            return LibC.sendmsg(fd, &message, LibC.MSG_NOSIGNAL);
        }
        finally
        {
            for (var i = 0; i < count; i++)
            {
                handles[i].Free();
            }
        }
    }

    private void SetInterest(uint flag, bool on)
    {
        var next = on ? interest | flag : interest & ~flag;
        if (next != interest && fd >= 0 && Registered && !parked)
        {
            Loop.Modify(this, next);
        }

        interest = next;
    }

    /// <summary>
    /// Takes the descriptor out of the epoll set while it can only report a hang-up or error nobody asked to read:
    /// level-triggered, EPOLLHUP and EPOLLERR would otherwise wake the loop without end. The error stays pending in
    /// the socket for the next write (EPIPE) or for the read that resumes it.
    /// </summary>
    private void Park()
    {
        if (!parked && fd >= 0 && Registered)
        {
            Loop.Remove(this);
            parked = true;
        }
    }

    private void Unpark()
    {
        if (parked && fd >= 0)
        {
            parked = false;
            Loop.Add(this, interest);
        }
    }

    private void EnsureSocket(AddressFamily family)
    {
        if (fd >= 0)
        {
            return;
        }

        fd = LibC.socket(family == AddressFamily.InterNetworkV6 ? LibC.AF_INET6 : LibC.AF_INET, LibC.SOCK_STREAM | LibC.SOCK_NONBLOCK | LibC.SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            throw Errno.ToException(Errno.Last);
        }

        config.ApplyPending();
        if (Registered)
        {
            interest = 0;
            Loop.Add(this, interest);
        }
    }

    internal static unsafe void Bind(int socket, EndPoint address)
    {
        var buffer = stackalloc byte[SockAddr.MaxSize];
        var length = SockAddr.Write(address, buffer);
        if (LibC.bind(socket, buffer, length) != 0)
        {
            throw Errno.ToException(Errno.Last);
        }
    }

    private sealed class EpollUnsafe : AbstractUnsafe
    {
        public EpollUnsafe(EpollSocketChannel channel)
            : base(channel)
        {
        }

        private EpollSocketChannel Ch => (EpollSocketChannel)channel;

        public override unsafe Task ConnectAsync(EndPoint remoteAddress, EndPoint localAddress)
        {
            var ch = Ch;
            if (!ch.Open)
            {
                return CreateClosedChannelExceptionTask();
            }

            if (ch.active)
            {
                // Before the socket is touched: connect() on it would fail with EISCONN and the failure path closes.
                return Task.FromException(new InvalidOperationException("the channel is already connected"));
            }

            try
            {
                if (ch.connectPromise is not null)
                {
                    throw new InvalidOperationException("a connection attempt is already in progress");
                }

                if (localAddress is not null)
                {
                    ch.DoBind(localAddress);
                }

                ch.EnsureSocket(remoteAddress.AddressFamily);
                var buffer = stackalloc byte[SockAddr.MaxSize];
                var length = SockAddr.Write(remoteAddress, buffer);
                if (LibC.connect(ch.fd, buffer, length) == 0)
                {
                    FinishConnected();
                    return Task.CompletedTask;
                }

                var errno = Errno.Last;
                if (errno != LibC.EINPROGRESS)
                {
                    throw Errno.ToException(errno);
                }

                ch.connectPromise = new TaskCompletionSource(remoteAddress);
                ch.Unpark(); // an unconnected socket reports EPOLLHUP; after an explicit bind it may have been parked
                var timeout = ch.config.ConnectTimeout;
                if (timeout > TimeSpan.Zero)
                {
                    ch.connectTimeout = ch.EventLoop.Schedule(
                        static (c, a) => ((EpollUnsafe)((EpollSocketChannel)c!).Unsafe).ConnectTimedOut((EndPoint)a!), ch, remoteAddress, timeout);
                }

                ch.SetInterest(LibC.EPOLLOUT, true);
                return ch.connectPromise.Task;
            }
            catch (Exception ex) when (ex is SocketException or ArgumentException or InvalidOperationException)
            {
                // A connect that failed at once (EADDRNOTAVAIL when ephemeral ports run out, ENETUNREACH) leaves a
                // socket no one will use: close it, and the channel with it (ChannelUnregistered, CloseCompletion), as
                // Netty does.
                if (ex is not InvalidOperationException) // that one is a second attempt: the first goes on
                {
                    ch.DoClose();
                }

                CloseIfClosed();
                return Task.FromException(AnnotateConnectException(ex, remoteAddress));
            }
        }

        /// <summary>
        /// While EPOLLOUT is pending the socket is known to be full: a flush only queues, and the loop writes once epoll
        /// reports room (Netty's AbstractEpollChannel.flush0). Saves a send that can only fail with EAGAIN per flush.
        /// </summary>
        protected override void Flush0()
        {
            var ch = Ch;
            if ((ch.interest & LibC.EPOLLOUT) != 0 && ch.connectPromise is null && ch.Active && !ch.parked)
            {
                return;
            }

            base.Flush0();
        }

        public void OnEvents(uint events)
        {
            var ch = Ch;
            if (ch.connectPromise is not null)
            {
                if ((events & (LibC.EPOLLOUT | LibC.EPOLLERR | LibC.EPOLLHUP)) != 0)
                {
                    FinishConnect();
                }

                return;
            }

            if ((events & LibC.EPOLLOUT) != 0 && ch.fd >= 0)
            {
                // Room in the send buffer again: write what waited. If a failed write emptied the buffer without a
                // close, nothing would turn EPOLLOUT off again and the level-triggered loop would spin.
                base.Flush0();
                if (ch.fd >= 0 && OutboundBuffer is not { Size: > 0 })
                {
                    ch.SetInterest(LibC.EPOLLOUT, false);
                }
            }

            if (ch.fd < 0)
            {
                return;
            }

            var failed = (events & (LibC.EPOLLERR | LibC.EPOLLHUP)) != 0;
            var reading = (ch.interest & LibC.EPOLLIN) != 0;
            if (ch.inputShutdown || (failed && !reading))
            {
                // Nothing is reading (the input ended, or reading is paused): whatever the hang-up or error means,
                // the next write or the resumed read will meet it.
                if (failed)
                {
                    ch.Park();
                }

                return;
            }

            if ((events & ReadInterest) != 0 || failed)
            {
                ReadReady();
            }
        }

        private unsafe void FinishConnect()
        {
            var ch = Ch;
            int error;
            var size = sizeof(int);
            if (LibC.getsockopt(ch.fd, LibC.SOL_SOCKET, LibC.SO_ERROR, &error, &size) != 0)
            {
                error = Errno.Last;
            }

            var promise = ch.connectPromise!;
            ch.connectPromise = null;
            ch.connectTimeout?.Cancel();
            ch.SetInterest(LibC.EPOLLOUT, false);
            if (error != 0)
            {
                promise.TrySetException(AnnotateConnectException(Errno.ToException(error), (EndPoint)promise.Task.AsyncState!));
                CloseIfClosed();
                _ = CloseAsync();
                return;
            }

            FinishConnected();
            promise.TrySetResult();
        }

        private void FinishConnected()
        {
            var ch = Ch;
            var wasActive = ch.Active;
            ch.active = true;
            ch.local = SockAddr.LocalOf(ch.fd);
            ch.remote = SockAddr.RemoteOf(ch.fd);
            if (!wasActive)
            {
                ch.Pipeline.FireChannelActive();
            }
        }

        private void ConnectTimedOut(EndPoint remoteAddress)
        {
            var promise = Ch.connectPromise;
            if (promise is not null && promise.TrySetException(new ConnectTimeoutException($"connection timed out: {remoteAddress}")))
            {
                Ch.connectPromise = null;
                _ = CloseAsync();
            }
        }

        private unsafe void ReadReady()
        {
            var ch = Ch;
            var config = ch.config;

            var pipeline = ch.Pipeline;
            var allocHandle = RecvBufAllocHandle;
            allocHandle.Reset(config);
            var endOfStream = false;
            var errno = 0;
            do
            {
                var buffer = allocHandle.Allocate(config.Allocator);
                var writable = buffer.WritableBytes;
                allocHandle.AttemptedBytesRead = writable;
                nint read;
                var target = buffer.GetIoBuffer(buffer.WriterIndex, writable);
                fixed (byte* start = &target.Array![target.Offset])
                {
                    read = LibC.read(ch.fd, start, writable);
                }

                if (read > 0)
                {
                    buffer.SetWriterIndex(buffer.WriterIndex + (int)read);
                    allocHandle.LastBytesRead = (int)read;
                    allocHandle.IncMessagesRead(1);
                    ch.readPending = false;
                    pipeline.FireChannelRead(buffer);
                    continue;
                }

                buffer.Release();
                allocHandle.LastBytesRead = 0;
                if (read == 0)
                {
                    endOfStream = true;
                }
                else if ((errno = Errno.Last) == LibC.EAGAIN || errno == LibC.EINTR)
                {
                    errno = 0;
                }

                break;
            }
            while (allocHandle.ContinueReading() && ch.fd >= 0);

            allocHandle.ReadComplete();
            pipeline.FireChannelReadComplete();

            if (errno != 0)
            {
                pipeline.FireExceptionCaught(Errno.ToException(errno));
                _ = CloseAsync();
                return;
            }

            if (endOfStream)
            {
                if (config.AllowHalfClosure && ch.Active)
                {
                    // The peer sent FIN: say so and keep the output open, so the server can still answer.
                    ch.inputShutdown = true;
                    ch.SetInterest(ReadInterest, false);
                    pipeline.FireUserEventTriggered(ChannelInputShutdownEvent.Instance);
                }
                else
                {
                    _ = CloseAsync();
                }

                return;
            }

            if (!ch.readPending && !config.AutoRead)
            {
                ch.SetInterest(ReadInterest, false);
            }
        }
    }
}
