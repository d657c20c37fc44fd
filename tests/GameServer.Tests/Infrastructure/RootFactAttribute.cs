using System.Runtime.InteropServices;

namespace GameServer.Tests.Infrastructure;

/// <summary>
/// A case that needs root: it makes a private network namespace and drops its packets with iptables (a pulled cable).
/// Run as another user it is skipped, saying why, rather than failed; CI runs as root and so runs it. README lists them.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed partial class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (!IsRoot)
        {
            Skip = "needs root: makes a private network namespace and firewall rules (run ./run.sh test as root, as CI does)";
        }
    }

    public static bool IsRoot => OperatingSystem.IsLinux() && GetEffectiveUserId() == 0;

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEffectiveUserId();
}
