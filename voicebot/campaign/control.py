"""Campaigns controlled from inside a running voicebot (the control API's ``/v1/campaigns``).

:class:`CampaignControl` is the facade the API routes see: create (validated settings and contacts
into the store), list, status, start / pause / resume / cancel, results. It owns one
:class:`~voicebot.campaign.dialer.CampaignDialer` task per campaign it runs, each with its own
store connection (SQLite serializes them, as it does the CLI's separate processes), and places
calls through a ``placer_for(dialplan)`` the App gives it.

The state machine, with the command that moves it (anything else is :class:`TransitionRefused`)::

    created --start--> running --pause--> paused --resume--> running
    created|running|paused --cancel--> cancelled
    running --(every contact done)--> finished

Do-not-call lists: a campaign's settings name a file (``dnc_file``) its dialer reads again whenever
it changes. Numbers given inline (the API's ``dnc_numbers``) are written to
``<store dir>/<store stem>-dnc/<campaign>.txt`` (atomically: a dialer never reads half a list) and
the settings point at that file. :meth:`set_dnc` switches the list of a campaign that is not over,
the running dialer included, from its next dial round on.

Shutdown (:meth:`stop`): every running campaign is set ``paused`` in the store (so a restart does
not dial on its own; ``resume`` goes on), its dialer dials nobody new and returns once the calls in
progress have ended, their results recorded. The store's rules keep anyone from being dialed twice:
an attempt a crash left ``dialing`` is resolved as interrupted when the campaign next runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from voicebot.campaign.dialer import CampaignDialer, Placer, trunk_parts
from voicebot.campaign.errors import CampaignError, UnknownCampaign
from voicebot.campaign.model import CampaignSettings, Contact
from voicebot.campaign.schedule import Scheduler
from voicebot.campaign.store import CampaignState, CampaignStore, ContactResult
from voicebot.errors import VoicebotError

log = structlog.get_logger(logger_name=__name__)

# command -> (states it may start from, the state it leads to)
COMMANDS: dict[str, tuple[frozenset[CampaignState], CampaignState]] = {
    "start": (frozenset({"created"}), "running"),
    "pause": (frozenset({"running"}), "paused"),
    "resume": (frozenset({"paused"}), "running"),
    "cancel": (frozenset({"created", "running", "paused"}), "cancelled"),
}
_HINTS: dict[tuple[str, str], str] = {
    ("start", "paused"): " (use resume)",
    ("resume", "created"): " (use start)",
    ("pause", "created"): " (it has not been started)",
}


class TransitionRefused(CampaignError):
    """A control command that the campaign's state does not allow (the API's 409)."""


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    campaign_id: str
    state: CampaignState
    dialplan: str
    contacts: int
    counts: dict[str, int]  # by status, and 'done:<final outcome>'
    attempts: int
    dialing: bool  # a dialer runs for it in this process
    error: str | None  # why its dialer stopped, if it failed
    dnc_file: str | None = None  # the do-not-call list its dialer checks

    def to_json(self) -> dict[str, Any]:
        return {"id": self.campaign_id, "state": self.state, "dialplan": self.dialplan,
                "contacts": self.contacts, "counts": self.counts, "attempts": self.attempts,
                "dialing": self.dialing, "error": self.error, "dnc_file": self.dnc_file}


class CampaignControl:
    """Create and control campaigns in ``store_path`` from inside an App.

    ``placer_for(dialplan)`` gives what places a campaign's calls with that dialplan (the name
    stored in its settings), or raises :class:`CampaignError` when this instance cannot run it.
    """

    def __init__(self, store_path: str, placer_for: Callable[[str], Placer], *,
                 wall_clock: Callable[[], float] = time.time, env: Mapping[str, str] | None = None,
                 poll_s: float = 0.25) -> None:
        self.store_path = store_path
        self.store = CampaignStore(store_path)
        self.dnc_dir = Path(store_path).parent / f"{Path(store_path).stem}-dnc"  # inline lists
        self._placer_for = placer_for
        self._wall_clock = wall_clock
        self._env = env if env is not None else os.environ
        self._poll_s = poll_s
        self._dialers: dict[str, tuple[CampaignDialer, asyncio.Task[CampaignState]]] = {}
        self._errors: dict[str, str] = {}
        self._lock = asyncio.Lock()  # one command at a time: check-then-act on the state
        # One SQLite connection, used from worker threads: one use at a time (a transaction begun
        # by one thread must not take in another's statements).
        self._store_lock = threading.Lock()
        self._stopping = False

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def locked() -> Any:
            with self._store_lock:
                return fn(*args, **kwargs)

        return await asyncio.to_thread(locked)

    # ---- queries ----

    async def create(self, campaign_id: str, settings: CampaignSettings, contacts: Sequence[Contact], *,
                     dnc_numbers: Sequence[str] | None = None) -> None:
        """Store a new campaign; ``dnc_numbers`` (normalized) become its do-not-call file."""
        self._placer_for(settings.dialplan)  # a dialplan this instance cannot run is refused now
        if dnc_numbers is None:
            await self._db(self.store.create, campaign_id, settings, contacts, now=self._wall_clock())
        else:
            # Written aside first: a taken name must not overwrite that campaign's list.
            path = self.dnc_path(campaign_id)
            staged = await asyncio.to_thread(_stage_dnc, path, campaign_id, dnc_numbers)
            try:
                await self._db(self.store.create, campaign_id,
                               dataclasses.replace(settings, dnc_file=str(path)), contacts,
                               now=self._wall_clock())
            except BaseException:
                staged.unlink(missing_ok=True)
                raise
            await asyncio.to_thread(os.replace, staged, path)
        log.info("campaign.created", campaign=campaign_id, contacts=len(contacts), dialplan=settings.dialplan)

    def dnc_path(self, campaign_id: str) -> Path:
        """Where the campaign's inline do-not-call numbers are kept."""
        return self.dnc_dir / f"{campaign_id}.txt"

    async def set_dnc(self, campaign_id: str, *, dnc_file: str | None = None,
                      dnc_numbers: Sequence[str] | None = None) -> CampaignStatus:
        """Point a campaign that is not over at another do-not-call list: ``dnc_file`` (a checked
        path), ``dnc_numbers`` (written to :meth:`dnc_path`), or neither (no list). A running dialer
        uses it from its next dial round on. :class:`TransitionRefused` once it is over."""
        async with self._lock:
            state: CampaignState = await self._db(self.store.state, campaign_id)
            if state in ("cancelled", "finished"):
                raise TransitionRefused(f"campaign {campaign_id!r} is {state}; its do-not-call list no "
                                        "longer matters")
            path = dnc_file
            if dnc_numbers is not None:
                target = self.dnc_path(campaign_id)
                staged = await asyncio.to_thread(_stage_dnc, target, campaign_id, dnc_numbers)
                await asyncio.to_thread(os.replace, staged, target)
                path = str(target)
            await self._db(self.store.set_dnc_file, campaign_id, path, now=self._wall_clock())
            running = self._dialers.get(campaign_id)
            if running is not None:
                running[0].use_dnc_file(path)
            log.info("campaign.dnc.set", campaign=campaign_id, dnc_file=path,
                     numbers=None if dnc_numbers is None else len(dnc_numbers))
        return await self.status(campaign_id)

    async def list_all(self) -> list[CampaignStatus]:
        ids = [cid for cid, _ in await self._db(self.store.campaigns)]
        return [await self.status(cid) for cid in ids]

    async def status(self, campaign_id: str) -> CampaignStatus:
        def read() -> CampaignStatus:
            state = self.store.state(campaign_id)
            counts = self.store.counts(campaign_id)
            settings = self.store.settings(campaign_id)
            return CampaignStatus(campaign_id, state, settings.dialplan,
                                  sum(counts.values()), counts, len(self.store.attempts(campaign_id)),
                                  campaign_id in self._dialers, self._errors.get(campaign_id),
                                  settings.dnc_file)
        status: CampaignStatus = await self._db(read)
        return status

    async def results(self, campaign_id: str) -> list[ContactResult]:
        results: list[ContactResult] = await self._db(self.store.results, campaign_id)
        return results

    # ---- commands ----

    async def command(self, campaign_id: str, name: str) -> CampaignStatus:
        """``start``, ``pause``, ``resume`` or ``cancel``; :class:`TransitionRefused` when the state
        does not allow it, :class:`UnknownCampaign` for an unknown id."""
        allowed, target = COMMANDS[name]
        async with self._lock:
            state: CampaignState = await self._db(self.store.state, campaign_id)
            if self._stopping and target == "running":
                raise TransitionRefused("this instance is shutting down; it starts no campaign")
            if state not in allowed:
                hint = _HINTS.get((name, state), "")
                raise TransitionRefused(
                    f"campaign {campaign_id!r} is {state}; {name} needs it "
                    f"{' or '.join(sorted(allowed))}{hint}")
            if target == "running":
                settings: CampaignSettings = await self._db(self.store.settings, campaign_id)
                placer = self._placer_for(settings.dialplan)
                trunk_parts(settings, self._env)  # a missing trunk password fails here, not later
                await self._db(self.store.set_state, campaign_id, target, now=self._wall_clock())
                self._errors.pop(campaign_id, None)
                if campaign_id not in self._dialers:
                    self._spawn(campaign_id, placer)
            else:
                await self._db(self.store.set_state, campaign_id, target, now=self._wall_clock())
                if target == "cancelled" and campaign_id not in self._dialers:
                    await self._db(self._cancel_pending, campaign_id)
            log.info("campaign.command", campaign=campaign_id, command=name, old=state, new=target)
        return await self.status(campaign_id)

    def _cancel_pending(self, campaign_id: str) -> None:
        """No dialer runs it: its pending contacts become ``cancelled`` here (as the dialer does)."""
        now = self._wall_clock()
        scheduler = Scheduler(self.store.settings(campaign_id), self.store.contact_states(campaign_id),
                              now=now)
        for contact_id in scheduler.cancel_pending():
            self.store.save_contact(campaign_id, scheduler.contacts[contact_id], now=now)

    def _spawn(self, campaign_id: str, placer: Placer) -> None:
        store = CampaignStore(self.store_path)
        dialer = CampaignDialer(store, campaign_id, placer, wall_clock=self._wall_clock, poll_s=self._poll_s,
                                env=self._env)

        async def run() -> CampaignState:
            try:
                return await dialer.run()
            except VoicebotError as exc:  # e.g. an unreadable DNC file, a store that failed
                self._errors[campaign_id] = exc.message
                log.error("campaign.dialer.failed", campaign=campaign_id, error=exc.message)
                with contextlib.suppress(VoicebotError):
                    await asyncio.to_thread(store.set_state, campaign_id, "paused", now=self._wall_clock())
                return "paused"
            finally:
                self._dialers.pop(campaign_id, None)
                await asyncio.to_thread(store.close)

        task = asyncio.get_running_loop().create_task(run(), name=f"campaign-{campaign_id}")
        self._dialers[campaign_id] = (dialer, task)

    async def stop(self) -> None:
        """Shutdown, first half: running campaigns become ``paused`` and dial nobody new (their calls
        in progress go on; the App drains them)."""
        async with self._lock:
            if self._stopping:
                return
            self._stopping = True
            for campaign_id, (dialer, _) in list(self._dialers.items()):
                with contextlib.suppress(CampaignError):
                    old = await self._db(self.store.set_state, campaign_id, "paused", now=self._wall_clock())
                    log.info("campaign.paused_for_shutdown", campaign=campaign_id, old=old)
                dialer.request_stop()

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Shutdown, second half: wait for the dialers (their calls have ended or been hung up by
        now) so every result is in the store; then close it."""
        await self.stop()
        tasks = [task for _, task in self._dialers.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:  # its attempts stay 'dialing' and resolve as interrupted on restart
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._db(self.store.close)


def _stage_dnc(path: Path, campaign_id: str, numbers: Sequence[str]) -> Path:
    """``numbers`` written next to ``path`` (fsynced), for an ``os.replace`` onto it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.new")
    with staged.open("w", encoding="utf-8") as out:
        out.write(f"# do-not-call list of campaign {campaign_id}, set over the control API\n")
        out.writelines(f"{number}\n" for number in numbers)
        out.flush()
        os.fsync(out.fileno())
    return staged


__all__ = ["COMMANDS", "CampaignControl", "CampaignStatus", "TransitionRefused", "UnknownCampaign"]
