namespace GameProtocol;

/// <summary>The union tags of docs/PROTOCOL.md. A tag never changes meaning; new messages append.</summary>
public static class MessageTags
{
    public const int Hello = 0;
    public const int Welcome = 1;
    public const int Ping = 2;
    public const int Pong = 3;
    public const int Echo = 4;
    public const int JoinRoom = 5;
    public const int Move = 6;
    public const int StateUpdate = 7;
    public const int StreamRequest = 8;
    public const int StreamItem = 9;
    public const int Goodbye = 10;
    public const int Error = 11;
    public const int Ack = 12;
    public const int Reliable = 13;
    public const int Presence = 14;
}
