"""The ``yandex-ai-studio-sdk`` speech-to-text model pointed at a plaintext local endpoint.

Run inside that SDK's venv. As its users call it: ``AIStudio(auth=APIKeyAuth(key), endpoint=None,
service_map={"ai-stt-v3": addr}, verify=False)`` (no endpoint discovery, no TLS), then
``sdk.speechkit.speech_to_text(audio_format=PCM16(8000, 1), language_codes=[...],
text_normalization=True)``. ``--mode stream`` uses ``run_stream`` (REAL_TIME, 4000-byte chunks sent
as a burst) and prints each event; ``--mode run`` uses ``run`` (FULL_DATA) and prints the
per-channel utterances. The SDK drops events whose channel_tag is empty, so a server that forgets
it yields nothing here.
"""

import argparse
import json
import warnings

warnings.simplefilter("ignore")

from yandex_ai_studio_sdk import AIStudio  # noqa: E402
from yandex_ai_studio_sdk._speechkit.enums import PCM16  # noqa: E402
from yandex_ai_studio_sdk.auth import APIKeyAuth  # noqa: E402


def _texts(alternatives):
    return None if alternatives is None else [a.text for a in alternatives]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--audio", required=True, help="raw 8 kHz 16-bit little-endian mono PCM")
    parser.add_argument("--languages", default="ru-RU,en-US")
    parser.add_argument("--mode", choices=["stream", "run"], default="stream")
    args = parser.parse_args()
    with open(args.audio, "rb") as f:
        pcm = f.read()

    sdk = AIStudio(
        folder_id="local-folder",
        auth=APIKeyAuth(args.api_key),
        endpoint=None,
        service_map={"ai-stt-v3": args.endpoint},
        verify=False,
    )
    stt = sdk.speechkit.speech_to_text(
        audio_format=PCM16(8000, 1), language_codes=args.languages.split(","), text_normalization=True
    )
    if args.mode == "stream":
        chunks = [pcm[i : i + 4000] for i in range(0, len(pcm), 4000)]
        for event in stt.run_stream(chunks):
            print(
                json.dumps(
                    {
                        "event": event.event_type.value,
                        "channel_tag": event.channel_tag,
                        "partial": _texts(event.partial),
                        "final": _texts(event.final),
                        "final_refinement": None
                        if event.final_refinement is None
                        else event.final_refinement.text,
                        "eou_update_ms": event.eou_update_ms,
                    },
                    ensure_ascii=False,
                ),
                flush=True,
            )
    else:
        result = stt.run(pcm)
        print(
            json.dumps(
                [
                    {
                        "tag": channel.tag,
                        "utterances": [
                            {"final_text": u.final_text, "refined": u.final_refinement_text}
                            for u in channel.utterances
                        ],
                    }
                    for channel in result
                ],
                ensure_ascii=False,
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
