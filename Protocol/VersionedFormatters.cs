using MessagePack;
using MessagePack.Formatters;

namespace GameProtocol;

// Version 2 appends fields to Hello, Welcome and StateUpdate. A version 1 peer must get exactly the version 1 bytes,
// so these formatters write the appended fields only when the message is a version 2 one. Reading is as tolerant as
// the generated formatters: missing trailing fields take their defaults, extra ones are skipped.

internal sealed class HelloFormatter : IMessagePackFormatter<Hello?>
{
    public void Serialize(ref MessagePackWriter writer, Hello? value, MessagePackSerializerOptions options)
    {
        if (value is null)
        {
            writer.WriteNil();
            return;
        }

        var v2 = value.ProtocolVersion >= Framing.ProtocolVersion2;
        writer.WriteArrayHeader(v2 ? 4 : 3);
        writer.Write(value.ProtocolVersion);
        writer.Write(value.PlayerName);
        writer.Write(value.ResumeToken);
        if (v2)
        {
            writer.Write(value.LastReceivedSeq);
        }
    }

    public Hello? Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options)
    {
        if (reader.TryReadNil())
        {
            return null;
        }

        options.Security.DepthStep(ref reader);
        var count = reader.ReadArrayHeader();
        int version = 0;
        string? name = null;
        string? token = null;
        long last = 0;
        for (var i = 0; i < count; i++)
        {
            switch (i)
            {
                case 0: version = reader.ReadInt32(); break;
                case 1: name = reader.ReadString(); break;
                case 2: token = reader.ReadString(); break;
                case 3: last = reader.ReadInt64(); break;
                default: reader.Skip(); break;
            }
        }

        reader.Depth--;
        return new Hello(version, name!, token, last);
    }
}

internal sealed class WelcomeFormatter : IMessagePackFormatter<Welcome?>
{
    public void Serialize(ref MessagePackWriter writer, Welcome? value, MessagePackSerializerOptions options)
    {
        if (value is null)
        {
            writer.WriteNil();
            return;
        }

        var v2 = value.ResumeToken is not null;
        writer.WriteArrayHeader(v2 ? 7 : 3);
        writer.Write(value.SessionId);
        writer.Write(value.HeartbeatIntervalMs);
        writer.Write(value.ServerTimeUnixMs);
        if (v2)
        {
            writer.Write(value.ResumeToken);
            writer.Write(value.ResumeWindowMs);
            writer.Write(value.Resumed);
            writer.Write(value.LastReceivedSeq);
        }
    }

    public Welcome? Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options)
    {
        if (reader.TryReadNil())
        {
            return null;
        }

        options.Security.DepthStep(ref reader);
        var count = reader.ReadArrayHeader();
        string? sessionId = null;
        int interval = 0;
        long time = 0;
        string? token = null;
        int window = 0;
        bool resumed = false;
        long last = 0;
        for (var i = 0; i < count; i++)
        {
            switch (i)
            {
                case 0: sessionId = reader.ReadString(); break;
                case 1: interval = reader.ReadInt32(); break;
                case 2: time = reader.ReadInt64(); break;
                case 3: token = reader.ReadString(); break;
                case 4: window = reader.ReadInt32(); break;
                case 5: resumed = reader.ReadBoolean(); break;
                case 6: last = reader.ReadInt64(); break;
                default: reader.Skip(); break;
            }
        }

        reader.Depth--;
        return new Welcome(sessionId!, interval, time, token, window, resumed, last);
    }
}

internal sealed class StateUpdateFormatter : IMessagePackFormatter<StateUpdate?>
{
    public void Serialize(ref MessagePackWriter writer, StateUpdate? value, MessagePackSerializerOptions options)
    {
        if (value is null)
        {
            writer.WriteNil();
            return;
        }

        writer.WriteArrayHeader(value.AfterGap ? 4 : 3);
        writer.Write(value.Tick);
        writer.Write(value.ServerTimeUnixMs);
        options.Resolver.GetFormatterWithVerify<IReadOnlyList<PlayerState>>().Serialize(ref writer, value.Players, options);
        if (value.AfterGap)
        {
            writer.Write(true);
        }
    }

    public StateUpdate? Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options)
    {
        if (reader.TryReadNil())
        {
            return null;
        }

        options.Security.DepthStep(ref reader);
        var count = reader.ReadArrayHeader();
        long tick = 0;
        long time = 0;
        IReadOnlyList<PlayerState>? players = null;
        var afterGap = false;
        for (var i = 0; i < count; i++)
        {
            switch (i)
            {
                case 0: tick = reader.ReadInt64(); break;
                case 1: time = reader.ReadInt64(); break;
                case 2: players = options.Resolver.GetFormatterWithVerify<IReadOnlyList<PlayerState>>().Deserialize(ref reader, options); break;
                case 3: afterGap = reader.ReadBoolean(); break;
                default: reader.Skip(); break;
            }
        }

        reader.Depth--;
        return new StateUpdate(tick, time, players!, afterGap);
    }
}
