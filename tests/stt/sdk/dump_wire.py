"""Dump what a third-party SpeechKit package puts on the wire, run inside that package's venv.

Prints one JSON object: the package's compiled ``yandex/cloud/ai/stt/v3/stt.proto`` as a serialized
FileDescriptorProto (base64), the Recognizer service's method paths, and, for ``yandex-speechkit``,
the exact requests its high-level recognizer generates (hex). ``capture.py`` stores this under
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
                "requests": speechkit_requests() if package == "yandex-speechkit" else {},
            },
            indent=1,
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
