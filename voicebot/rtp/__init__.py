"""RTP media plane (RFC 3550, RFC 4733): packet codec, jitter buffer, DTMF, per-call session core
and the asyncio UDP adapter. Only :mod:`voicebot.rtp.udp` does I/O."""
