using System.Runtime.InteropServices;

namespace Transport.Epoll.Native;

/// <summary>
/// An array of <c>struct epoll_event</c> in native memory. The struct is packed on x86-64 (12 bytes, data at offset
/// 4) and naturally aligned elsewhere (16 bytes, data at offset 8), so it is read by offset, not by a C# struct.
/// </summary>
internal sealed unsafe class EpollEvents : IDisposable
{
    private static readonly int Size = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;
    private static readonly int DataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    private byte* memory;

    public EpollEvents(int capacity)
    {
        Capacity = capacity;
        memory = (byte*)NativeMemory.AllocZeroed((nuint)(capacity * Size));
    }

    public int Capacity { get; }

    public void* Pointer => memory;

    public uint EventsAt(int index) => *(uint*)(memory + (index * Size));

    public ulong DataAt(int index) => *(ulong*)(memory + (index * Size) + DataOffset);

    /// <summary>Fills a single event for <c>epoll_ctl</c> in caller-provided stack memory of at least 16 bytes.</summary>
    public static void Write(byte* target, uint events, ulong data)
    {
        *(uint*)target = events;
        *(ulong*)(target + DataOffset) = data;
    }

    public void Dispose()
    {
        if (memory != null)
        {
            NativeMemory.Free(memory);
            memory = null;
        }
    }
}
