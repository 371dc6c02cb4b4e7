"""``voicebot campaign create|start|pause|resume|cancel|status|export``.

``create`` validates everything once (the contacts CSV with ``file:line`` errors, the dialplan, the
settings) and stores the campaign; ``start`` runs it in its own App (like ``voicebot call``) until
it is finished or cancelled; the control commands may be run from another shell while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from voicebot.campaign.errors import CampaignError, ContactsError
from voicebot.campaign.model import CallingWindow, CampaignSettings, Pacing, RetryPolicy, Trunk
from voicebot.campaign.store import CampaignState, CampaignStore, ContactResult
from voicebot.errors import VoicebotError

DEFAULT_DB = Path("var/campaigns.db")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    campaign = subparsers.add_parser(
        "campaign", help="outbound campaigns: dial a contacts list with a dialplan",
        description="Create, run and control outbound campaigns (docs/campaigns.md).")
    campaign.add_argument("--campaign-db", type=Path, default=DEFAULT_DB, metavar="PATH",
                          help=f"the campaigns' SQLite database (default: {DEFAULT_DB})")
    sub = campaign.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)
    _register_create(sub)
    _register_start(sub)
    for name, help_text in (("pause", "stop dialing new calls (calls in progress finish)"),
                            ("resume", "dial again after a pause"),
                            ("cancel", "stop for good: pending contacts become 'cancelled'")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("name", metavar="NAME")
        p.set_defaults(func=_control, target_state={"pause": "paused", "resume": "running",
                                                    "cancel": "cancelled"}[name])
    status = sub.add_parser("status", help="the campaign's state and its contacts by outcome")
    status.add_argument("name", metavar="NAME")
    status.add_argument("--json", action="store_true", help="print a JSON object")
    status.set_defaults(func=_status)
    export = sub.add_parser("export", help="one CSV row per contact: attempts, outcome, answer type, results")
    export.add_argument("name", metavar="NAME")
    export.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")
    export.set_defaults(func=_export)


def _register_create(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = CampaignSettings(dialplan="")
    p = sub.add_parser("create", help="validate and store a campaign (nothing is dialed)")
    p.add_argument("name", metavar="NAME", help="the campaign's name (letters, digits, - and _)")
    p.add_argument("--contacts", type=Path, required=True, metavar="CSV",
                   help="contacts: a 'number' column (E.164 or sip: URI), optional 'tz', any variables")
    p.add_argument("--dialplan", type=Path, required=True, metavar="FILE",
                   help="the dialplan every call runs")
    p.add_argument("--proxy", metavar="SIP-URI",
                   help="the trunk's outbound proxy; numbers go to sip:N@its host")
    p.add_argument("--user", metavar="NAME", help="digest user for the trunk (password from --password-env)")
    p.add_argument("--password-env", default=d.trunk.password_env, metavar="VAR",
                   help=f"environment variable holding the trunk password (default: {d.trunk.password_env})")
    p.add_argument("--caller-id", metavar="USER", help="the From user part (the number shown to callees)")
    p.add_argument("--max-concurrent", type=int, default=d.pacing.max_concurrent, metavar="C",
                   help=f"calls at once on the trunk (default: {d.pacing.max_concurrent})")
    p.add_argument("--calls-per-s", type=float, default=d.pacing.calls_per_s, metavar="R",
                   help=f"new calls per second (default: {d.pacing.calls_per_s:g})")
    p.add_argument("--burst", type=int, default=d.pacing.burst, metavar="N",
                   help=f"new calls at once after a quiet spell (default: {d.pacing.burst})")
    r = d.retry
    p.add_argument("--max-attempts", type=int, default=r.max_attempts, help=f"(default: {r.max_attempts})")
    p.add_argument("--busy-retry-s", type=float, default=r.busy_delay_s,
                   help=f"retry a busy (486/600) contact after (default: {r.busy_delay_s:g})")
    p.add_argument("--no-answer-retry-s", type=float, default=r.no_answer_delay_s,
                   help="retry after no answer (480/408/487/ring timeout) "
                        f"(default: {r.no_answer_delay_s:g})")
    p.add_argument("--machine", choices=("retry", "done"), default=r.machine,
                   help="an answering machine: hang up and retry later, or let the dialplan leave a message "
                        f"(default: {r.machine})")
    p.add_argument("--machine-retry-s", type=float, default=r.machine_delay_s,
                   help=f"(default: {r.machine_delay_s:g})")
    p.add_argument("--failed-retry-s", type=float, default=r.failed_delay_s,
                   help=f"retry after other failures (5xx, network) (default: {r.failed_delay_s:g})")
    p.add_argument("--interrupted", choices=("next-window", "never"), default=r.interrupted,
                   help="an attempt a crash left unresolved: retry from the next day's window, or never "
                        f"(default: {r.interrupted})")
    p.add_argument("--window", default=str(d.window), metavar="HH:MM-HH:MM",
                   help=f"calling window in the callee's local time (default: {d.window})")
    p.add_argument("--tz", default=d.default_tz, metavar="ZONE",
                   help=f"time zone of contacts without a 'tz' (default: {d.default_tz})")
    p.add_argument("--ring-timeout-s", type=float, default=d.ring_timeout_s,
                   help="how long a call rings before it counts as no answer "
                        f"(default: {d.ring_timeout_s:g})")
    p.add_argument("--dnc", metavar="FILE",
                   help="do-not-call list, one number a line, read before every dial")
    p.add_argument("--webhook", metavar="URL", help="POST each finished contact's result here as JSON")
    p.add_argument("--webhook-timeout-s", type=float, default=d.webhook_timeout_s,
                   help=f"total deadline of one webhook POST (default: {d.webhook_timeout_s:g})")
    p.add_argument("--no-amd", action="store_true", help="no answering-machine detection")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="a dialplan variable for every contact (the CSV's columns win)")
    p.set_defaults(func=_create)


def _register_start(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from voicebot.appcli import _common_flags

    p = sub.add_parser(
        "start", help="run the campaign until it is finished or cancelled",
        description="Start a voicebot that only places calls, resolve attempts a crash left open, and "
                    "dial the campaign. SIGTERM/SIGINT: dial nobody new, let calls finish (--grace-s), exit; "
                    "start again to go on. Exit 0 when finished or cancelled, 1 when stopped before.")
    p.add_argument("name", metavar="NAME")
    _common_flags(p, sip_default="127.0.0.1:0")
    p.add_argument("--grace-s", type=float, default=30.0,
                   help="on SIGTERM, how long calls in progress may go on (default: 30)")
    p.set_defaults(func=_start)


def _open(args: argparse.Namespace) -> CampaignStore:
    return CampaignStore(args.campaign_db)


def _fail(action: str, exc: VoicebotError) -> int:
    print(f"voicebot campaign {action}: {exc.message}", file=sys.stderr)
    return EXIT_USAGE


def _create(args: argparse.Namespace) -> int:
    from voicebot.app import resolve_dialplan_path
    from voicebot.campaign.csvload import load_contacts, load_dnc
    from voicebot.dialog.loader import load_dialplan

    try:
        if not args.name.replace("-", "").replace("_", "").isalnum():
            raise CampaignError(f"campaign name {args.name!r} may hold only letters, digits, - and _")
        variables: dict[str, str] = {}
        for item in args.var:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise CampaignError(f"--var expects NAME=VALUE, got {item!r}")
            variables[name] = value
        dialplan = resolve_dialplan_path(args.dialplan).resolve()
        load_dialplan(dialplan)  # fails here, with file:line, rather than at the first answer
        settings = CampaignSettings(
            dialplan=str(dialplan),
            trunk=Trunk(proxy=args.proxy, username=args.user, password_env=args.password_env,
                        caller_id=args.caller_id),
            pacing=Pacing(args.max_concurrent, args.calls_per_s, args.burst),
            retry=RetryPolicy(max_attempts=args.max_attempts, busy_delay_s=args.busy_retry_s,
                              no_answer_delay_s=args.no_answer_retry_s, machine=args.machine,
                              machine_delay_s=args.machine_retry_s, failed_delay_s=args.failed_retry_s,
                              interrupted=args.interrupted),
            window=CallingWindow.parse(args.window), default_tz=args.tz, ring_timeout_s=args.ring_timeout_s,
            dnc_file=str(Path(args.dnc).resolve()) if args.dnc else None, webhook_url=args.webhook,
            webhook_timeout_s=args.webhook_timeout_s, amd=not args.no_amd, variables=variables)
        if settings.dnc_file is not None:
            load_dnc(Path(settings.dnc_file))  # a list that cannot be read fails now, not at the first dial
        contacts = load_contacts(args.contacts)
        for contact in contacts:
            settings.dial_uri(contact.number)  # a phone number needs a trunk proxy
        store = _open(args)
        try:
            store.create(args.name, settings, contacts, now=time.time())
        finally:
            store.close()
    except ContactsError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except VoicebotError as exc:
        return _fail("create", exc)
    print(f"campaign {args.name}: {len(contacts)} contacts, dialplan {dialplan.name}, "
          f"window {settings.window} ({settings.default_tz} unless the contact has a tz)")
    return EXIT_OK


def _control(args: argparse.Namespace) -> int:
    target: CampaignState = args.target_state
    try:
        store = _open(args)
        try:
            old = store.set_state(args.name, target, now=time.time())
        finally:
            store.close()
    except VoicebotError as exc:
        return _fail(args.campaign_command, exc)
    print(f"campaign {args.name}: {old} -> {target}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    try:
        store = _open(args)
        try:
            state = store.state(args.name)
            counts = store.counts(args.name)
            attempts = len(store.attempts(args.name))
        finally:
            store.close()
    except VoicebotError as exc:
        return _fail("status", exc)
    if args.json:
        print(json.dumps({"campaign": args.name, "state": state, "attempts": attempts, "contacts": counts}))
        return EXIT_OK
    print(f"campaign {args.name}: {state}, {sum(counts.values())} contacts, {attempts} attempts")
    for key in sorted(counts):
        print(f"  {key:20} {counts[key]}")
    return EXIT_OK


EXPORT_COLUMNS = ("number", "line", "status", "final_outcome", "attempts", "answer_type", "last_cause",
                  "last_call_id", "finished_at")


def write_export(results: list[ContactResult], out: IO[str]) -> None:
    """The export CSV: fixed columns, then ``var_<name>`` for the contact's CSV variables and
    ``result_<name>`` for what the dialplan recorded (e.g. ``result_confirmation``)."""
    var_names = sorted({k for r in results for k in r.variables})
    result_names = sorted({k for r in results for k in r.result})
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*EXPORT_COLUMNS, *(f"var_{n}" for n in var_names),
                     *(f"result_{n}" for n in result_names)])
    for r in results:
        finished = ("" if r.finished_at is None
                    else datetime.fromtimestamp(r.finished_at, UTC).isoformat(timespec="seconds"))
        writer.writerow([r.number, r.line, r.status, r.final_outcome or "", r.attempts, r.answer_type or "",
                         r.last_cause or "", r.last_call_id or "", finished,
                         *(r.variables.get(n, "") for n in var_names),
                         *(r.result.get(n, "") for n in result_names)])


def _export(args: argparse.Namespace) -> int:
    try:
        store = _open(args)
        try:
            results = store.results(args.name)
        finally:
            store.close()
    except VoicebotError as exc:
        return _fail("export", exc)
    if args.out is None:
        write_export(results, sys.stdout)
    else:
        with args.out.open("w", newline="", encoding="utf-8") as out:
            write_export(results, out)
    return EXIT_OK


def _start(args: argparse.Namespace) -> int:
    from voicebot.appcli import _build_config

    try:
        store = _open(args)
    except VoicebotError as exc:
        return _fail("start", exc)
    try:
        settings = store.settings(args.name)
        if args.dialplan is None:
            args.dialplan = Path(settings.dialplan)
        first = store.contact_states(args.name)[0].contact_id
        config, variables = _build_config(args, outbound_to=settings.dial_uri(first))
        state = asyncio.run(_run_campaign(store, args, config, variables))
    except VoicebotError as exc:
        return _fail("start", exc)
    finally:
        store.close()
    print(f"campaign {args.name}: {state}")
    return EXIT_OK if state in ("finished", "cancelled") else EXIT_FAILED


async def _run_campaign(store: CampaignStore, args: argparse.Namespace, config: object,
                        variables: dict[str, str]) -> CampaignState:
    from voicebot.app import App
    from voicebot.campaign.dialer import CampaignDialer
    from voicebot.config import Config

    assert isinstance(config, Config)
    async with App(config, variables=variables, stt_workers=args.stt_workers, accept_inbound=False) as app:
        dialer = CampaignDialer(store, args.name, app)
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def stop() -> None:
            dialer.request_stop()
            stopping.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        print(f"voicebot: campaign {args.name} dialing from {app.contact_uri}", flush=True)
        run = asyncio.ensure_future(dialer.run())
        await asyncio.wait({run, asyncio.ensure_future(stopping.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            done, _ = await asyncio.wait({run}, timeout=args.grace_s)
            if not done:
                app.hangup_all()
        return await run


__all__ = ["EXPORT_COLUMNS", "register", "write_export"]
