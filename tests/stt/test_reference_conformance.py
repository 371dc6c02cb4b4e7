"""Our compiled SpeechKit STT v3 schema against the wire reference, message by message.

The reference (``../shared/speechkit-stt-v3.md``) was produced by compiling the upstream cloudapi
protos and dumping their descriptors. This module parses its message tables and inline field lists
(§2.1 client -> server, §2.2 server -> client including the analysis/classifier/summarization
payloads, §2.3 async messages where we compile them) and its enum table (§2.4), and compares every
field (number, name, type, repeated, oneof membership, presence) and every enum value with
``voicebot.stt._proto.stt_pb2.DESCRIPTOR``, in both directions: nothing the reference lists is
missing, and nothing we add clashes with a number the reference uses or reserves. It also checks the
method path ``/speechkit.stt.v3.Recognizer/RecognizeStreaming`` in the descriptor and in the
generated stub and servicer registration.

Wire compatibility depends only on these numbers, types and paths (reference §1), so this is what
makes clients generated from the upstream protos interoperate with our server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor

from voicebot.stt._proto import stt_pb2, stt_service_pb2, stt_service_pb2_grpc

pytestmark = pytest.mark.unit

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "speechkit-stt-v3.md"
PACKAGE = "speechkit.stt.v3"
METHOD_PATH = "/speechkit.stt.v3.Recognizer/RecognizeStreaming"

if not REFERENCE.is_file():
    pytest.skip(
        f"wire reference {REFERENCE} is absent (it lives in ../shared beside the repository); "
        "the conformance check needs it",
        allow_module_level=True,
    )

_SCALARS = {
    "double": FieldDescriptor.TYPE_DOUBLE,
    "float": FieldDescriptor.TYPE_FLOAT,
    "int64": FieldDescriptor.TYPE_INT64,
    "uint64": FieldDescriptor.TYPE_UINT64,
    "int32": FieldDescriptor.TYPE_INT32,
    "uint32": FieldDescriptor.TYPE_UINT32,
    "bool": FieldDescriptor.TYPE_BOOL,
    "string": FieldDescriptor.TYPE_STRING,
    "bytes": FieldDescriptor.TYPE_BYTES,
}


# --- the reference, parsed -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefField:
    number: int
    name: str
    type_name: str  # "int64", "AlternativeUpdate", "RawAudio.AudioEncoding", ...
    is_enum: bool
    repeated: bool
    oneof: str | None
    line: int  # 1-based line in the reference, for failure messages


@dataclass(slots=True)
class RefMessage:
    name: str  # as the reference writes it: "StreamingRequest", "ConversationAnalysis.InterruptsEvaluation"
    line: int
    section: str
    fields: list[RefField] = field(default_factory=list)
    reserved: set[int] = field(default_factory=set)
    empty: bool = False  # the reference says "empty message"


@dataclass(frozen=True, slots=True)
class RefEnum:
    name: str
    top_level: bool
    values: dict[str, int]
    line: int


_MARKER = re.compile(r"\*\*([A-Z][A-Za-z0-9]*(?:\.[A-Z][A-Za-z0-9]*)*)\*\*")
_INLINE_FIELD = re.compile(r"`(\d+) ([a-z_][a-z0-9_]*): (rep )?(enum )?([A-Za-z_][\w.]*)`")
_INLINE_ONEOF = re.compile(r"oneof `(\w+)` \{(.*?)\}")
_RESERVED = re.compile(r"`reserved (\d+(?:, *\d+)*);`")
_ENUM_VALUE = re.compile(r"\b([A-Z][A-Z0-9_]*)=(\d+)\b")


def _section(lines: list[str], start: str, end: str) -> Iterator[tuple[int, str]]:
    """Lines (with 1-based numbers) from the heading starting with ``start`` up to ``end``."""
    inside = False
    for number, line in enumerate(lines, 1):
        if line.startswith(start):
            inside = True
            continue
        if inside and line.startswith(end):
            return
        if inside:
            yield number, line
    if not inside:
        raise AssertionError(f"{REFERENCE}: no heading starting with {start!r}")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _type(text: str) -> tuple[bool, bool, str]:
    """``"rep enum X.Y"`` -> (repeated, is_enum, "X.Y")."""
    words = text.split()
    repeated = words[0] == "rep"
    if repeated:
        words = words[1:]
    is_enum = words[0] == "enum"
    if is_enum:
        words = words[1:]
    assert len(words) == 1, f"cannot read type {text!r}"
    return repeated, is_enum, words[0]


def _inline_fields(text: str, line: int) -> list[RefField]:
    found: list[RefField] = []

    def add(segment: str, oneof: str | None) -> None:
        for m in _INLINE_FIELD.finditer(segment):
            found.append(RefField(int(m[1]), m[2], m[5], m[4] is not None, m[3] is not None, oneof, line))

    rest = text
    for m in _INLINE_ONEOF.finditer(text):
        add(m[2], m[1])
        rest = rest.replace(m[0], " ")
    add(rest, None)
    return sorted(found, key=lambda f: f.number)


def _table_field(header: list[str], row: list[str], line: int) -> RefField:
    cell = dict(zip(header, row, strict=True))
    repeated, is_enum, type_name = _type(cell["type"])
    oneof_cell = cell.get("oneof", "")
    oneof_match = re.fullmatch(r"`(\w+)`", oneof_cell)
    # "–" and "– (NOT in the oneof)" both mean: not a oneof member.
    assert oneof_match or oneof_cell == "" or oneof_cell.startswith("–"), f"line {line}: oneof {oneof_cell!r}"
    return RefField(
        int(cell["#"]),
        cell["field"],
        type_name,
        is_enum,
        repeated,
        oneof_match[1] if oneof_match else None,
        line,
    )


def parse_messages(lines: list[str], start: str, end: str, section: str) -> list[RefMessage]:
    messages: list[RefMessage] = []
    header: list[str] | None = None
    for number, line in _section(lines, start, end):
        if line.startswith("|"):
            cells = _cells(line)
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-: "):
                assert messages, f"{REFERENCE}:{number}: a table before any **Message** heading"
                messages[-1].fields.append(_table_field(header, cells, number))
            continue
        header = None
        markers = list(_MARKER.finditer(line))
        for i, m in enumerate(markers):
            text = line[m.end() : markers[i + 1].start() if i + 1 < len(markers) else len(line)]
            message = RefMessage(m[1], number, section)
            message.fields = _inline_fields(text, number)
            for r in _RESERVED.finditer(text):
                message.reserved.update(int(n) for n in r[1].split(","))
            message.empty = "empty message" in text
            messages.append(message)
    for message in messages:
        if not message.fields and not message.empty:
            raise AssertionError(
                f"{REFERENCE}:{message.line}: found no fields for **{message.name}** and it is not "
                "described as an empty message; the reference format changed, update the parser"
            )
    return messages


def parse_enums(lines: list[str]) -> list[RefEnum]:
    enums: list[RefEnum] = []
    for number, line in _section(lines, "### 2.4", "## 3."):
        if not line.startswith("| `"):
            continue
        first, values = _cells(line)[:2]
        name_match = re.match(r"`([\w.]+)`", first)
        assert name_match, f"{REFERENCE}:{number}: enum name in {first!r}"
        parsed = {m[1]: int(m[2]) for m in _ENUM_VALUE.finditer(values)}
        assert parsed, f"{REFERENCE}:{number}: no NAME=N values in {values!r}"
        enums.append(RefEnum(name_match[1], "top level" in first, parsed, number))
    return enums


def parse_method_rows(lines: list[str]) -> dict[str, tuple[str, str, str]]:
    """§1 table: path -> (kind, request, response)."""
    rows: dict[str, tuple[str, str, str]] = {}
    for _, line in _section(lines, "## 1.", "## 2."):
        cells = _cells(line)
        if len(cells) >= 3 and cells[0].startswith("`/"):
            request, _, response = cells[2].partition("→")
            rows[cells[0].strip("`")] = (cells[1], request.strip(), response.strip())
    return rows


_LINES = REFERENCE.read_text(encoding="utf-8").splitlines()
STREAMING = parse_messages(_LINES, "### 2.1", "### 2.3", "§2.1/§2.2")
ASYNC = parse_messages(_LINES, "### 2.3", "### 2.4", "§2.3")
ENUMS = parse_enums(_LINES)
FILE: FileDescriptor = stt_pb2.DESCRIPTOR


# --- our descriptors -------------------------------------------------------------------------------


def _all_messages(file: FileDescriptor) -> dict[str, Descriptor]:
    found: dict[str, Descriptor] = {}

    def walk(d: Descriptor) -> None:
        found[d.full_name] = d
        for nested in d.nested_types:
            walk(nested)

    for top in file.message_types_by_name.values():
        walk(top)
    return found


def _all_enums(file: FileDescriptor) -> dict[str, EnumDescriptor]:
    found = {e.full_name: e for e in file.enum_types_by_name.values()}
    for message in _all_messages(file).values():
        found.update({e.full_name: e for e in message.enum_types})
    return found


OURS = _all_messages(FILE)
OUR_ENUMS = _all_enums(FILE)


def _lookup(name: str, table: dict[str, Any]) -> str | None:
    """Full name for a reference message/enum name: qualified, or a unique nested short name."""
    qualified = f"{PACKAGE}.{name}"
    if qualified in table:
        return qualified
    candidates = [full for full in table if full.endswith("." + name)]
    return candidates[0] if len(candidates) == 1 else None


def _resolve_type(scope: str, name: str, table: dict[str, Any]) -> str | None:
    """Protobuf scoping: a type name used inside message ``scope`` is looked up innermost first."""
    if name.startswith("google.protobuf."):
        return name
    parts = scope.split(".")
    while parts:
        candidate = ".".join([*parts, name])
        if candidate in table:
            return candidate
        parts.pop()
    return None


def _oneof(f: FieldDescriptor) -> str | None:
    o = f.containing_oneof
    # Synthetic oneofs (proto3 "optional") would be a presence change: the reference has none.
    return None if o is None else o.name


def field_problems(ref: RefMessage, ours: Descriptor) -> list[str]:
    """Every difference between one reference message and our descriptor, as readable lines."""
    problems: list[str] = []
    where = f"{ours.full_name}"
    by_number = {f.number: f for f in ours.fields}
    by_name = {f.name: f for f in ours.fields}
    ref_numbers = {f.number for f in ref.fields}
    for rf in ref.fields:
        at = f"{where}.{rf.name} (reference line {rf.line})"
        f = by_number.get(rf.number)
        if f is None:
            other = by_name.get(rf.name)
            hint = f"; we have it as field {other.number}" if other else ""
            problems.append(f"{at}: field number {rf.number} is missing{hint}")
            continue
        if f.name != rf.name:
            problems.append(f"{at}: field {rf.number} is named {f.name!r} here, {rf.name!r} in the reference")
        if f.is_repeated != rf.repeated:
            problems.append(f"{at}: repeated is {f.is_repeated} here, {rf.repeated} in the reference")
        if _oneof(f) != rf.oneof:
            problems.append(f"{at}: oneof is {_oneof(f)!r} here, {rf.oneof!r} in the reference")
        if rf.type_name in _SCALARS:
            if f.type != _SCALARS[rf.type_name]:
                problems.append(f"{at}: type {f.type} here, {rf.type_name} in the reference")
            # Proto3 implicit presence everywhere except oneof members (reference §2 legend).
            if f.has_presence != (rf.oneof is not None):
                problems.append(
                    f"{at}: has_presence={f.has_presence}, the reference has no 'optional' fields"
                )
        elif rf.is_enum:
            expected = _resolve_type(ours.full_name, rf.type_name, OUR_ENUMS)
            actual = f.enum_type.full_name if f.enum_type is not None else f"non-enum type {f.type}"
            if expected is None or actual != expected:
                problems.append(f"{at}: type {actual} here, enum {rf.type_name} in the reference")
        else:
            table: dict[str, Any] = dict(OURS)
            expected = _resolve_type(ours.full_name, rf.type_name, table)
            actual = f.message_type.full_name if f.message_type is not None else f"non-message type {f.type}"
            if expected is None or actual != expected:
                problems.append(f"{at}: type {actual} here, message {rf.type_name} in the reference")
    for f in ours.fields:
        if f.number in ref.reserved:
            problems.append(f"{where}.{f.name}: uses number {f.number}, which the reference reserves")
        if f.number not in ref_numbers and f.name in {rf.name for rf in ref.fields}:
            problems.append(f"{where}.{f.name}: numbered {f.number} here, differently in the reference")
    return problems


# --- the tests -------------------------------------------------------------------------------------


def test_the_reference_was_parsed_completely() -> None:
    # Guards the parser: if the markdown changes shape, fail here rather than compare nothing.
    names = {m.name for m in STREAMING}
    assert {"StreamingRequest", "StreamingOptions", "StreamingResponse", "AudioCursors", "EouUpdate"} <= names
    assert {
        "SpeakerAnalysis",
        "ConversationAnalysis.InterruptsEvaluation",
        "Quantile",
        "ContentUsage",
    } <= names
    assert len(STREAMING) == len(names), "a message is listed twice in §2.1/§2.2"
    # Count the field definitions a second, cruder way (table rows starting with a number plus
    # backticked "N name:" items) so a field the parser skips cannot go unnoticed.
    text = [line for _, line in _section(_LINES, "### 2.1", "### 2.3")]
    crude = sum(bool(re.match(r"\| \d+ \|", line)) for line in text)
    crude += sum(len(re.findall(r"`\d+ [a-z_]+: ", line)) for line in text)
    assert sum(len(m.fields) for m in STREAMING) == crude > 140
    response = next(m for m in STREAMING if m.name == "StreamingResponse")
    assert [f.number for f in response.fields] == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 9]
    assert {m.name for m in STREAMING if m.empty} == {"Eou", "ExternalEouClassifier"}
    assert len(ENUMS) == 12


@pytest.mark.parametrize("ref", STREAMING, ids=lambda m: m.name)
def test_streaming_message_matches_the_reference(ref: RefMessage) -> None:
    full_name = _lookup(ref.name, OURS)
    assert full_name is not None, f"{ref.section} message {ref.name} (reference line {ref.line}) is missing"
    problems = field_problems(ref, OURS[full_name])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("ref", ASYNC, ids=lambda m: m.name)
def test_async_message_if_compiled_matches_the_reference(ref: RefMessage) -> None:
    # §2.3 is optional for a streaming server (the reference allows trimming); what we compile must match.
    full_name = _lookup(ref.name, OURS)
    if full_name is None:
        pytest.skip(f"{ref.name} is async-only and not compiled (stt_service.proto is trimmed to Recognizer)")
    problems = field_problems(ref, OURS[full_name])
    assert not problems, "\n".join(problems)


def test_empty_messages_and_reserved_numbers() -> None:
    for ref in STREAMING:
        ours = OURS[str(_lookup(ref.name, OURS))]
        if ref.empty:
            assert not ours.fields, f"{ours.full_name} must be empty like the reference"
    eou = next(m for m in STREAMING if m.name == "EouUpdate")
    assert eou.reserved == {1}
    proto = descriptor_pb2.DescriptorProto()
    stt_pb2.EouUpdate.DESCRIPTOR.CopyToProto(proto)
    # reserved_range is [start, end): field 1 must be reserved, so no future edit can reuse it.
    assert any(r.start <= 1 < r.end for r in proto.reserved_range), proto


def test_we_compile_no_message_the_reference_does_not_list() -> None:
    listed = {_lookup(m.name, OURS) for m in [*STREAMING, *ASYNC]}
    extra = sorted(set(OURS) - listed)
    assert not extra, f"messages in our stt.proto that the reference does not list: {extra}"


def test_every_referenced_type_is_itself_checked() -> None:
    # Closure: a field type we did not compare would be an unchecked hole in the wire format.
    checked = {_lookup(m.name, OURS) for m in STREAMING}
    for name in filter(None, checked):
        for f in OURS[name].fields:
            if f.message_type is not None and not f.message_type.full_name.startswith("google.protobuf."):
                assert f.message_type.full_name in checked, f"{name}.{f.name} -> {f.message_type.full_name}"


@pytest.mark.parametrize("ref", ENUMS, ids=lambda e: e.name)
def test_enum_matches_the_reference(ref: RefEnum) -> None:
    full_name = _lookup(ref.name, OUR_ENUMS)
    assert full_name is not None, f"enum {ref.name} (reference line {ref.line}) is missing"
    ours = OUR_ENUMS[full_name]
    if ref.top_level:
        assert full_name == f"{PACKAGE}.{ref.name}", f"{ref.name} must be a top-level enum"
    values = {v.name: v.number for v in ours.values}
    missing = {k: v for k, v in ref.values.items() if values.get(k) != v}
    assert not missing, f"{full_name}: reference values missing or renumbered here: {missing}; ours: {values}"
    clashing = {k: v for k, v in values.items() if k not in ref.values and v in ref.values.values()}
    assert not clashing, f"{full_name}: extra values clash with reference numbers: {clashing}"


def test_every_enum_we_compile_is_in_the_reference() -> None:
    listed = {_lookup(e.name, OUR_ENUMS) for e in ENUMS}
    assert set(OUR_ENUMS) == listed, sorted(set(OUR_ENUMS) ^ {str(n) for n in listed})


def test_method_path_matches_the_reference() -> None:
    rows = parse_method_rows(_LINES)
    kind, request, response = rows[METHOD_PATH]
    assert (kind, request, response) == (
        "bidi stream",
        "`stream StreamingRequest`",
        "`stream StreamingResponse`",
    )
    service = stt_service_pb2.DESCRIPTOR.services_by_name["Recognizer"]
    method = service.methods_by_name["RecognizeStreaming"]
    assert f"/{service.full_name}/{method.name}" == METHOD_PATH
    assert method.client_streaming and method.server_streaming
    assert method.input_type.full_name == f"{PACKAGE}.StreamingRequest"
    assert method.output_type.full_name == f"{PACKAGE}.StreamingResponse"


class _RecordingChannel:
    """Stands in for a grpc.Channel: records which path the generated stub binds."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def stream_stream(self, path: str, *args: object, **kwargs: object) -> Callable[..., None]:
        self.paths.append(path)
        return lambda *a, **k: None

    def __getattr__(self, kind: str) -> Callable[..., Callable[..., None]]:
        def bind(path: str, *args: object, **kwargs: object) -> Callable[..., None]:
            self.paths.append(f"{kind} {path}")
            return lambda *a, **k: None

        return bind


