using System.Globalization;
using Microsoft.Extensions.Options;

namespace GameServer.Options;

/// <summary>Error texts that name the key and the value, so an operator can fix the configuration at once.</summary>
public static class OptionErrors
{
    public static string Invalid(string section, string key, object? value, string expected) =>
        string.Create(CultureInfo.InvariantCulture, $"{section}:{key} = '{value}' is invalid: expected {expected}");

    public static IEnumerable<string> Range(string section, string key, long value, long min, long max)
    {
        if (value < min || value > max)
        {
            yield return Invalid(section, key, value, $"a number from {min} to {max}");
        }
    }
}

/// <summary>Runs an options class's own validation for the options system (and so on start).</summary>
public sealed class DelegateOptionsValidator<T>(Func<T, IEnumerable<string>> validate) : IValidateOptions<T>
    where T : class
{
    public ValidateOptionsResult Validate(string? name, T options)
    {
        var errors = validate(options).ToList();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
