namespace LoadTests.Harness;

/// <summary>The outcome of one invocation or step, in NBomber's vocabulary.</summary>
public sealed record Response(bool IsError, string StatusCode, long SizeBytes, string Message)
{
    public static Response Ok(string statusCode = "ok", long sizeBytes = 0, string message = "") => new(false, statusCode, sizeBytes, message);

    public static Response Fail(string statusCode = "fail", long sizeBytes = 0, string message = "") => new(true, statusCode, sizeBytes, message);
}
