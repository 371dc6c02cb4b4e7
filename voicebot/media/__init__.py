"""Audio helpers for the telephone band: G.711 codecs, resampling and 20 ms framing."""
