"""Digits from outside that ``str.isdigit`` takes and ``int()`` refuses or misreads ('²', '١'):
a webhook answer's Content-Length (a real HTTP server on 127.0.0.1:0) and the demo bank's
caller-given account. Each is a :class:`WebhookError` (the runner logs it and takes ``on_error``),
never a ValueError out of the call. (httpx's h11 refuses such a Content-Length before the client's
own check sees it: the webhook test proves the outcome for the transport in use, not that line.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from voicebot.dialog.actions import WebhookClient, demo_balance
from voicebot.dialog.errors import WebhookError

pytestmark = pytest.mark.adapter

PAYLOAD = {"call_id": "c1", "variables": {"account": "1234"}}


@pytest.fixture
async def bad_length_server() -> AsyncIterator[str]:
    """Answers every request with the raw Content-Length given in its path (latin-1 bytes)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        path = head.split(b" ")[1]
        declared = bytes.fromhex(path.decode().strip("/"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + declared
                     + b"\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("declared", [b"\xb2", b"1\xb2", b"\xb9\xb2\xb3"])
async def test_a_content_length_of_superscript_digits_is_a_webhook_error(
        bad_length_server: str, declared: bytes) -> None:
    url = f"{bad_length_server}/{declared.hex()}"
    with pytest.raises(WebhookError) as caught:
        await WebhookClient().call(url, PAYLOAD, timeout_s=5)
    assert caught.value.message.startswith(f"webhook {url} ")


async def test_the_same_server_with_a_plain_content_length_answers(bad_length_server: str) -> None:
    # the server is no stand-in that fails everything: with a right Content-Length it is an answer
    reply = await WebhookClient().call(f"{bad_length_server}/{b'2'.hex()}", PAYLOAD, timeout_s=5)
    assert dict(reply.variables) == {} and reply.next_state is None


@pytest.mark.parametrize("account", ["²", "12²4", "١٢٣٤", "１２３４"])
def test_demo_balance_wants_ascii_digits(account: str) -> None:
    with pytest.raises(WebhookError, match=f"needs a digit 'account' variable, got {account!r}"):
        demo_balance({"variables": {"account": account}})
