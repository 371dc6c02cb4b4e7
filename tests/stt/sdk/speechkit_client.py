"""The ``yandex-speechkit`` high-level recognizer pointed at a plaintext custom endpoint.

Run inside the yandex-speechkit venv. This is the SDK as its users call it:
``model_repository.recognition_model(custom_endpoint=(addr, False))`` with an API key, then
``transcribe()`` of an 8 kHz mono AudioSegment. The SDK builds its own options (normalization with
literature_text, speaker labeling DISABLED, a default EOU classifier with a 2000 ms pause hint, its
x-client-request-id) and sends 200 ms chunks without pacing. Prints the transcriptions as JSON.
"""

import argparse
import json
import warnings

warnings.simplefilter("ignore")  # the SDK warns it is deprecated; pydub warns ffmpeg is absent

from pydub import AudioSegment  # noqa: E402
from speechkit import configure_credentials, creds, model_repository  # noqa: E402
from speechkit.stt import AudioProcessingType  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--audio", required=True, help="raw 8 kHz 16-bit little-endian mono PCM")
    parser.add_argument("--languages", default="ru-RU,en-US")
    parser.add_argument("--mode", choices=["full", "stream"], default="full")
    parser.add_argument("--tls", action="store_true", help="custom_endpoint=(addr, True): default root CAs")
    args = parser.parse_args()
    with open(args.audio, "rb") as f:
        audio = AudioSegment(data=f.read(), sample_width=2, frame_rate=8000, channels=1)

    configure_credentials(yandex_credentials=creds.YandexCredentials(api_key=args.api_key))
    model = model_repository.recognition_model(custom_endpoint=(args.endpoint, args.tls))
    model.model = "general"
    model.language = args.languages
    model.audio_processing_type = (
        AudioProcessingType.Full if args.mode == "full" else AudioProcessingType.Stream
    )
    result = model.transcribe(audio)
    out = []
    for transcription in result:
        out.append(
            {
                "channel": transcription.channel,
                "raw_text": transcription.raw_text,
                "normalized_text": transcription.normalized_text,
                "utterances": [
                    {
                        "text": u.text,
                        "normalized_text": u.normalized_text,
                        "start_time_ms": u.start_time_ms,
                        "end_time_ms": u.end_time_ms,
                        "eou_time_ms": u.eou_time_ms,
                        "words": [[w.word, w.start_time_ms, w.end_time_ms] for w in u.words],
                        "languages": [[x.language_code, x.probability] for x in (u.languages or [])],
                    }
                    for u in (transcription.utterances or [])
                ],
            }
        )
    print(json.dumps(out, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
