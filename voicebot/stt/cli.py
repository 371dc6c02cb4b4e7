"""``voicebot stt-server``: run the SpeechKit STT v3 recognition server until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from voicebot.ascii import is_digits
from voicebot.errors import ConfigError, VoicebotError
from voicebot.stt.auth import API_KEYS_ENV, load_api_keys
from voicebot.stt.server import ServerConfig, start_server
from voicebot.stt.session import SessionConfig, SessionLimits


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stt-server",
        help="run the SpeechKit STT v3 compatible recognition server",
        description=(
            "Serve /speechkit.stt.v3.Recognizer/RecognizeStreaming with the offline Whisper engine, plus "
            f"gRPC health and reflection. API keys come from ${API_KEYS_ENV} (comma-separated) and/or "
            "--api-key-file."
        ),
    )
    parser.add_argument("--listen", default="127.0.0.1:50051", help="host:port (default: 127.0.0.1:50051)")
    parser.add_argument("--api-key-file", type=Path, help="file with one accepted API key per line")
    parser.add_argument(
        "--no-auth", action="store_true", help="accept requests without a key (loopback addresses only)"
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain (enables TLS with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key")
    parser.add_argument(
        "--model", default="base", help="base (default), tiny.en, or a CTranslate2 Whisper directory"
    )
    parser.add_argument("--workers", type=int, default=2, help="decodes at once, one core each (default: 2)")
    parser.add_argument("--max-sessions", type=int, default=64, help="open streams before refusing (64)")
    parser.add_argument(
        "--max-queued", type=int, default=8, help="queued decodes before new streams are refused (8)"
    )
    parser.add_argument("--max-audio-s", type=float, default=300.0, help="audio per session, s (300)")
    parser.add_argument("--max-data-mb", type=float, default=10.0, help="chunk data per session, MiB (10)")
    parser.add_argument("--idle-timeout-s", type=float, default=5.0, help="longest client silence, s (5)")
    parser.add_argument(
        "--partial-interval-ms", type=int, default=500, help="new audio between partial decodes, ms (500)"
    )
    parser.add_argument("--grace-s", type=float, default=5.0, help="shutdown grace for open streams, s (5)")
    parser.add_argument("--http-listen", metavar="HOST:PORT",
                        help="serve /metrics, /healthz and /readyz here (default: off)")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    limits = SessionLimits(
        max_audio_ms=int(args.max_audio_s * 1000),
        max_data_bytes=int(args.max_data_mb * 1024 * 1024),
        idle_timeout_s=args.idle_timeout_s,
    )
    return ServerConfig(
        listen=args.listen,
        api_keys=load_api_keys(args.api_key_file),
        allow_no_auth=args.no_auth,
        tls_cert_path=args.tls_cert,
        tls_key_path=args.tls_key,
        model=args.model,
        workers=args.workers,
        max_sessions=args.max_sessions,
        max_queued=args.max_queued,
        session=SessionConfig(limits=limits, partial_interval_ms=args.partial_interval_ms),
    )


def parse_http_listen(text: str) -> tuple[str, int]:
    """``--http-listen HOST:PORT`` (port 0 picks a free one)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not is_digits(port) or int(port) > 65535:
        raise ConfigError(f"--http-listen {text!r} must be host:port, e.g. 127.0.0.1:9102")
    return host.strip("[]"), int(port)


async def serve(config: ServerConfig, grace_s: float, http_listen: str | None = None) -> None:
    from voicebot.observe.http import OpsServer, build_app, start_ops_server

    http = parse_http_listen(http_listen) if http_listen else None
    running = await start_server(config)
    print(f"voicebot stt-server listening on {config.listen.rsplit(':', 1)[0]}:{running.port}", flush=True)
    ops: OpsServer | None = None
    if http is not None:
        try:
            ops = await start_ops_server(build_app(running.metrics.registry, running.unready_reason), *http)
        except BaseException:
            await running.stop(0)
            raise
        print(f"voicebot stt-server metrics on {ops.url}/metrics", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    try:
        await running.stop(grace_s)  # /readyz answers 503 from here on
    finally:
        if ops is not None:
            await ops.aclose()


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        asyncio.run(serve(config, args.grace_s, args.http_listen))
    except VoicebotError as exc:
        print(f"voicebot stt-server: {exc.message}", file=sys.stderr)
        return 2
    return 0
