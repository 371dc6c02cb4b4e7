"""Audio helpers for the telephone band: G.711 codecs, WAV reading, resampling and 20 ms framing.

A leaf package: it imports nothing else from voicebot, and rtp, stt, tts and the app use it.
"""
