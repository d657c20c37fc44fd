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

    /// <summary>Starts loading the lines that hold <paramref name="target"/> from its reference to <paramref name="bytes"/> past it (its fields' offsets).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Prefetch(object? target, int bytes)
    {
        if (target is null || !Sse.IsSupported)
        {
            return;
        }

        // A reference is the address of the object's type pointer, its fields follow it; objects are aligned to 8
        // bytes, not to lines, so the span is walked from the line the object starts in to the one its last byte is in.
        var start = Unsafe.As<object, nint>(ref target);
        for (var line = start & ~(nint)(LineBytes - 1); line < start + bytes; line += LineBytes)
        {
            Sse.Prefetch0((void*)line);
        }
    }
}
