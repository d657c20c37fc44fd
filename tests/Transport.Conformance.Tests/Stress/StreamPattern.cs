using System.Buffers.Binary;

namespace Transport.Conformance.Tests.Stress;

/// <summary>
/// The bytes of every stream a stress case sends, derived from (seed, stream, offset) alone. Stream <c>s</c> is a
/// sequence of 8-byte words; word <c>k</c> is an invertible mix of <c>(s, k)</c> keyed by the seed. So the bytes
/// look random (a shifted, repeated or foreign byte is caught at once, at its own offset), and any 8 bytes that
/// once were a word can be decoded back to the stream and offset they came from, which names the connection a
/// stray byte belongs to.
/// </summary>
public sealed class StreamPattern
{
    private const int WordBytes = 8;
    private const int OffsetBits = 40; // word index: streams up to 8 TB
    private const ulong WordIndexMask = (1UL << OffsetBits) - 1;
    private const int MaxStreams = 1 << (64 - OffsetBits);

    // splitmix64's finaliser: a bijection on 64-bit values, and its inverse.
    private const ulong Multiplier1 = 0xbf58476d1ce4e5b9;
    private const ulong Multiplier2 = 0x94d049bb133111eb;
    private static readonly ulong Inverse1 = ModularInverse(Multiplier1);
    private static readonly ulong Inverse2 = ModularInverse(Multiplier2);

    private readonly ulong key;
    private readonly int streamCount;

    /// <param name="seed">The case's seed: two seeds give unrelated bytes.</param>
    /// <param name="streamCount">How many streams exist; a decoded word naming a stream beyond it is noise.</param>
    public StreamPattern(long seed, int streamCount)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(streamCount, MaxStreams);
        key = Mix((ulong)seed);
        this.streamCount = streamCount;
    }

    /// <summary>Writes stream <paramref name="stream"/>'s bytes from <paramref name="offset"/> on into <paramref name="destination"/>.</summary>
    public void Fill(int stream, long offset, Span<byte> destination)
    {
        Span<byte> word = stackalloc byte[WordBytes];
        var position = 0;
        while (position < destination.Length)
        {
            var at = offset + position;
            var index = at / WordBytes;
            var within = (int)(at % WordBytes);
            BinaryPrimitives.WriteUInt64LittleEndian(word, Word(stream, index));
            var take = Math.Min(WordBytes - within, destination.Length - position);
            word.Slice(within, take).CopyTo(destination[position..]);
            position += take;
        }
    }

    /// <summary>
    /// The index of the first byte of <paramref name="received"/> that is not stream <paramref name="stream"/>'s byte at
    /// <paramref name="offset"/> + index, or -1 when all are.
    /// </summary>
    public int FirstMismatch(int stream, long offset, ReadOnlySpan<byte> received)
    {
        Span<byte> expected = stackalloc byte[256];
        var position = 0;
        while (position < received.Length)
        {
            var chunk = expected[..Math.Min(expected.Length, received.Length - position)];
            Fill(stream, offset + position, chunk);
            var part = received.Slice(position, chunk.Length);
            if (!part.SequenceEqual(chunk))
            {
                for (var i = 0; i < chunk.Length; i++)
                {
                    if (part[i] != chunk[i])
                    {
                        return position + i;
                    }
                }
            }

            position += chunk.Length;
        }

        return -1;
    }

    /// <summary>The byte stream <paramref name="stream"/> has at <paramref name="offset"/>.</summary>
    public byte ByteAt(int stream, long offset)
    {
        Span<byte> one = stackalloc byte[1];
        Fill(stream, offset, one);
        return one[0];
    }

    /// <summary>
    /// Where the bytes at <paramref name="index"/> of <paramref name="received"/> came from: the first place at or after
    /// it (within a word) where 8 bytes decode to one of our words, as (where in <paramref name="received"/>, stream,
    /// offset in that stream). Null when nothing there decodes (torn or foreign bytes).
    /// </summary>
    public (int At, int Stream, long Offset)? Identify(ReadOnlySpan<byte> received, int index)
    {
        for (var start = Math.Max(0, index - (WordBytes - 1)); start <= index + WordBytes && start + WordBytes <= received.Length; start++)
        {
            var decoded = Unmix(BinaryPrimitives.ReadUInt64LittleEndian(received.Slice(start, WordBytes))) ^ key;
            var stream = decoded >> OffsetBits;
            if (stream < (ulong)streamCount)
            {
                // A word that starts before the byte covers it; one that starts after it names what follows it.
                var at = Math.Max(start, index);
                return (at, (int)stream, ((long)(decoded & WordIndexMask) * WordBytes) + (at - start));
            }
        }

        return null;
    }

    private ulong Word(int stream, long index) => Mix(((ulong)stream << OffsetBits | ((ulong)index & WordIndexMask)) ^ key);

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * Multiplier1;
        z = (z ^ (z >> 27)) * Multiplier2;
        return z ^ (z >> 31);
    }

    private static ulong Unmix(ulong z)
    {
        z = UndoXorShift(z, 31) * Inverse2;
        z = UndoXorShift(z, 27) * Inverse1;
        return UndoXorShift(z, 30);
    }

    // y = x ^ (x >> s): each pass recovers s more of x's high bits.
    private static ulong UndoXorShift(ulong y, int shift)
    {
        var x = y;
        for (var known = shift; known < 64; known += shift)
        {
            x = y ^ (x >> shift);
        }

        return x;
    }

    // Newton's iteration for odd a: each step doubles the correct low bits (a·a ≡ 1 mod 8 to start).
    private static ulong ModularInverse(ulong a)
    {
        var inverse = a;
        for (var i = 0; i < 5; i++)
        {
            inverse *= 2 - (a * inverse);
        }

        return inverse;
    }
}
