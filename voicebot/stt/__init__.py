"""Speech recognition: the SpeechKit STT v3 streaming server, its offline engine, and the client."""
