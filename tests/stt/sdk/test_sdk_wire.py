"""Third-party SpeechKit stubs and ours, in one process, byte for byte (in memory, no sockets).

Two different ``stt.proto`` files cannot share Python's default descriptor pool, but they can live in
separate pools. ``captured/*.json`` holds the compiled ``yandex/cloud/ai/stt/v3/stt.proto`` of
``yandexcloud`` 0.413.0 (cloudapi HEAD) and of ``yandex-speechkit`` 1.7.0 (its 2024-11 copy), dumped
from each package's own venv by ``dump_wire.py`` (``test_sdk_clients.py`` re-runs it and checks the
files are current). Here each is loaded into a private pool, and:

* every message and enum they share with ours has identical fields/values (both directions);
* every shared message, filled with a value in every field (each oneof member in turn, maps,
  repeated, nested), serialized by THEIR classes parses with OURS to the same content and
  re-serializes to the same bytes, and the same the other way round;
* the exact options the ``yandex-speechkit`` high-level recognizer and the ``yandex-ai-studio-sdk``
  speech_to_text model send (captured from their own builders) parse with ours to what the SDK
  meant, and our sans-IO session accepts them. (The AI Studio SDK compiles no stt.proto of its own:
  it uses yandexcloud's, which is checked here.)

The golden vectors of the reference are in ``tests/stt/test_proto_golden.py``; this adds only what
the SDKs bring (their whole schema and the high-level client's options).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from tests.stt.sdk.venvs import AI_STUDIO, SPEECHKIT, YANDEXCLOUD, captured_path
from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.engine import Endpointer
from voicebot.stt.session import DEFAULT_PAUSE_MS, EXTERNAL_PAUSE_MS, Close, Send, Session

pytestmark = pytest.mark.unit

PACKAGE = "speechkit.stt.v3"


def _load(package: str, version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(captured_path(package, version).read_text())
    assert (data["package"], data["version"]) == (package, version)
    return data


class ForeignSchema:
    """One SDK's compiled stt.proto in its own descriptor pool, with message classes."""

    def __init__(self, package: str, version: str) -> None:
        self.name = f"{package}=={version}"
        self.data = _load(package, version)
        self.pool = descriptor_pool.DescriptorPool()
        struct_file = descriptor_pb2.FileDescriptorProto()
        struct_pb2.DESCRIPTOR.CopyToProto(struct_file)
        self.pool.Add(struct_file)
        self.file_proto = descriptor_pb2.FileDescriptorProto.FromString(
            base64.b64decode(self.data["stt_proto"])
        )
        self.pool.Add(self.file_proto)
        self.file = self.pool.FindFileByName(self.file_proto.name)

    def message_class(self, full_name: str) -> type[Message]:
        cls: type[Message] = message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))
        return cls


SCHEMAS = [ForeignSchema(*YANDEXCLOUD), ForeignSchema(*SPEECHKIT)]


def _messages(top: list[Descriptor]) -> dict[str, Descriptor]:
    found: dict[str, Descriptor] = {}
    stack = list(top)
    while stack:
        d = stack.pop()
        found[d.full_name] = d
        stack.extend(d.nested_types)
    return found


def _enums(messages: dict[str, Descriptor], top: list[EnumDescriptor]) -> dict[str, EnumDescriptor]:
    found = {e.full_name: e for e in top}
    for d in messages.values():
        found.update({e.full_name: e for e in d.enum_types})
    return found


OURS = _messages(list(pb.DESCRIPTOR.message_types_by_name.values()))
OUR_ENUMS = _enums(OURS, list(pb.DESCRIPTOR.enum_types_by_name.values()))


def _theirs(schema: ForeignSchema) -> tuple[dict[str, Descriptor], dict[str, EnumDescriptor]]:
    messages = _messages(list(schema.file.message_types_by_name.values()))
    return messages, _enums(messages, list(schema.file.enum_types_by_name.values()))


