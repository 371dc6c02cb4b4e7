"""baresip (a real softphone, headless) calls voicebot on 127.0.0.1 and is answered."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from voicebot.sip.udp import SipEndpoint
from voicebot.sip.useragent import UaConfig

from .peers import free_udp_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def baresip_config(directory: Path) -> None:
    """A minimal headless config: no sound card (aufile in/out), G.711 only, no registration."""
    silence = directory / "silence.wav"
    with wave.open(str(silence), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 8000 * 3)
    rtp = free_udp_port()
    (directory / "config").write_text(
        "poll_method epoll\n"
        "sip_listen 127.0.0.1:0\n"
        "module_path /usr/lib/baresip/modules\n"
        "module g711.so\nmodule aufile.so\nmodule account.so\nmodule menu.so\n"
        f"audio_source aufile,{silence}\n"
        f"audio_player aufile,{directory / 'heard.wav'}\n"
        f"audio_alert aufile,{directory / 'alert.wav'}\n"
        f"rtp_ports {rtp}-{rtp + 1}\n"
    )
    (directory / "accounts").write_text("<sip:baresip@127.0.0.1>;regint=0\n")


async def test_baresip_calls_in_and_is_answered(tmp_path: Path) -> None:
    baresip_config(tmp_path)
    async with SipEndpoint(UaConfig(local_host="127.0.0.1")) as ep:
        host, port = ep.local_address
        proc = await asyncio.create_subprocess_exec(
            "baresip",
            "-f",
            str(tmp_path),
            "-e",
            f"/dial sip:bot@{host}:{port}",
            "-t",
            "20",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            call = await ep.next_call(timeout_s=10)
            assert call.from_uri == "sip:baresip@127.0.0.1"
            # baresip sends an empty "Supported:" header, which must not stop the call.
            assert call.headers.get("Supported") is not None
            assert call.negotiation is not None and call.negotiation.codec in ("PCMU", "PCMA")
            call.ringing()
            call.answer("127.0.0.1", free_udp_port())
            await call.established(timeout_s=10)
            await asyncio.sleep(0.5)
            call.hangup()
            assert (await call.ended(timeout_s=5)).cause == "local_bye"
            await asyncio.sleep(1.0)  # let baresip take the BYE, then stop it (SIGTERM quits cleanly)
            proc.terminate()
            output, _ = await asyncio.wait_for(proc.communicate(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = output.decode(errors="replace")
    assert "Call established: sip:bot@127.0.0.1" in text, text[-2000:]
    assert "terminated" in text, text[-2000:]