class _RecordingServer:
    def __init__(self) -> None:
        self.handlers: list[Any] = []

    def add_generic_rpc_handlers(self, handlers: tuple[Any, ...]) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers.append((service, handlers))


def test_generated_stub_and_servicer_use_the_reference_path() -> None:
    channel = _RecordingChannel()
    stt_service_pb2_grpc.RecognizerStub(channel)
    assert channel.paths == [METHOD_PATH]

    server = _RecordingServer()
    stt_service_pb2_grpc.add_RecognizerServicer_to_server(stt_service_pb2_grpc.RecognizerServicer(), server)
    generic = [h for h in server.handlers if hasattr(h, "service_name")]
    assert [h.service_name() for h in generic] == ["speechkit.stt.v3.Recognizer"]
    registered = [h for h in server.handlers if isinstance(h, tuple)]
    for service, methods in registered:
        assert service == "speechkit.stt.v3.Recognizer"
        assert set(methods) == {"RecognizeStreaming"}
        handler = methods["RecognizeStreaming"]
        assert handler.request_streaming and handler.response_streaming


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: RefField(f.number + 100, f.name, f.type_name, f.is_enum, f.repeated, f.oneof, f.line),
        lambda f: RefField(f.number, f.name + "_x", f.type_name, f.is_enum, f.repeated, f.oneof, f.line),
        lambda f: RefField(f.number, f.name, "bytes", False, f.repeated, f.oneof, f.line),
        lambda f: RefField(f.number, f.name, f.type_name, f.is_enum, not f.repeated, f.oneof, f.line),
        lambda f: RefField(f.number, f.name, f.type_name, f.is_enum, f.repeated, "Other", f.line),
    ],
    ids=["number", "name", "type", "repeated", "oneof"],
)
def test_the_comparison_notices_each_kind_of_difference(mutate: Callable[[RefField], RefField]) -> None:
    # The checker itself must have teeth: corrupt one reference field and expect a complaint.
    ref = next(m for m in STREAMING if m.name == "StreamingResponse")
    partial = next(f for f in ref.fields if f.name == "partial")
    corrupted = RefMessage(
        ref.name, ref.line, ref.section, [mutate(partial) if f is partial else f for f in ref.fields]
    )
    assert field_problems(ref, stt_pb2.StreamingResponse.DESCRIPTOR) == []
    assert field_problems(corrupted, stt_pb2.StreamingResponse.DESCRIPTOR) != []
