"""Dump what a third-party SpeechKit package puts on the wire, run inside that package's venv.

Prints one JSON object: the package's compiled ``yandex/cloud/ai/stt/v3/stt.proto`` as a serialized
FileDescriptorProto (base64), the Recognizer service's method paths, and, for ``yandex-speechkit``,
the exact requests its high-level recognizer generates (hex), and for ``yandex-ai-studio-sdk``
the options its speech_to_text model builds. ``capture.py`` stores this under
``captured/`` for the unit tests; the SDK test re-runs it to prove the stored copy is current.
"""

import base64
import importlib.metadata
import json
import sys
import warnings

warnings.simplefilter("ignore")

import google.protobuf  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2  # noqa: E402


def speechkit_requests():
    """The SDK's own request generator (name-mangled private staticmethod), 0.25 s of audio."""
    from speechkit.stt import AudioProcessingType
    from speechkit.stt.yandex.config import YandexRecognitionConfig
    from speechkit.stt.yandex.model import YandexRecognizer

    generate = YandexRecognizer._YandexRecognizer__gen_requests
    pcm = bytes(range(256)) * 13  # 3328 bytes: the SDK cuts 3200-byte (200 ms) chunks at 8 kHz
    configs = {
        "speechkit_full_default": YandexRecognitionConfig(),
        "speechkit_stream_languages": YandexRecognitionConfig(
            model="general", language="ru-RU,en-US", audio_processing_type=AudioProcessingType.Stream
        ),
    }
    out = {}
    for name, config in configs.items():
        requests = list(generate(pcm, 1, 8000, 2, config))
        # The options message is what the SDK adds; chunks are plain AudioChunks (golden-tested).
        out[name] = requests[0].SerializeToString(deterministic=True).hex()
        out[name + ".chunk_sizes"] = [len(r.chunk.data) for r in requests[1:]]
    return out


def ai_studio_requests():
    """The options the AI Studio SDK builds for its speech_to_text model (no network involved)."""
    from yandex_ai_studio_sdk import AIStudio
    from yandex_ai_studio_sdk._speechkit.enums import PCM16
    from yandex_ai_studio_sdk._speechkit.speech_to_text.utils import create_streaming_options
    from yandex_ai_studio_sdk.auth import APIKeyAuth

    sdk = AIStudio(
        folder_id="f", auth=APIKeyAuth("k"), endpoint=None, service_map={"ai-stt-v3": "x:1"}, verify=False
    )
    stt = sdk.speechkit.speech_to_text(
        audio_format=PCM16(8000, 1), language_codes=["ru-RU", "en-US"], text_normalization=True
    )
    external = stt.configure(eou_classifier=False)
    out = {}
    for name, model, mode in [
        ("ai_studio_real_time", stt, "real_time"),
        ("ai_studio_full_data", stt, "full_data"),
        ("ai_studio_external_eou", external, "real_time"),
    ]:
        options = create_streaming_options(sdk=sdk, config=model._config, mode=mode)
        request = stt_pb2.StreamingRequest(session_options=options)
        out[name] = request.SerializeToString(deterministic=True).hex()
    return out


REQUESTS = {"yandex-speechkit": speechkit_requests, "yandex-ai-studio-sdk": ai_studio_requests}


def main():
    package = sys.argv[1]
    proto = descriptor_pb2.FileDescriptorProto()
    stt_pb2.DESCRIPTOR.CopyToProto(proto)
    service = stt_service_pb2.DESCRIPTOR.services_by_name["Recognizer"]
    print(
        json.dumps(
            {
                "package": package,
                "version": importlib.metadata.version(package),
                "protobuf": google.protobuf.__version__,
                "stt_proto": base64.b64encode(proto.SerializeToString(deterministic=True)).decode(),
                "methods": {
                    f"/{service.full_name}/{m.name}": [m.input_type.full_name, m.output_type.full_name]
                    for m in service.methods
                },
                "requests": REQUESTS[package]() if package in REQUESTS else {},
            },
            indent=1,
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
