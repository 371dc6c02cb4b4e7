"""SpeechKit v3 streaming client in the shape of the official example, run inside an SDK's venv.

It uses ONLY the third-party generated stubs (``yandex.cloud.ai.stt.v3.stt_pb2`` /
``stt_service_pb2_grpc`` from ``yandexcloud`` or ``yandex-speechkit``), never voicebot's, and sends
the official example's options (LINEAR16_PCM 8000 Hz mono, normalization with profanity filter, a
language whitelist, REAL_TIME) followed by the audio in 4000-byte chunks, paced at real time unless
``--burst`` (the example itself does not pace). Each response is printed as one JSON line; the last
line is the gRPC status. Runs with ``python -I`` so nothing of voicebot is importable.
"""

import argparse
import json
import time
import warnings

warnings.simplefilter("ignore")

import grpc  # noqa: E402
from yandex.cloud.ai.stt.v3 import stt_pb2, stt_service_pb2_grpc  # noqa: E402

CHUNK_SIZE = 4000  # the official example's chunk size: 250 ms of 8 kHz 16-bit mono


def options(languages):
    return stt_pb2.StreamingOptions(
        recognition_model=stt_pb2.RecognitionModelOptions(
            audio_format=stt_pb2.AudioFormatOptions(
                raw_audio=stt_pb2.RawAudio(
                    audio_encoding=stt_pb2.RawAudio.LINEAR16_PCM,
                    sample_rate_hertz=8000,
                    audio_channel_count=1,
                )
            ),
            text_normalization=stt_pb2.TextNormalizationOptions(
                text_normalization=stt_pb2.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED,
                profanity_filter=True,
                literature_text=False,
            ),
            language_restriction=stt_pb2.LanguageRestrictionOptions(
                restriction_type=stt_pb2.LanguageRestrictionOptions.WHITELIST, language_code=languages
            ),
            audio_processing_type=stt_pb2.RecognitionModelOptions.REAL_TIME,
        )
    )


def requests(pcm, languages, burst):
    yield stt_pb2.StreamingRequest(session_options=options(languages))
    start = time.monotonic()
    for n, i in enumerate(range(0, len(pcm), CHUNK_SIZE)):
        yield stt_pb2.StreamingRequest(chunk=stt_pb2.AudioChunk(data=pcm[i : i + CHUNK_SIZE]))
        if not burst:
            time.sleep(max(0.0, start + (n + 1) * CHUNK_SIZE / 16000 - time.monotonic()))


def describe(r):
    event = r.WhichOneof("Event")
    line = {
        "event": event,
        "channel_tag": r.channel_tag,
        "uuid": r.session_uuid.uuid,
        "user_request_id": r.session_uuid.user_request_id,
        "wall_ms": r.response_wall_time_ms,
        "cursors": {
            "received_data_ms": r.audio_cursors.received_data_ms,
            "partial_time_ms": r.audio_cursors.partial_time_ms,
            "final_time_ms": r.audio_cursors.final_time_ms,
            "final_index": r.audio_cursors.final_index,
            "eou_time_ms": r.audio_cursors.eou_time_ms,
        },
    }
    # The official example's printout: texts of the partial/final/final_refinement alternatives.
    if event in ("partial", "final"):
        update = getattr(r, event)
        line["texts"] = [a.text for a in update.alternatives]
        line["words"] = [
            [w.text, w.start_time_ms, w.end_time_ms] for a in update.alternatives for w in a.words
        ]
        line["span_ms"] = [[a.start_time_ms, a.end_time_ms] for a in update.alternatives]
    elif event == "final_refinement":
        line["texts"] = [a.text for a in r.final_refinement.normalized_text.alternatives]
        line["final_index"] = r.final_refinement.final_index
    elif event == "eou_update":
        line["time_ms"] = r.eou_update.time_ms
    elif event == "status_code":
        line["code_type"] = stt_pb2.CodeType.Name(r.status_code.code_type)
        line["message"] = r.status_code.message
    return line


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--audio", required=True, help="raw 8 kHz 16-bit little-endian mono PCM")
    parser.add_argument("--languages", default="ru-RU,en-US")
    parser.add_argument("--request-id", default="")
    parser.add_argument("--burst", action="store_true", help="send without pacing, like the official example")
    parser.add_argument(
        "--tls", action="store_true", help="grpc.ssl_channel_credentials() with default roots, as the example"
    )
    args = parser.parse_args()
    with open(args.audio, "rb") as f:
        pcm = f.read()
    print(json.dumps({"stubs": stt_pb2.__file__, "grpc": grpc.__version__}), flush=True)
    metadata = [("authorization", f"Api-Key {args.api_key}")]
    if args.request_id:
        metadata.append(("x-client-request-id", args.request_id))
    if args.tls:
        # Exactly the official example's channel: default root CAs (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH).
        channel_cm = grpc.secure_channel(args.endpoint, grpc.ssl_channel_credentials())
    else:
        channel_cm = grpc.insecure_channel(args.endpoint)
    with channel_cm as channel:
        stub = stt_service_pb2_grpc.RecognizerStub(channel)
        it = stub.RecognizeStreaming(requests(pcm, args.languages.split(","), args.burst), metadata=metadata)
        try:
            for r in it:
                print(json.dumps(describe(r), ensure_ascii=False), flush=True)
        except grpc.RpcError as err:
            print(json.dumps({"status": err.code().name, "details": err.details()}), flush=True)
            return
    print(json.dumps({"status": it.code().name, "details": it.details()}), flush=True)


if __name__ == "__main__":
    main()
