"""``voicebot run`` (answer calls), ``voicebot call URI`` (place one), ``voicebot calls list/show``.

``run`` and ``call`` build the one :class:`~voicebot.config.Config` from ``--config FILE``, the
environment and their flags, then run :class:`~voicebot.app.App`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from voicebot import logging as vlog
from voicebot.config import Config, HostPort, load_config, parse_host_port
from voicebot.errors import ConfigError, VoicebotError
from voicebot.net import is_loopback
from voicebot.records import CallRecord, CallSummary, SyncCallRecordStore, is_postgres_url

if TYPE_CHECKING:
    from voicebot.call.outcome import CallOutcome


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_run(subparsers)
    _register_call(subparsers)
    calls = subparsers.add_parser("calls", help="list and show call records",
                                  description="Read the call records ([records] path or url in the config).")
    calls.add_argument("--config", type=Path, help="voicebot TOML config (for [records] path or url)")
    calls.add_argument("--records-db", "--db", dest="records_db", metavar="PATH|URL",
                       help="records database: a SQLite path or a postgresql:// URL (overrides the "
                            "config; --db is the old name)")
    sub = calls.add_subparsers(dest="calls_command", metavar="ACTION", required=True)
    list_parser = sub.add_parser("list", help="most recent calls first")
    list_parser.add_argument("--limit", type=int, default=20, help="how many calls (default: 20)")
    list_parser.add_argument("--json", action="store_true", help="one JSON object per line")
    list_parser.set_defaults(func=_list)
    show = sub.add_parser("show", help="one call: times, transcript, DTMF, states, variables, sessions")
    show.add_argument("call_id", metavar="CALL_ID", help="the SIP Call-ID")
    show.add_argument("--json", action="store_true", help="print the record as JSON")
    show.set_defaults(func=_show)


def _open(args: argparse.Namespace) -> SyncCallRecordStore:
    target: Path | str = (_records_target(args.records_db) if args.records_db is not None
                          else load_config(args.config).records.target)
    if not is_postgres_url(target) and not Path(target).exists():
        raise VoicebotError(f"no call records at {target} (no call has been recorded there yet; "
                            "use --records-db or the config's [records] path)")
    # A reader registers no instance; it still sees whose calls were cut off.
    return SyncCallRecordStore(target, register=False)


def _records_target(value: str) -> Path | str:
    return value if is_postgres_url(value) else Path(value)


def _time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _list(args: argparse.Namespace) -> int:
    try:
        calls = _open(args).list_calls(args.limit)
    except VoicebotError as exc:
        print(f"voicebot calls: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        for call in calls:
            print(json.dumps(asdict(call), ensure_ascii=False))
        return 0
    print(f"{'STARTED (UTC)':19}  {'DIR':8}  {'STATUS':10}  {'DUR_S':>6}  {'CAUSE':14}  {'FROM':24}  CALL-ID")
    for c in calls:
        duration = "-" if c.duration_s is None else f"{c.duration_s:.1f}"
        print(f"{_time(c.started_at):19}  {c.direction:8}  {c.status:10}  {duration:>6}  "
              f"{(c.hangup_cause or '-')[:14]:14}  {c.from_uri[:24]:24}  {c.call_id}")
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        record = _open(args).get_call(args.call_id)
    except VoicebotError as exc:
        print(f"voicebot calls: {exc.message}", file=sys.stderr)
        return 2
    if record is None:
        print(f"voicebot calls: no call with Call-ID {args.call_id!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(record), ensure_ascii=False, indent=2))
        return 0
    print(_format_record(record))
    return 0


def _format_record(record: CallRecord) -> str:
    s: CallSummary = record.summary
    lines = [
        f"Call-ID:    {s.call_id}",
        f"Direction:  {s.direction}   from {s.from_uri}   to {s.to_uri}",
        f"Status:     {s.status}" + ("  (no end was recorded: the process stopped mid-call)"
                                     if s.status == "unfinished" else ""),
        f"Started:    {_time(s.started_at)}   answered {_time(s.answered_at)}   ended {_time(s.ended_at)}",
        f"Hang-up:    {s.hangup_cause or '-'} (by {s.hangup_side or '-'})",
    ]
    if s.transfer_target:
        lines.append(f"Transfer:   {s.transfer_target} -> {s.transfer_result or 'pending'}")
    lines.append("Transcript:")
    for u in record.utterances:
        normalized = f"  [{u.normalized_text}]" if u.normalized_text and u.normalized_text != u.text else ""
        lines.append(f"  {u.start_ms / 1000:8.2f}-{u.end_ms / 1000:.2f}s  {u.text}{normalized}")
    if not record.utterances:
        lines.append("  (none)")
    lines.append("DTMF:       " + ("".join(d.digit for d in record.dtmf) or "-"))
    lines.append("States:     " + (" -> ".join(v.state for v in record.states) or "-"))
    lines.append("Variables:  " + (", ".join(f"{v.name}={json.dumps(v.value, ensure_ascii=False)}"
                                             for v in record.variables) or "-"))
    lines.append("Recognizer sessions:")
    for x in record.stt_sessions:
        lines.append(f"  {x.session_id}  {_time(x.started_at)} .. {_time(x.ended_at)}  "
                     f"{x.close_reason or 'open'}")
    if not record.stt_sessions:
        lines.append("  (none)")
    lines.extend(_format_recording(record))
    return "\n".join(lines)


def _format_recording(record: CallRecord) -> list[str]:
    r = record.recording
    if r is None:
        return ["Recording:  -"]
    length = "recording" if r.duration_ms is None else f"{r.duration_ms / 1000:.2f} s"
    lines = [f"Recording:  {r.path}" + (f" + {r.robot_path}" if r.robot_path else "")
             + f"   ({r.format}, {length}" + (f", stopped early: {r.error}" if r.error else "") + ")"]
    for m in r.marks:
        what = {"utterance": "caller", "prompt": f"robot #{m.prompt_id}", "pause": "paused"}[m.kind]
        lines.append(f"  {m.start_ms / 1000:8.2f}-{m.end_ms / 1000:.2f}s  {what:10} {m.text or ''}".rstrip())
    return lines


# ---- voicebot run / voicebot call -----------------------------------------------------------------

EXIT_OK = 0
EXIT_CALL_FAILED = 1  # voicebot call: not answered (busy, rejected, no answer)
EXIT_USAGE = 2  # bad flags, config or dialplan
EXIT_CALL_ERROR = 3  # voicebot call: answered, but the call's pipeline failed


def _common_flags(parser: argparse.ArgumentParser, *, sip_default: str) -> None:
    parser.add_argument("--config", type=Path, help="voicebot TOML config (see docs/voicebot.example.toml)")
    parser.add_argument("--sip-listen", metavar="HOST:PORT",
                        help=f"UDP address for SIP (default: {sip_default}; port 0 = any free port)")
    parser.add_argument("--dialplan", type=Path, metavar="FILE",
                        help="dialplan every call runs (default: dialplans/demo.yaml)")
    parser.add_argument("--transfer-target", metavar="SIP-URI", help="where the dialplan transfers callers")
    parser.add_argument("--rtp-ports", metavar="LOW-HIGH",
                        help="UDP port range for RTP (default: 20000-20999)")
    parser.add_argument("--stt-endpoint", metavar="HOST:PORT", action="append",
                        help="use this SpeechKit STT v3 server (e.g. stt.api.cloud.yandex.net:443) "
                             "instead of starting the embedded one; key from VOICEBOT_STT_API_KEY. "
                             "Repeat it (or separate with commas) for a recognizer pool")
    parser.add_argument("--stt-tls", action="store_true", help="TLS to --stt-endpoint (the cloud needs it)")
    parser.add_argument("--records-db", metavar="PATH|URL",
                        help="call records: a SQLite path (default: var/calls.db) or a postgresql:// URL "
                             "shared by several instances (password from PGPASSWORD)")
    parser.add_argument("--max-calls", type=int, metavar="N",
                        help="concurrent calls before 503 (default: 16)")
    parser.add_argument("--stt-workers", type=int, default=2, metavar="N",
                        help="embedded recognizer: decodes at once, one core each (default: 2)")
    parser.add_argument("--voice", metavar="ENGINE:VOICE",
                        help="prompt voice (default: piper:en_US-joe-medium; e.g. espeak:en-us)")
    parser.add_argument("--http-listen", metavar="HOST:PORT",
                        help="serve /metrics, /healthz, /readyz and the control API /v1 here (default: off)")
    parser.add_argument("--api-no-auth", action="store_true",
                        help="serve the control API (/v1) without VOICEBOT_API_TOKEN; only on a loopback "
                             "--http-listen (development)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="set a dialplan variable for every call (repeatable)")


def _register_run(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run", help="answer SIP calls with the dialplan",
        description="Start the SIP user agent, the embedded recognition server (unless --stt-endpoint) and "
                    "the call records, then answer every call with the dialplan until SIGTERM/SIGINT "
                    "(new calls then get 503; running calls get --grace-s to finish, then BYE).")
    _common_flags(run, sip_default="127.0.0.1:5060")
    run.add_argument("--grace-s", type=float, default=10.0,
                     help="shutdown grace for running calls (default: 10)")
    run.set_defaults(func=_run)


def _register_call(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    call = subparsers.add_parser(
        "call", help="place one outbound call running a dialplan",
        description="Dial SIP-URI, run the dialplan once answered, record the call, exit when it ends. "
                    "Exit code: 0 answered and finished, 1 not answered (busy/rejected/no answer), "
                    "2 bad usage/config, 3 answered but the call failed. Digest credentials for the "
                    "INVITE: [sip] register_user + VOICEBOT_SIP_REGISTER_PASSWORD.")
    call.add_argument("uri", metavar="SIP-URI", help="whom to call, e.g. sip:alice@127.0.0.1:5070")
    _common_flags(call, sip_default="127.0.0.1:0")
    call.add_argument("--timeout-s", type=float, default=60.0, help="how long to ring (default: 60)")
    call.add_argument("--json", action="store_true", help="print the outcome as JSON")
    call.set_defaults(func=_call)


def _uri_host(uri: str) -> str:
    from voicebot.sip.uri import SipUri, parse_uri

    try:
        parsed = parse_uri(uri)
    except VoicebotError as exc:
        raise ConfigError(f"SIP-URI {uri!r} is not valid: {exc.message}") from None
    if not isinstance(parsed, SipUri):
        raise ConfigError(f"SIP-URI must start with sip: or sips:, got {uri!r}")
    return parsed.host


def _parse_listen(text: str) -> HostPort:
    """Like the config's HOST:PORT, but port 0 (any free port) is allowed on the command line."""
    if text.strip().endswith(":0"):
        return HostPort(parse_host_port(text.strip()[:-2] + ":1").host, 0)
    return parse_host_port(text)


