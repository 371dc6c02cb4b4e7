"""``voicebot calls list`` and ``voicebot calls show CALL_ID``: read the call records.

``run`` and ``call`` join here once the call pipeline (``voicebot/app.py``) exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from voicebot.config import load_config
from voicebot.errors import VoicebotError
from voicebot.records import CallRecord, CallSummary, SyncCallRecordStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    calls = subparsers.add_parser("calls", help="list and show call records",
                                  description="Read the call records (SQLite, [records] path in the config).")
    calls.add_argument("--config", type=Path, help="voicebot TOML config (for [records] path)")
    calls.add_argument("--db", type=Path, help="records database (overrides the config)")
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
    path = args.db if args.db is not None else load_config(args.config).records.path
    if not Path(path).exists():
        raise VoicebotError(f"no call records at {path} (no call has been recorded there yet; "
                            "use --db or the config's [records] path)")
    return SyncCallRecordStore(path)


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
    return "\n".join(lines)