def _field_key(f: FieldDescriptor) -> tuple[object, ...]:
    type_name = f.message_type.full_name if f.message_type else f.enum_type.full_name if f.enum_type else ""
    oneof = f.containing_oneof.name if f.containing_oneof else None
    return (f.number, f.name, f.type, f.is_repeated, type_name, oneof, f.has_presence)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_the_captured_schema_is_the_speechkit_v3_package(schema: ForeignSchema) -> None:
    assert schema.file_proto.package == PACKAGE
    assert schema.file_proto.name == "yandex/cloud/ai/stt/v3/stt.proto"
    assert schema.data["methods"] == {
        "/speechkit.stt.v3.Recognizer/RecognizeStreaming": [
            "speechkit.stt.v3.StreamingRequest",
            "speechkit.stt.v3.StreamingResponse",
        ]
    }


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_shared_messages_and_enums_are_identical(schema: ForeignSchema) -> None:
    messages, enums = _theirs(schema)
    shared = sorted(set(messages) & set(OURS))
    assert "speechkit.stt.v3.StreamingRequest" in shared and "speechkit.stt.v3.StreamingResponse" in shared
    problems = []
    added = []
    for name in shared:
        theirs = {f.number: _field_key(f) for f in messages[name].fields}
        ours = {f.number: _field_key(f) for f in OURS[name].fields}
        for number in sorted(theirs):
            if theirs[number] != ours.get(number):
                problems.append(f"{name} field {number}: theirs {theirs[number]}, ours {ours.get(number)}")
        added.extend(
            f"{name.removeprefix(PACKAGE + '.')}.{ours[n][1]}" for n in sorted(set(ours) - set(theirs))
        )
    for name in sorted(set(enums) & set(OUR_ENUMS)):
        theirs_values = {v.name: v.number for v in enums[name].values}
        ours_values = {v.name: v.number for v in OUR_ENUMS[name].values}
        if theirs_values != ours_values:
            problems.append(f"enum {name}: theirs {theirs_values}, ours {ours_values}")
    assert not problems, "\n".join(problems)
    # Fields only we have are later upstream additions (reference §7), never a clash.
    assert added == EXPECTED_ADDITIONS[schema.name], added


EXPECTED_ADDITIONS = {
    "yandexcloud==0.413.0": [],  # cloudapi HEAD: identical
    "yandex-speechkit==1.7.0": [  # its 2024-11 schema predates summarization (2025-06) and 2026-03
        "RecognizeFileRequest.summarization",
        "SpeechAnalysisOptions.speaker_options",
        "SpeechAnalysisOptions.converstation_options",
        "StreamingOptions.summarization",
        "StreamingResponse.summarization",
    ],
}


def test_we_compile_every_message_of_the_current_cloudapi_schema() -> None:
    # yandexcloud 0.413.0 is cloudapi HEAD: ours is that file (package and numbers), nothing missing.
    messages, enums = _theirs(SCHEMAS[0])
    assert set(OURS) == set(messages), sorted(set(OURS) ^ set(messages))
    assert set(OUR_ENUMS) == set(enums)


def test_the_older_speechkit_schema_is_a_subset_of_ours() -> None:
    # yandex-speechkit 1.7.0 ships the 2024-11 schema: everything in it exists here; ours only adds.
    messages, enums = _theirs(SCHEMAS[1])
    assert set(messages) <= set(OURS), sorted(set(messages) - set(OURS))
    assert set(enums) <= set(OUR_ENUMS)
    added = sorted(n.removeprefix(PACKAGE + ".") for n in set(OURS) - set(messages))
    # The reference's history (§7): speech-analysis options 2026-03 and summarization 2025-06 / list 2025-04.
    assert "SpeakerAnalysisOptions" in added and "ConversationAnalysisOptions" in added, added


# --- filled messages, both directions ------------------------------------------------------------

_MAX_DEPTH = 4


def _scalar(f: FieldDescriptor, salt: int) -> object:
    if f.enum_type is not None:
        return f.enum_type.values[-1].number  # the highest, never the zero default
    value = 1000 * f.number + salt
    return {
        FieldDescriptor.TYPE_STRING: f"{f.name}-{salt}",
        FieldDescriptor.TYPE_BYTES: bytes([f.number, salt, 0xFF]),
        FieldDescriptor.TYPE_BOOL: True,
        FieldDescriptor.TYPE_DOUBLE: value + 0.25,
        FieldDescriptor.TYPE_FLOAT: value + 0.5,
    }.get(f.type, value)


def _fill(msg: Message, variant: int, depth: int, known: dict[str, Descriptor] | None = None) -> None:
    """Set every field of ``msg``; in each oneof only member ``variant % size``.

    With ``known`` (another schema's messages) only fields that schema also has are set.
    """
    d = msg.DESCRIPTOR
    for f in d.fields:
        if known is not None and (
            d.full_name not in known or f.number not in known[d.full_name].fields_by_number
        ):
            continue
        oneof = f.containing_oneof
        if oneof is not None and oneof.fields[variant % len(oneof.fields)] is not f:
            continue
        is_map = f.message_type is not None and f.message_type.GetOptions().map_entry
        if is_map:
            value_field = f.message_type.fields_by_name["value"]
            container = getattr(msg, f.name)
            if value_field.message_type is not None:
                if depth < _MAX_DEPTH:
                    _fill(container["key"], variant, depth + 1, known)
            else:
                container["key"] = _scalar(value_field, 1)
        elif f.message_type is not None:
            if depth >= _MAX_DEPTH:
                continue
            if f.is_repeated:
                for _ in range(2):
                    _fill(getattr(msg, f.name).add(), variant, depth + 1, known)
            else:
                child = getattr(msg, f.name)
                child.SetInParent()  # empty messages keep their presence too
                _fill(child, variant, depth + 1, known)
        elif f.is_repeated:
            getattr(msg, f.name).extend([_scalar(f, 1), _scalar(f, 2)])
        else:
            setattr(msg, f.name, _scalar(f, 1))


