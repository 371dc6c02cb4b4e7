"""The campaign dialer: the asyncio adapter that runs the scheduling core against a running App.

Theory of operation. :class:`CampaignDialer` loads the campaign's contacts from the store into a
:class:`~voicebot.campaign.schedule.Scheduler`, resolves attempts a crash left ``dialing`` as
``interrupted`` (see :mod:`voicebot.campaign.store`), and then loops: read the campaign's state
(another process may have paused or cancelled it), re-read the do-not-call file if it changed,
``poll`` the core with the wall clock, and for each :class:`DialContact` commit the attempt row and
only then place the call (:meth:`Placer.place_call`, one task per attempt). When an attempt ends
its outcome goes to the core and, with the contact's new state, to the store in one transaction;
a contact that is done gets its webhook. The loop sleeps until the core's next timer, a call's
end, or ``poll_s`` (to notice pause/cancel/DNC changes), whichever is first.

Pause stops new dials (calls in progress finish); resume dials again; cancel marks every pending
contact ``cancelled`` and ends the run once the calls in progress are done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from voicebot.call.pipeline import AmdOptions
from voicebot.campaign.csvload import load_dnc
from voicebot.campaign.errors import CampaignError
from voicebot.campaign.model import CampaignSettings
from voicebot.campaign.schedule import DialContact, Scheduler, SkipContact, TokenBucket, classify
from voicebot.campaign.store import AttemptResult, CampaignState, CampaignStore
from voicebot.errors import VoicebotError
from voicebot.sip.uri import SipUri, parse_uri
from voicebot.telephony import Credentials

if TYPE_CHECKING:
    import httpx

    from voicebot.call.outcome import CallOutcome

log = structlog.get_logger(logger_name=__name__)

# A machine the dialplan leaves a message on: wait this long at most for the greeting's beep.
BEEP_WAIT_S = 15.0
INTERRUPTED_CAUSE = "interrupted: the dialer stopped before this attempt ended (outcome unknown)"


class Placer(Protocol):
    """What the dialer needs of the App (:meth:`voicebot.app.App.place_call`)."""

    async def place_call(self, uri: str, *, variables: Mapping[str, str] | None = None,
                         timeout_s: float = 60.0, credentials: Credentials | None = None,
                         amd: AmdOptions | None = None, destination: tuple[str, int] | None = None,
                         from_user: str | None = None) -> CallOutcome: ...


def attempt_result(outcome: CallOutcome) -> AttemptResult:
    """What one placed call means to the campaign."""
    variables = dict(outcome.dialog.record) if outcome.dialog is not None else {}
    answer_type = outcome.answer_type or ("unknown" if outcome.answered else None)
    return AttemptResult(
        outcome=classify(answered=outcome.answered, sip_status=outcome.sip_status, answer_type=answer_type),
        sip_status=outcome.sip_status, cause=outcome.cause, call_id=outcome.call_id,
        answer_type=answer_type, amd_reason=outcome.amd_reason, amd_evidence=outcome.amd_evidence,
        variables=variables or None)


def trunk_parts(settings: CampaignSettings,
                env: Mapping[str, str]) -> tuple[Credentials | None, tuple[str, int] | None]:
    """The trunk's digest credentials (password from the environment) and proxy address."""
    trunk = settings.trunk
    credentials = None
    if trunk.username:
        password = env.get(trunk.password_env)
        if not password:
            raise CampaignError(f"the trunk's user is {trunk.username!r} but ${trunk.password_env} is not "
                                "set (the password comes only from the environment)")
        credentials = Credentials(trunk.username, password)
    destination = None
    if trunk.proxy:
        proxy = parse_uri(trunk.proxy)
        assert isinstance(proxy, SipUri)  # validated at create
        destination = (proxy.host, proxy.port or 5060)
    return credentials, destination


