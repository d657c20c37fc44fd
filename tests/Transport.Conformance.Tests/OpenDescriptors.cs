namespace Transport.Conformance.Tests;

/// <summary>
/// The process's open descriptors of the kinds a transport makes (Linux: <c>/proc/self/fd</c>), to prove a case
/// leaked none.
/// </summary>
public static class OpenDescriptors
{
    private const string Directory = "/proc/self/fd";

    /// <summary>Descriptor number to what it refers to (<c>socket:[123]</c>, <c>anon_inode:[eventpoll]</c>, a path).</summary>
    public static Dictionary<int, string> Snapshot()
    {
        var open = new Dictionary<int, string>();
        foreach (var entry in System.IO.Directory.EnumerateFileSystemEntries(Directory))
        {
            if (int.TryParse(Path.GetFileName(entry), out var fd))
            {
                try
                {
                    var target = new FileInfo(entry).LinkTarget ?? "?";
                    if (IsKernelObject(target))
                    {
                        open[fd] = target;
                    }
                }
                catch (IOException)
                {
                    // closed between the listing and the look (the listing's own descriptor, for one)
                }
            }
        }

        return open;
    }

    /// <summary>What is open now that was not open in <paramref name="before"/> (a reused number with a new target counts).</summary>
    public static IReadOnlyDictionary<int, string> OpenedSince(IReadOnlyDictionary<int, string> before) =>
        Snapshot().Where(a => !before.TryGetValue(a.Key, out var target) || target != a.Value).ToDictionary(a => a.Key, a => a.Value);

    /// <summary>Descriptors grouped by kind, for a failure message: "3 × socket (fd 41 42 57)".</summary>
    public static string Describe(IReadOnlyDictionary<int, string> descriptors) =>
        string.Join(", ", descriptors.GroupBy(a => KindOf(a.Value)).Select(g => $"{g.Count()} × {g.Key} (fd {string.Join(' ', g.Take(5).Select(a => a.Key))})"));

    // Sockets, pipes, epoll sets and eventfds: what a transport opens. Files are left out: the runtime keeps each
    // assembly (and its symbols) open from its first use on, and the listing's own directory handle shows up in it.
    private static bool IsKernelObject(string target) =>
        target.StartsWith("socket:", StringComparison.Ordinal)
        || target.StartsWith("pipe:", StringComparison.Ordinal)
        || target.StartsWith("anon_inode:", StringComparison.Ordinal);

    private static string KindOf(string target) => target.StartsWith("socket:", StringComparison.Ordinal) ? "socket" : target;
}
