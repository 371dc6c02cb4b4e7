"""Golden byte vectors of the SpeechKit STT v3 wire reference (section 3), encode and decode."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt._proto import stt_service_pb2

pytestmark = pytest.mark.unit


def _official_options() -> pb.StreamingRequest:
    return pb.StreamingRequest(
        session_options=pb.StreamingOptions(
            recognition_model=pb.RecognitionModelOptions(
                audio_format=pb.AudioFormatOptions(
                    raw_audio=pb.RawAudio(
                        audio_encoding=pb.RawAudio.LINEAR16_PCM, sample_rate_hertz=8000, audio_channel_count=1
                    )
                ),
                text_normalization=pb.TextNormalizationOptions(
                    text_normalization=pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED,
                    profanity_filter=True,
                ),
                language_restriction=pb.LanguageRestrictionOptions(
                    restriction_type=pb.LanguageRestrictionOptions.WHITELIST, language_code=["ru-RU"]
                ),
                audio_processing_type=pb.RecognitionModelOptions.REAL_TIME,
            )
        )
    )


def _full_response() -> pb.StreamingResponse:
    word = pb.Word(text="hi", start_time_ms=100, end_time_ms=400)
    return pb.StreamingResponse(
        session_uuid=pb.SessionUuid(uuid="u", user_request_id="r"),
        audio_cursors=pb.AudioCursors(received_data_ms=1000, partial_time_ms=900),
        response_wall_time_ms=1,
        final=pb.AlternativeUpdate(
            alternatives=[pb.Alternative(words=[word], text="hi", start_time_ms=100, end_time_ms=400)]
        ),
        channel_tag="0",
    )


GOLDEN: list[tuple[str, Message, str]] = [
    (
        "official options",
        _official_options(),
        "0a200a1e12090a07080110c03e18011a040801100122090801120572752d52552801",
    ),
    ("chunk", pb.StreamingRequest(chunk=pb.AudioChunk(data=b"\x01\x02")), "12040a020102"),
    ("silence", pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=500)), "1a0308f403"),
    ("eou", pb.StreamingRequest(eou=pb.Eou()), "2200"),
    (
        "external classifier",
        pb.StreamingRequest(
            session_options=pb.StreamingOptions(
                eou_classifier=pb.EouClassifierOptions(external_classifier=pb.ExternalEouClassifier())
            )
        ),
        "0a0412021200",
    ),
    ("status working", pb.StreamingResponse(status_code=pb.StatusCode(code_type=pb.WORKING)), "42020801"),
    ("empty partial", pb.StreamingResponse(partial=pb.AlternativeUpdate()), "2200"),
    ("eou update", pb.StreamingResponse(eou_update=pb.EouUpdate(time_ms=1200)), "320310b009"),
    (
        "refinement",
        pb.StreamingResponse(
            final_refinement=pb.FinalRefinement(
                final_index=0,
                normalized_text=pb.AlternativeUpdate(alternatives=[pb.Alternative(text="Hi")]),
            )
        ),
        "3a0812060a0412024869",
    ),
    (
        "full final",
        _full_response(),
        "0a060a0175120172120608e80718840718012a160a140a090a02686910641890031202686918642090034a0130",
    ),
]


@pytest.mark.parametrize(("name", "message", "golden_hex"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_encode_matches_golden(name: str, message: Message, golden_hex: str) -> None:
    assert message.SerializeToString(deterministic=True).hex() == golden_hex


@pytest.mark.parametrize(("name", "message", "golden_hex"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_decode_matches_golden(name: str, message: Message, golden_hex: str) -> None:
    decoded = type(message).FromString(bytes.fromhex(golden_hex))
    assert decoded == message


def test_empty_partial_keeps_presence() -> None:
    decoded = pb.StreamingResponse.FromString(bytes.fromhex("2200"))
    assert decoded.WhichOneof("Event") == "partial"
    assert len(decoded.partial.alternatives) == 0


def test_decoded_fields_of_the_full_final() -> None:
    decoded = pb.StreamingResponse.FromString(bytes.fromhex(GOLDEN[-1][2]))
    assert decoded.WhichOneof("Event") == "final"
    assert decoded.channel_tag == "0"
    assert decoded.session_uuid.user_request_id == "r"
    assert decoded.audio_cursors.received_data_ms == 1000
    word = decoded.final.alternatives[0].words[0]
    assert (word.text, word.start_time_ms, word.end_time_ms) == ("hi", 100, 400)


def test_unknown_fields_are_ignored_and_order_does_not_matter() -> None:
    # channel_tag (9) first, then an unknown field 99 (varint), then status_code (8).
    wire = bytes.fromhex("4a0130") + bytes.fromhex("98060f") + bytes.fromhex("42020801")
    decoded = pb.StreamingResponse.FromString(wire)
    assert decoded.channel_tag == "0"
    assert decoded.status_code.code_type == pb.WORKING


def test_field_numbers_of_the_response_oneof() -> None:
    fields = pb.StreamingResponse.DESCRIPTOR.fields_by_name
    numbers = {name: fields[name].number for name in fields}
    assert numbers == {
        "session_uuid": 1, "audio_cursors": 2, "response_wall_time_ms": 3, "partial": 4, "final": 5,
        "eou_update": 6, "final_refinement": 7, "status_code": 8, "channel_tag": 9,
        "classifier_update": 10, "speaker_analysis": 11, "conversation_analysis": 12, "summarization": 13,
    }
    assert fields["channel_tag"].containing_oneof is None
    assert pb.EouUpdate.DESCRIPTOR.fields_by_name["time_ms"].number == 2


def test_service_method_path() -> None:
    service = stt_service_pb2.DESCRIPTOR.services_by_name["Recognizer"]
    method = service.methods_by_name["RecognizeStreaming"]
    assert service.full_name == "speechkit.stt.v3.Recognizer"
    assert method.client_streaming and method.server_streaming
    assert method.input_type.full_name == "speechkit.stt.v3.StreamingRequest"