_FLAG_FIELDS = (("dialplan", "dialog.dialplan"), ("transfer_target", "dialog.transfer_target"),
                ("rtp_ports", "rtp.ports"), ("records_db", "records.path"), ("max_calls", "sip.max_calls"),
                ("http_listen", "http.listen"), ("voice", "tts.voice"))


def _build_config(args: argparse.Namespace, *,
                  outbound_to: str | None = None) -> tuple[Config, dict[str, str]]:
    """The Config from ``--config``, the environment and the flags; the dialplan variables from
    ``--var``. For ``voicebot call`` (``outbound_to``), SIP binds a free port unless ``--sip-listen``
    says otherwise, on the configured host, or on all interfaces when the callee is not on a
    loopback address and the configured host is (a loopback socket cannot reach it)."""
    overrides: dict[str, str] = {}
    for flag, key in _FLAG_FIELDS:
        value = getattr(args, flag)
        if value is not None:
            if flag == "records_db" and is_postgres_url(str(value)):
                key = "records.url"
            overrides[key] = str(value)
    if args.stt_endpoint:
        overrides["recognizer.mode"] = "endpoint"
        # The flags replace the config's recognizers: one goes to endpoint, several to endpoints.
        endpoints = [e.strip() for text in args.stt_endpoint for e in text.split(",") if e.strip()]
        overrides["recognizer.endpoint"] = endpoints[0] if len(endpoints) == 1 else ""
        overrides["recognizer.endpoints"] = ",".join(endpoints) if len(endpoints) > 1 else ""
    if args.stt_tls:
        overrides["recognizer.tls"] = "true"
    if args.api_no_auth:
        overrides["http.api_no_auth"] = "true"
    config = load_config(args.config, overrides=overrides)
    listen: HostPort | None = None
    if args.sip_listen:
        try:
            listen = _parse_listen(args.sip_listen)
        except ValueError as exc:
            raise ConfigError(f"--sip-listen: {exc}") from None
    elif outbound_to is not None:
        host = config.sip.listen.host
        if is_loopback(host) and not is_loopback(_uri_host(outbound_to)):
            host = "0.0.0.0"
        listen = HostPort(host, 0)
    if listen is not None:
        config = dataclasses.replace(config, sip=dataclasses.replace(config.sip, listen=listen))
    variables: dict[str, str] = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--var expects NAME=VALUE, got {item!r}")
        variables[name] = value
    if config.log.level != "info" or config.log.format != "auto" or config.log.redact_pii:
        # The [log] section applies where the global flags were left at their defaults.
        level = args.log_level if args.log_level != "info" else config.log.level
        fmt = args.log_format if args.log_format != "auto" else config.log.format
        vlog.configure(level=level, json={"auto": None, "json": True, "console": False}[fmt],
                       redact_pii=args.redact_pii or config.log.redact_pii)
    return config, variables