class CampaignDialer:
    def __init__(self, store: CampaignStore, campaign_id: str, placer: Placer, *,
                 wall_clock: Callable[[], float] = time.time, poll_s: float = 0.25,
                 http: httpx.AsyncClient | None = None, env: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.campaign_id = campaign_id
        self.placer = placer
        self.wall_clock = wall_clock
        self.poll_s = poll_s
        self._http = http
        self._env = env if env is not None else os.environ
        self._stop = asyncio.Event()
        self._dnc: frozenset[str] = frozenset()
        self._dnc_version: tuple[str, int, int, int] | None = None  # path, inode, mtime, size read
        self._webhooks: set[asyncio.Task[None]] = set()
        self.settings: CampaignSettings = store.settings(campaign_id)
        self.max_in_flight = 0  # the most attempts in flight at once (tests check pacing with it)
        # The core paces its decisions; committing each attempt takes a variable time (an fsync), so
        # the sends are paced again, at the moment the INVITE is started, by the same bucket.
        pacing = self.settings.pacing
        self._send_gate = TokenBucket(pacing.calls_per_s, pacing.burst, now=wall_clock())

    def use_dnc_file(self, path: str | None) -> None:
        """Check this do-not-call list (or none) from the next dial round on (the store has it too)."""
        self.settings = dataclasses.replace(self.settings, dnc_file=path)

    def request_stop(self) -> None:
        """Dial nobody new; :meth:`run` returns once the calls in progress have ended."""
        self._stop.set()

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _read_dnc(self) -> frozenset[str]:
        path = self.settings.dnc_file
        if path is None:
            return frozenset()
        try:
            stat = Path(path).stat()
        except OSError as exc:
            raise CampaignError(f"cannot read the do-not-call list {path}: {exc.strerror or exc}; refusing "
                                "to dial without it") from exc
        # The inode too: a list replaced by a rename (the API's dnc_numbers) within one mtime tick.
        version = (path, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if version != self._dnc_version:
            self._dnc, self._dnc_version = load_dnc(Path(path)), version
            log.info("campaign.dnc.loaded", campaign=self.campaign_id, numbers=len(self._dnc))
        return self._dnc

    async def run(self) -> CampaignState:
        """Run the campaign until it is finished or cancelled (or :meth:`request_stop`)."""
        cid = self.campaign_id
        state: CampaignState = await self._db(self.store.state, cid)
        if state in ("cancelled", "finished"):
            return state
        credentials, destination = trunk_parts(self.settings, self._env)
        now = self.wall_clock()
        scheduler = Scheduler(self.settings, await self._db(self.store.contact_states, cid), now=now)
        for attempt_id, contact_id, started_at in await self._db(self.store.open_attempts, cid):
            # "Not in the same window" counts from when the attempt was placed, not from this
            # restart (which may come days later).
            contact = scheduler.attempt_finished(contact_id, "interrupted", started_at)
            await self._db(self.store.finish_attempt, attempt_id,
                           AttemptResult("interrupted", cause=INTERRUPTED_CAUSE), contact, now=now)
            log.warning("campaign.attempt.interrupted", campaign=cid, status=contact.status,
                        attempts=contact.attempts, **{"pii.number": contact_id})
        for contact_id in await self._db(self.store.unnotified, cid):
            self._notify(contact_id)
        if state == "created":
            await self._db(self.store.set_state, cid, "running", now=now)
        log.info("campaign.started", campaign=cid, contacts=len(scheduler.contacts),
                 pending=sum(c.status == "pending" for c in scheduler.contacts.values()))
        calls: dict[asyncio.Task[AttemptResult], tuple[str, int]] = {}
        try:
            state = await self._loop(scheduler, calls, credentials, destination)
        finally:
            if calls:  # cancelled from outside: the attempts stay 'dialing' and resolve on restart
                for task in calls:
                    task.cancel()
            if self._webhooks:
                await asyncio.wait(self._webhooks, timeout=self.settings.webhook_timeout_s + 1.0)
        log.info("campaign.stopped", campaign=cid, state=state, max_in_flight=self.max_in_flight)
        return state

    async def _loop(self, scheduler: Scheduler, calls: dict[asyncio.Task[AttemptResult], tuple[str, int]],
                    credentials: Credentials | None, destination: tuple[str, int] | None) -> CampaignState:
        cid = self.campaign_id
        while True:
            state: CampaignState = await self._db(self.store.state, cid)
            now = self.wall_clock()
            if state == "cancelled":
                for contact_id in scheduler.cancel_pending():
                    await self._db(self.store.save_contact, cid, scheduler.contacts[contact_id], now=now)
                    self._notify(contact_id)
            elif state == "running" and not self._stop.is_set():
                for command in scheduler.poll(now, self._read_dnc()):
                    contact = scheduler.contacts[command.contact_id]
                    if isinstance(command, SkipContact):
                        log.info("campaign.contact.skipped", campaign=cid, reason=command.reason,
                                 **{"pii.number": contact.contact_id})
                        await self._db(self.store.save_contact, cid, contact, now=now)
                        self._notify(contact.contact_id)
                    else:
                        task, attempt_id = await self._dial(command, credentials, destination)
                        calls[task] = (command.contact_id, attempt_id)
                self.max_in_flight = max(self.max_in_flight, len(calls))
            if not calls and (scheduler.finished or state == "cancelled" or self._stop.is_set()):
                if scheduler.finished and state == "running":
                    await self._db(self.store.set_state, cid, "finished", now=now)
                    return "finished"
                return state
            timer = scheduler.next_timer(now) if state == "running" else None
            wait_s = self.poll_s if timer is None else min(self.poll_s, max(0.0, timer - now))
            if calls:
                done, _ = await asyncio.wait(calls, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            else:
                done = set()
                await asyncio.sleep(wait_s)
            for task in done:
                contact_id, attempt_id = calls.pop(task)
                result = task.result()
                ended = self.wall_clock()
                contact = scheduler.attempt_finished(contact_id, result.outcome, ended)
                await self._db(self.store.finish_attempt, attempt_id, result, contact, now=ended)
                log.info("campaign.attempt.finished", campaign=cid, outcome=result.outcome,
                         sip_status=result.sip_status, answer_type=result.answer_type, status=contact.status,
                         attempts=contact.attempts, call_id=result.call_id, **{"pii.number": contact_id})
                if contact.status == "done":
                    self._notify(contact_id)

    async def _dial(self, command: DialContact, credentials: Credentials | None,
                    destination: tuple[str, int] | None) -> tuple[asyncio.Task[AttemptResult], int]:
        cid = self.campaign_id
        number, contact_variables = await self._db(self.store.contact, cid, command.contact_id)
        uri = self.settings.dial_uri(number)
        # The attempt row is committed before the INVITE exists: a crash after this line leaves an
        # attempt 'dialing' that a restart resolves as interrupted instead of dialing again.
        attempt_id: int = await self._db(self.store.begin_attempt, cid, command.contact_id, command.attempt,
                                         uri, now=self.wall_clock())
        wait_s = self._send_gate.wait_s(self.wall_clock())
        if wait_s > 0.0:
            await asyncio.sleep(wait_s + 0.001)  # a hair more: the loop's timers may fire early
        self._send_gate.take(self.wall_clock())
        variables = {**self.settings.variables, **contact_variables, "campaign": cid,
                     "attempt": str(command.attempt)}
        amd = None
        if self.settings.amd:
            retry = self.settings.retry.machine == "retry"
            # "done": the dialplan leaves a message, after the beep rather than over the greeting.
            amd = AmdOptions(wait=True, hangup_on_machine=retry, beep_wait_s=0.0 if retry else BEEP_WAIT_S)
        log.info("campaign.attempt.started", campaign=cid, attempt=command.attempt, **{"pii.uri": uri})
        task = asyncio.get_running_loop().create_task(
            self._place(uri, variables, credentials, destination, amd), name=f"campaign-attempt-{attempt_id}")
        return task, attempt_id

    async def _place(self, uri: str, variables: dict[str, str], credentials: Credentials | None,
                     destination: tuple[str, int] | None, amd: AmdOptions | None) -> AttemptResult:
        try:
            outcome = await self.placer.place_call(
                uri, variables=variables, timeout_s=self.settings.ring_timeout_s, credentials=credentials,
                amd=amd, destination=destination, from_user=self.settings.trunk.caller_id)
        except VoicebotError as exc:
            return AttemptResult("failed", cause=f"error: {exc.message}"[:500])
        return attempt_result(outcome)

    # ---- webhooks ----

    def _notify(self, contact_id: str) -> None:
        if self.settings.webhook_url is None:
            return
        task = asyncio.get_running_loop().create_task(self._post(contact_id), name="campaign-webhook")
        self._webhooks.add(task)
        task.add_done_callback(self._webhooks.discard)

    async def _post(self, contact_id: str) -> None:
        """POST the contact's result as JSON; a 2xx within the total deadline marks it notified
        (one that fails is sent again when the campaign is next started)."""
        import httpx

        url = self.settings.webhook_url
        assert url is not None
        [result] = await self._db(self.store.results, self.campaign_id, contact_id)
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                if self._http is not None:
                    response = await self._http.post(url, json=result.to_json())
                else:
                    async with httpx.AsyncClient() as client:
                        response = await client.post(url, json=result.to_json())
            response.raise_for_status()
        except (TimeoutError, httpx.HTTPError) as exc:
            log.warning("campaign.webhook.failed", campaign=self.campaign_id,
                        error=str(exc) or type(exc).__name__, **{"pii.number": contact_id})
            return
        await self._db(self.store.mark_notified, self.campaign_id, contact_id, now=self.wall_clock())


__all__ = ["INTERRUPTED_CAUSE", "CampaignDialer", "Placer", "attempt_result", "trunk_parts"]
