"""voicebot: a telephony voice robot.

SIP/RTP user agent (``voicebot.sip``, ``voicebot.rtp``), audio conversion (``voicebot.media``),
SpeechKit STT v3 streaming recognition server and client (``voicebot.stt``), prompt synthesis
(``voicebot.tts``) and YAML dialplans (``voicebot.dialog``). ``voicebot.app`` wires them into calls.
"""

__version__ = "0.1.0"
