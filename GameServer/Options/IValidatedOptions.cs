namespace GameServer.Options;

/// <summary>An options class that can say what is wrong with it, naming the configuration key and the value.</summary>
public interface IValidatedOptions
{
    IEnumerable<string> Validate();
}
