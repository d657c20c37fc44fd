using Microsoft.Extensions.Options;
using TcpConnections;

namespace GameServer.Options;

/// <summary>Runs an options class's own validation for the options system (and so on start).</summary>
public sealed class ValidatedOptionsValidator<T> : IValidateOptions<T>
    where T : class, IValidatedOptions
{
    public ValidateOptionsResult Validate(string? name, T options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = options.Validate().ToList();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