def _variants(d: Descriptor) -> int:
    return max([len(o.fields) for o in d.oneofs] + [1])


def _cases() -> list[tuple[ForeignSchema, str, int]]:
    cases = []
    for schema in SCHEMAS:
        messages, _ = _theirs(schema)
        for name in sorted(set(messages) & set(OURS)):
            cases.extend((schema, name, v) for v in range(_variants(OURS[name])))
    return cases


CASES = _cases()


def _as_dict(msg: Message) -> dict[str, Any]:
    # JSON form: unknown fields (a number one side does not know) would silently vanish here,
    # so equal dicts plus equal bytes mean every field was understood by both sides.
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


@pytest.mark.parametrize(
    ("schema", "name", "variant"), CASES, ids=[f"{s.name}:{n.rsplit('.', 1)[1]}:{v}" for s, n, v in CASES]
)
def test_filled_message_crosses_both_ways_byte_for_byte(
    schema: ForeignSchema, name: str, variant: int
) -> None:
    their_cls = schema.message_class(name)
    our_cls: type[Message] = message_factory.GetMessageClass(OURS[name])

    theirs = their_cls()
    _fill(theirs, variant, 0)
    wire = theirs.SerializeToString(deterministic=True)
    assert wire or not OURS[name].fields
    ours = our_cls.FromString(wire)
    assert ours.SerializeToString(deterministic=True) == wire
    assert _as_dict(ours) == _as_dict(theirs)

    # Ours -> theirs, with the fields their revision knows (all of them for cloudapi HEAD).
    mine = our_cls()
    _fill(mine, variant, 0, _theirs(schema)[0])
    back = their_cls.FromString(mine.SerializeToString(deterministic=True))
    assert back.SerializeToString(deterministic=True) == mine.SerializeToString(deterministic=True)
    assert _as_dict(back) == _as_dict(mine)

    # Everything set, newer fields included: an older client keeps them as unknown fields and
    # still reads the rest; the bytes survive its round trip unchanged.
    full = our_cls()
    _fill(full, variant, 0)
    again = their_cls.FromString(full.SerializeToString(deterministic=True))
    assert again.SerializeToString(deterministic=True) == full.SerializeToString(deterministic=True)


def test_the_fill_reaches_deep_fields() -> None:
    # Guards the generator: a filled response reaches words inside alternatives inside the event.
    msg = pb.StreamingResponse()
    _fill(msg, 1, 0)  # variant 1: the second member of the Event oneof, "final"
    assert msg.WhichOneof("Event") == "final"
    assert msg.final.alternatives[1].words[1].text == "text-1"
    assert msg.channel_tag == "channel_tag-1"


# --- what the yandex-speechkit high-level recognizer actually sends ------------------------------

SPEECHKIT_REQUESTS: dict[str, Any] = SCHEMAS[1].data["requests"]
AI_STUDIO_DATA = _load(*AI_STUDIO)
# name -> (captured hex, the schema whose classes the SDK used)
SDK_OPTIONS: dict[str, tuple[str, ForeignSchema]] = {
    **{k: (v, SCHEMAS[1]) for k, v in SPEECHKIT_REQUESTS.items() if isinstance(v, str)},
    **{k: (v, SCHEMAS[0]) for k, v in AI_STUDIO_DATA["requests"].items()},
}


def test_ai_studio_uses_the_yandexcloud_schema() -> None:
    assert AI_STUDIO_DATA["stt_proto"] == SCHEMAS[0].data["stt_proto"]
    assert AI_STUDIO_DATA["methods"] == SCHEMAS[0].data["methods"]


def _sdk_options(name: str) -> pb.StreamingRequest:
    hex_wire, schema = SDK_OPTIONS[name]
    wire = bytes.fromhex(hex_wire)
    request = pb.StreamingRequest.FromString(wire)
    assert request.SerializeToString(deterministic=True) == wire
    their_cls = schema.message_class(f"{PACKAGE}.StreamingRequest")
    assert _as_dict(request) == _as_dict(their_cls.FromString(wire))
    return request


