"""SpeechKit v3 request builders shared by the session and server tests."""

from __future__ import annotations

from collections.abc import Sequence

from voicebot.stt._proto import stt_pb2 as pb

RATE = 8000


def raw_options(
    rate: int = RATE,
    *,
    channels: int = 1,
    encoding: pb.RawAudio.AudioEncoding = pb.RawAudio.LINEAR16_PCM,
    normalization: bool = True,
    full_data: bool = False,
    languages: Sequence[str] = ("en-US",),
    eou: pb.EouClassifierOptions | None = None,
) -> pb.StreamingRequest:
    model = pb.RecognitionModelOptions(
        audio_format=pb.AudioFormatOptions(
            raw_audio=pb.RawAudio(
                audio_encoding=encoding, sample_rate_hertz=rate, audio_channel_count=channels
            )
        ),
        text_normalization=pb.TextNormalizationOptions(
            text_normalization=pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
            if normalization
            else pb.TextNormalizationOptions.TEXT_NORMALIZATION_DISABLED
        ),
        language_restriction=pb.LanguageRestrictionOptions(
            restriction_type=pb.LanguageRestrictionOptions.WHITELIST, language_code=list(languages)
        ),
        audio_processing_type=pb.RecognitionModelOptions.FULL_DATA
        if full_data
        else pb.RecognitionModelOptions.REAL_TIME,
    )
    options = pb.StreamingOptions(recognition_model=model)
    if eou is not None:
        options.eou_classifier.CopyFrom(eou)
    return pb.StreamingRequest(session_options=options)
