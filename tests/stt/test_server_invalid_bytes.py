"""The recognition server given request bytes that are not a StreamingRequest (issue 9 item 7).

A raw gRPC channel (no serializer) sends garbage on the real server's RecognizeStreaming method:
the stream must end with INVALID_ARGUMENT and a message that says what was wrong, not OK.
"""

from __future__ import annotations

import grpc
import pytest

from tests.stt.messages import raw_options
from tests.stt.test_server import KEY, RATE, ServerFactory, make_server
from voicebot.stt._proto import stt_pb2 as pb

pytestmark = pytest.mark.adapter

__all__ = ["make_server"]  # the fixture, used by name

METHOD = "/speechkit.stt.v3.Recognizer/RecognizeStreaming"


async def _raw_stream(port: int, messages: list[bytes]) -> tuple[grpc.StatusCode, str, list[bytes]]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(METHOD)(
            iter(messages), metadata=(("authorization", f"Api-Key {KEY}"),), timeout=10
        )
        received: list[bytes] = []
        try:
            async for response in call:
                received.append(response)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or "", received
        return await call.code(), await call.details() or "", received


# Field 1 as a length-delimited value longer than the message; a truncated varint; wire type 7.
GARBAGE = [b"\x0a\xff\xff\xff\x0f", b"\x08\xff", b"\x0f\x01\x02\x03", bytes(range(256)) * 4]


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_unparseable_first_request_is_invalid_argument(
    make_server: ServerFactory, garbage: bytes
) -> None:
    server = await make_server()
    code, details, received = await _raw_stream(server.port, [garbage])
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details == "request 1 is not a valid speechkit.stt.v3.StreamingRequest (protobuf decoding failed)"
    assert received == []


async def test_unparseable_request_after_valid_ones_names_its_position(make_server: ServerFactory) -> None:
    server = await make_server()
    good = raw_options(RATE).SerializeToString()
    chunk = pb.StreamingRequest(chunk=pb.AudioChunk(data=bytes(320))).SerializeToString()
    code, details, _ = await _raw_stream(server.port, [good, chunk, GARBAGE[0]])
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details == "request 3 is not a valid speechkit.stt.v3.StreamingRequest (protobuf decoding failed)"
