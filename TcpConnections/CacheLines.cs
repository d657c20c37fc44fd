using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace TcpConnections;

/// <summary>
/// Asks the CPU to start loading an object's first cache lines now, so a read a little later finds them there. For
/// loops that visit thousands of objects the kernel evicted since their last visit (a tick's sends: each send's kernel
/// work pushes out what the previous member's left), where every first read of each object would otherwise wait for
/// memory. Only a hint: it never faults and changes nothing, so an object the GC moves meanwhile costs one wasted load.
/// </summary>
public static class CacheLines
{
    private const int LineBytes = 64;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Prefetch(object? target, int lines)
    {
        if (target is null || !Sse.IsSupported)
        {
            return;
        }

        // The reference is the object's address (its header word); reading it as a number pins nothing and needs not.
        var address = (byte*)Unsafe.As<object, nint>(ref target);
        for (var line = 0; line < lines; line++)
        {
            Sse.Prefetch0(address + (line * LineBytes));
        }
    }
}