def _run(args: argparse.Namespace) -> int:
    try:
        config, variables = _build_config(args)
        return asyncio.run(_serve(config, variables, args))
    except VoicebotError as exc:
        print(f"voicebot run: {exc.message}", file=sys.stderr)
        return EXIT_USAGE


async def _serve(config: Config, variables: dict[str, str], args: argparse.Namespace) -> int:
    from voicebot.app import App  # the call stack loads only for run/call, not for every command

    app = App(config, variables=variables, grace_s=args.grace_s, stt_workers=args.stt_workers)
    loop = asyncio.get_running_loop()
    await app.start()
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, app.request_stop)
        print(f"voicebot: call {app.contact_uri}", flush=True)
        await app.serve()
    finally:
        await app.aclose()
    return EXIT_OK


def _call(args: argparse.Namespace) -> int:
    try:
        if not args.uri.startswith(("sip:", "sips:")):
            raise ConfigError(f"SIP-URI must start with sip: or sips:, got {args.uri!r}")
        config, variables = _build_config(args, outbound_to=args.uri)
        outcome = asyncio.run(_place(config, variables, args))
    except VoicebotError as exc:
        print(f"voicebot call: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(_outcome_json(outcome), ensure_ascii=False))
    else:
        print(_outcome_text(outcome))
    if not outcome.answered:
        return EXIT_CALL_FAILED
    return EXIT_OK if outcome.ok else EXIT_CALL_ERROR


async def _place(config: Config, variables: dict[str, str], args: argparse.Namespace) -> CallOutcome:
    from voicebot.app import App
    from voicebot.call.outcome import CallOutcome
    from voicebot.telephony import Credentials

    credentials = None
    if config.sip.register_user and config.sip.register_password:
        credentials = Credentials(config.sip.register_user, config.sip.register_password)
    async with App(config, variables=variables, stt_workers=args.stt_workers, accept_inbound=False) as app:
        call = asyncio.ensure_future(
            app.place_call(args.uri, timeout_s=args.timeout_s, credentials=credentials))
        loop = asyncio.get_running_loop()

        def stop() -> None:
            # Answered: hang up (the record says so). Still ringing: CANCEL the INVITE.
            if app.active_calls:
                app.hangup_all()
            else:
                call.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        try:
            return await call
        except asyncio.CancelledError:
            if not call.cancelled():
                raise  # we are being cancelled ourselves
            return CallOutcome(call_id="", direction="outbound", answered=False,
                               cause="cancelled: stopped before the call was answered", side="robot")


def _outcome_json(o: CallOutcome) -> dict[str, object]:
    return {
        "call_id": o.call_id, "answered": o.answered, "ok": o.ok, "cause": o.cause, "side": o.side,
        "error": o.error, "states": o.dialog.states if o.dialog else [],
        "record": o.dialog.record if o.dialog else {}, "utterances": o.utterances,
        "transfer_target": o.transfer_target, "transfer_result": o.transfer_result,
    }


def _outcome_text(o: CallOutcome) -> str:
    if not o.answered:
        return f"voicebot: call not answered: {o.cause}"
    record = ", ".join(f"{k}={v}" for k, v in (o.dialog.record if o.dialog else {}).items()) or "-"
    said = " | ".join(o.utterances) or "-"
    error = f"; error: {o.error}" if o.error else ""
    return (f"voicebot: call {o.call_id} answered, ended: {o.cause} (by {o.side}){error}\n"
            f"  record: {record}\n  heard: {said}")