def test_speechkit_default_options_parse_to_what_the_sdk_meant() -> None:
    options = _sdk_options("speechkit_full_default").session_options
    model = options.recognition_model
    assert model.model == ""  # the SDK leaves it unset by default: the server's default model
    raw = model.audio_format.raw_audio
    assert (raw.audio_encoding, raw.sample_rate_hertz, raw.audio_channel_count) == (
        pb.RawAudio.LINEAR16_PCM,
        8000,
        1,
    )
    norm = model.text_normalization
    assert norm.text_normalization == pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
    assert norm.literature_text and not norm.profanity_filter
    # No language: the SDK still sends an (empty) language_restriction sub-message.
    assert model.HasField("language_restriction") and not model.language_restriction.language_code
    assert model.audio_processing_type == pb.RecognitionModelOptions.FULL_DATA
    assert options.eou_classifier.WhichOneof("Classifier") == "default_classifier"
    assert options.eou_classifier.default_classifier.type == pb.DefaultEouClassifier.DEFAULT
    assert options.eou_classifier.default_classifier.max_pause_between_words_hint_ms == 2000
    assert options.speaker_labeling.speaker_labeling == pb.SpeakerLabelingOptions.SPEAKER_LABELING_DISABLED
    assert SPEECHKIT_REQUESTS["speechkit_full_default.chunk_sizes"] == [3200, 128]  # 200 ms chunks


def test_speechkit_stream_options_carry_model_and_languages() -> None:
    model = _sdk_options("speechkit_stream_languages").session_options.recognition_model
    assert model.model == "general"
    assert model.language_restriction.restriction_type == pb.LanguageRestrictionOptions.WHITELIST
    assert list(model.language_restriction.language_code) == ["ru-RU", "en-US"]
    assert model.audio_processing_type == pb.RecognitionModelOptions.REAL_TIME


def test_ai_studio_options_leave_channels_unset_and_send_empty_sub_messages() -> None:
    for name, mode in [
        ("ai_studio_real_time", pb.RecognitionModelOptions.REAL_TIME),
        ("ai_studio_full_data", pb.RecognitionModelOptions.FULL_DATA),
    ]:
        options = _sdk_options(name).session_options
        raw = options.recognition_model.audio_format.raw_audio
        # audio_channel_count 0: the SDK only sets it for more than one channel (reference §2.1).
        assert (raw.sample_rate_hertz, raw.audio_channel_count) == (8000, 0)
        assert options.recognition_model.audio_processing_type == mode
        assert list(options.recognition_model.language_restriction.language_code) == ["ru-RU", "en-US"]
        assert not options.HasField("eou_classifier")  # server default EOU
        # Present but empty: the server must treat them as "off", not reject them.
        assert options.HasField("recognition_classifier") and not options.recognition_classifier.classifiers
        assert options.HasField("speaker_labeling") and options.speaker_labeling.speaker_labeling == 0
    external = _sdk_options("ai_studio_external_eou").session_options
    assert external.eou_classifier.WhichOneof("Classifier") == "external_classifier"


class _NullEndpointer:
    def process(self, pcm: bytes) -> list[object]:
        return []

    def flush(self) -> list[object]:
        return []


@pytest.mark.parametrize(
    ("name", "languages", "pause_ms"),
    [
        ("speechkit_full_default", [], 2000),  # the SDK's 2000 ms pause hint is honoured
        ("speechkit_stream_languages", ["ru-RU", "en-US"], 2000),
        ("ai_studio_real_time", ["ru-RU", "en-US"], DEFAULT_PAUSE_MS),
        ("ai_studio_full_data", ["ru-RU", "en-US"], DEFAULT_PAUSE_MS),
        ("ai_studio_external_eou", ["ru-RU", "en-US"], EXTERNAL_PAUSE_MS),
    ],
)
def test_our_session_core_accepts_the_sdk_options(name: str, languages: list[str], pause_ms: int) -> None:
    seen_languages: list[list[str]] = []
    endpointers: list[tuple[int, int]] = []

    def resolve(codes: Any) -> str | None:
        seen_languages.append(list(codes))
        return None

    def endpointer(rate_hz: int, max_pause_ms: int) -> Endpointer:
        endpointers.append((rate_hz, max_pause_ms))
        return _NullEndpointer()  # type: ignore[return-value]

    session = Session(
        session_uuid="u",
        user_request_id="r",
        resolve_language=resolve,
        endpointer_factory=endpointer,
        now_s=0.0,
    )
    commands = session.receive(_sdk_options(name), 0.0)
    assert not any(isinstance(c, Close) for c in commands), commands
    sent = [c.response for c in commands if isinstance(c, Send)]
    assert [r.WhichOneof("Event") for r in sent] == ["status_code"]
    assert sent[0].status_code.code_type == pb.WORKING and sent[0].channel_tag == "0"
    assert seen_languages == [languages]
    assert endpointers == [(8000, pause_ms)]
    assert not session.closed
