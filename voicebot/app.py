"""The application: the process-wide parts of voicebot, and every call leg given a pipeline.

Theory of operation. :class:`App` owns the process-wide parts: the embedded SpeechKit STT v3 server
(in-process on ``127.0.0.1:<free port>`` with a generated API key, unless ``[recognizer] mode =
"endpoint"`` points at another server such as the cloud), one gRPC channel to it that every call
shares, the call-record store, the prompts (:mod:`voicebot.prompts`: espeak-ng behind the disk cache
and an in-memory cache, pre-rendered when the dialplan loads so no answer waits for synthesis), the
loaded dialplan, and :class:`~voicebot.telephony.Telephony` (SIP + RTP, configured by
:func:`~voicebot.telephony.telephony_config`).

Each call leg gets one :class:`~voicebot.call.pipeline.CallPipeline`, given the parts it needs
(:class:`~voicebot.call.pipeline.CallParts`), in its own task owned by the app. Every log line of a
call carries its ``call_id`` (structlog contextvars, bound in the call's task before its children
start) and each call ends with one ``call.summary`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from voicebot.api.events import EventBus
from voicebot.api.registry import CallEntry, CallRegistry
from voicebot.api.routes import ApiContext, api_off_routes, api_routes
from voicebot.call.outcome import CallOutcome
from voicebot.call.pipeline import POST_HANGUP_FLUSH_S, AmdOptions, CallParts, CallPipeline
from voicebot.call.recording import RecordingSettings, retention_loop
from voicebot.campaign.control import CampaignControl
from voicebot.campaign.errors import CampaignError
from voicebot.clock import Clock, monotonic
from voicebot.config import Config
from voicebot.dialog.ir import Dialplan
from voicebot.dialog.loader import load_dialplan
from voicebot.errors import ConfigError, VoicebotError
from voicebot.meaning import MeaningModelError, PhraseSimilarity, shared_similarity
from voicebot.observe.http import OpsServer, build_app, start_ops_server
from voicebot.observe.metrics import CallMetrics
from voicebot.prompts import Prompts, open_prompts, plan_voices
from voicebot.records import CallRecordStore
from voicebot.records.backend import redact_url
from voicebot.sip.errors import SipStateError
from voicebot.sip.uri import SipUri, parse_uri
from voicebot.stt.client import ClientSettings, open_channel
from voicebot.telephony import CallFailed, CallLeg, Credentials, Telephony, telephony_config
from voicebot.tts.cache import CacheCounted
from voicebot.tts.speechkit import SpeechKitTtsSettings

log = structlog.get_logger(logger_name=__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _redacted(target: Path | str) -> str:
    return redact_url(target) if isinstance(target, str) else str(target)


def redact_sip_uri(uri: str) -> str:
    """``uri`` without the password of its userinfo (``sip:100:secret@pbx`` -> ``sip:100:***@pbx``;
    RFC 3261 §19.1.1 deprecates it, but a config may still carry one), for logs and messages."""
    head, at, hostport = uri.rpartition("@")  # rpartition: a password with an '@' is still hidden
    if not at:
        return uri
    scheme, colon, userinfo = head.partition(":")
    if scheme.strip().lower() not in ("sip", "sips"):
        scheme, colon, userinfo = "", "", head
    user, sep, _password = userinfo.partition(":")
    return f"{scheme}{colon}{user}:***@{hostport}" if sep else uri


def _voices(plans: Iterable[Dialplan]) -> set[str]:
    return set().union(*map(plan_voices, plans))


def load_similarity(enabled: bool, plans: Iterable[Dialplan]) -> PhraseSimilarity | None:
    """The dialog's guesses by meaning (voicebot.meaning), with every intent's phrases embedded now
    so no call waits for them; None when off, or (a warning) when the model is not installed."""
    if not enabled:
        return None
    started = time.perf_counter()
    try:
        similarity = shared_similarity()
    except MeaningModelError as exc:
        log.warning("app.meaning_unavailable", error=str(exc))
        return None
    texts = {text for plan in plans for intent in plan.intents() for text in intent.texts}
    for text in sorted(texts):
        similarity.phrase_vector(text)
    log.info("app.meaning_loaded", phrases=len(texts), load_s=round(time.perf_counter() - started, 2))
    return similarity


def resolve_dialplan_path(path: Path) -> Path:
    """``path`` as given, or (when relative and missing) relative to the source checkout, so the
    default ``dialplans/demo.yaml`` works from any directory of an editable install."""
    if path.is_absolute() or path.exists():
        return path
    candidate = REPO_ROOT / path
    return candidate if candidate.exists() else path


def prompt_cache_counts(synthesizer: object) -> dict[str, int]:
    """Prompt syntheses by cache result, read from the caches' own counters (their public
    ``cache_counts()``): ``memory`` (the in-memory LRU), ``disk`` (the on-disk cache), ``miss`` (the
    engine had to synthesize)."""
    counts = {"memory": 0, "disk": 0, "miss": 0}
    if isinstance(synthesizer, CacheCounted):
        for key, value in synthesizer.cache_counts().items():
            counts[key] = counts.get(key, 0) + value
    return counts


class App:
    """voicebot: recognition, records, prompts and telephony; every inbound leg runs the dialplan.

    ``async with App(config) as app: await app.serve()`` (``voicebot run``), or
    ``await app.place_call(uri)`` (``voicebot call``). ``engine`` shares an already loaded
    recognition engine (tests); ``variables`` are given to every call's dialog.
    """

    def __init__(self, config: Config, *, engine: Any = None, variables: Mapping[str, str] | None = None,
                 stt_workers: int = 2, grace_s: float = 10.0, accept_inbound: bool = True,
                 clock: Clock = monotonic) -> None:
        self.config = config
        self.clock = clock
        self.grace_s = grace_s
        self.accept_inbound = accept_inbound
        self._engine = engine
        self._stt_workers = stt_workers
        self.variables: dict[str, str] = {}
        if config.dialog.transfer_target:
            self.variables["transfer_target"] = config.dialog.transfer_target
        self.variables.update(variables or {})
        self._stt_server: Any = None
        self._stt_channel: Any = None
        self._stt_settings: ClientSettings | None = None
        self._records: CallRecordStore | None = None
        self._telephony: Telephony | None = None
        self.plan: Dialplan | None = None
        self._prompts: Prompts | None = None
        self._calls: dict[asyncio.Task[CallOutcome], CallLeg] = {}
        self.outcomes: list[CallOutcome] = []
        self._stopping = asyncio.Event()
        self._accept_task: asyncio.Task[None] | None = None
        self.registration_id: str | None = None
        self._draining = False
        self._started = False
        self.metrics = CallMetrics()
        self.metrics.max_calls.set(config.sip.max_calls)
        self.metrics.calls_active.set_function(lambda: len(self._calls))
        self.metrics.draining.set_function(lambda: 1.0 if self._draining else 0.0)
        self._ops: OpsServer | None = None
        r = config.recording
        self.recording = RecordingSettings(r.dir, r.format, r.retention_days)
        self._retention_task: asyncio.Task[None] | None = None
        # The calls as the control API shows them, and the event bus their pipelines publish to.
        self.calls = CallRegistry(EventBus(registry=self.metrics.registry,
                                           replay_events=config.http.events_replay,
                                           replay_max_age_s=config.http.events_replay_s))
        self.dialplans: dict[str, Dialplan] = {}  # what POST /v1/calls may name: plan name or path
        self.similarity: PhraseSimilarity | None = None  # the dialog's guesses by meaning ([dialog] meaning)
        self.campaigns: CampaignControl | None = None  # /v1/campaigns ([http] campaigns_db)

    # ---- parts (valid after start) ----

    @property
    def records(self) -> CallRecordStore:
        if self._records is None:
            raise VoicebotError("App is not started: use 'async with App(config)' or await app.start()")
        return self._records

    @property
    def telephony(self) -> Telephony:
        if self._telephony is None:
            raise VoicebotError("App is not started: use 'async with App(config)' or await app.start()")
        return self._telephony

    @property
    def prompts(self) -> Prompts:
        assert self._prompts is not None, "App is not started"
        return self._prompts

    @property
    def stt_settings(self) -> ClientSettings:
        assert self._stt_settings is not None, "App is not started"
        return self._stt_settings

    @property
    def stt_channel(self) -> Any:
        return self._stt_channel

    @property
    def stt_target(self) -> str:
        return self.stt_settings.target

    def call_parts(self) -> CallParts:
        """What every call's pipeline is given (valid after start)."""
        return CallParts(records=self.records, stt_settings=self.stt_settings, stt_channel=self._stt_channel,
                         renderer=self.prompts, clock=self.clock,
                         stt_hints=self.config.recognizer.hints,
                         trust_confidence=self.config.recognizer.mode == "embedded", recording=self.recording,
                         record_calls=self.config.recording.enabled, metrics=self.metrics,
                         similarity=self.similarity)

    @property
    def contact_uri(self) -> str:
        return self.telephony.contact_uri

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    # ---- lifecycle ----

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Load the dialplan, render its prompts, open the records, start recognition and SIP."""
        c = self.config
        started = self.clock()
        meaning: asyncio.Future[PhraseSimilarity | None] | None = None
        try:
            self.plan = load_dialplan(resolve_dialplan_path(c.dialog.dialplan))
            extra = {p: load_dialplan(resolve_dialplan_path(Path(p))) for p in c.http.dialplans}
            self.dialplans = {str(c.dialog.dialplan): self.plan, **extra}
            self.dialplans.update({plan.name: plan for plan in (*extra.values(), self.plan)})
            # The sentence-embedding model loads (about a second) while the prompts render and the
            # recognizer starts; calls are taken only once it is there.
            meaning = asyncio.ensure_future(asyncio.to_thread(load_similarity, c.dialog.meaning,
                                                              tuple(self.dialplans.values())))
            speechkit = (SpeechKitTtsSettings.resolve(
                c.tts.speechkit_endpoint, tls=c.tts.speechkit_tls, recognizer_api_key=c.recognizer.api_key,
                timeout_s=c.tts.speechkit_timeout_s) if c.tts.speechkit_endpoint else None)
            self._prompts = await asyncio.to_thread(open_prompts, c.tts.cache_dir, voice=c.tts.voice,
                                                    voices=_voices(self.dialplans.values()),
                                                    speechkit=speechkit)
            prompts = await self._prompts.load_dialplan(self.plan, self.variables)
            for extra_plan in extra.values():
                prompts += await self._prompts.load_dialplan(extra_plan, self.variables)
            self._records = CallRecordStore(c.records.target)
            await self._start_recognition()
            self.similarity = await meaning
            self._telephony = Telephony(telephony_config(c), clock=self.clock)
            try:
                await self._telephony.start()
            except OSError as exc:
                raise ConfigError(
                    f"cannot listen for SIP on {c.sip.listen}: {exc.strerror or exc} (is another voicebot "
                    "or a PBX using it? choose another with --sip-listen or [sip] listen)") from exc
            ua_stats = self._telephony.endpoint.ua.stats
            self.metrics.watch_sip_responses(lambda: {str(k): v for k, v in ua_stats.responses.items()})
            synthesizer = self._prompts.synthesizer
            self.metrics.watch_prompt_cache(lambda: prompt_cache_counts(synthesizer))
            if c.sip.registrar:
                self._register()
            self._accept_task = asyncio.get_running_loop().create_task(self._accept(), name="app-accept")
            if self.recording.retention_days > 0:
                self._retention_task = asyncio.get_running_loop().create_task(
                    retention_loop(self.recording), name="app-recording-retention")
            if (c.http.listen is not None and c.http.campaigns_db is not None
                    and (c.http.api_token is not None or c.http.api_no_auth)):
                c.http.campaigns_db.parent.mkdir(parents=True, exist_ok=True)
                self.campaigns = CampaignControl(str(c.http.campaigns_db), self._campaign_placer)
            if c.http.listen is not None:
                self._ops = await start_ops_server(
                    build_app(self.metrics.registry, self.unready_reason, extra_routes=self._api_routes()),
                    c.http.listen.host, c.http.listen.port)
            self._started = True
        except BaseException:
            if meaning is not None:
                meaning.cancel()  # the loading thread finishes on its own; its result is dropped
            await self.aclose()
            raise
        log.info("app.ready", contact=self.contact_uri, stt=self.stt_target,
                 stt_mode=c.recognizer.mode, dialplan=self.plan.source, prompts_prerendered=prompts,
                 records=_redacted(c.records.target), startup_s=round(self.clock() - started, 2),
                 http=self._ops.url if self._ops is not None else None)

    def _api_routes(self) -> list[Any]:
        """``/v1``: the control API when a token is set (or [http] api_no_auth on loopback)."""
        h = self.config.http
        if h.api_token is None and not h.api_no_auth:
            return api_off_routes("set VOICEBOT_API_TOKEN to serve it (docs/api.md)")
        return api_routes(ApiContext(
            registry=self.calls, dialplans=self.dialplans, unready=self.unready_reason,
            place=lambda uri, plan, variables, timeout_s: self.dial(uri, plan=plan, variables=variables,
                                                                    timeout_s=timeout_s),
            max_calls=self.config.sip.max_calls, token=h.api_token, trunk=h.trunk, campaigns=self.campaigns))

    def _campaign_placer(self, dialplan: str) -> _PlanPlacer:
        """What places a campaign's calls: :meth:`place_call` with the campaign's dialplan, which must
        be one this instance loaded (like POST /v1/calls)."""
        plan = self.dialplans.get(dialplan)
        if plan is None:
            known = ", ".join(sorted({p.name for p in self.dialplans.values()}))
            raise CampaignError(f"the campaign's dialplan {dialplan!r} is not loaded on this instance; "
                                f"known: {known} (add it to [http] dialplans)")
        return _PlanPlacer(self, plan)

    def _register(self) -> None:
        """REGISTER with ``[sip] registrar`` (a PBX extension or a provider that needs it); the SIP
        layer answers digest challenges and refreshes before expiry (RFC 3261 §10.2.4)."""
        sip = self.config.sip
        assert sip.registrar and sip.register_user and sip.register_password  # config validation
        registrar = parse_uri(sip.registrar)
        if not isinstance(registrar, SipUri):
            raise ConfigError(f"[sip] registrar must be a sip: URI, got {redact_sip_uri(sip.registrar)!r}")
        aor = f"sip:{sip.register_user}@{registrar.host}"
        self.registration_id = self.telephony.endpoint.register(
            sip.registrar, aor=aor, credentials=Credentials(sip.register_user, sip.register_password),
            expires_s=sip.register_expires_s)
        log.info("app.registering", registrar=redact_sip_uri(sip.registrar), aor=aor,
                 expires_s=sip.register_expires_s)

    async def _unregister(self, timeout_s: float = 2.0) -> None:
        """Remove our binding at the registrar (REGISTER with ``Expires: 0``) so the PBX stops
        sending calls to an instance that is going away; waits briefly for the answer. Whatever the
        last answer was: with the first REGISTER still in flight (no answer yet) or a refresh just
        refused, the registrar may hold a binding all the same, and only an unREGISTER removes it
        before it expires (the SIP layer sends it once the REGISTER in flight is answered)."""
        if self.registration_id is None or self._telephony is None:
            return
        endpoint = self._telephony.endpoint
        before = endpoint.registrations.get(self.registration_id)
        try:
            endpoint.unregister(self.registration_id)
        except SipStateError:  # the SIP layer gave up on it for good (logged): nothing to remove
            self.registration_id = None
            return
        log.info("app.unregistering", registration=self.registration_id)
        for _ in range(int(timeout_s / 0.05)):
            # done at the unREGISTER's answer: the first report after this one that is not bound
            state = endpoint.registrations.get(self.registration_id)
            if state is not before and state is not None and not state.registered:
                break
            await asyncio.sleep(0.05)
        self.registration_id = None

    @property
    def registered(self) -> bool | None:
        """Whether the registrar accepted us (None: no registrar, or no answer yet)."""
        if self.registration_id is None or self._telephony is None:
            return None
        state = self._telephony.endpoint.registrations.get(self.registration_id)
        return None if state is None else state.registered

    async def _start_recognition(self) -> None:
        rc = self.config.recognizer
        if rc.mode == "endpoint":
            self._stt_settings = ClientSettings.from_config(rc)
        else:
            from voicebot.stt.server import ServerConfig, start_server
            from voicebot.stt.session import SessionConfig, SessionLimits

            key = secrets.token_urlsafe(32)
            limits = SessionLimits(max_audio_ms=int(rc.session_max_audio_s * 1000),
                                   max_data_bytes=rc.session_max_bytes)
            server_config = ServerConfig(listen="127.0.0.1:0", api_keys=frozenset({key}),
                                         workers=self._stt_workers, session=SessionConfig(limits=limits))
            # The embedded recognizer's numbers (voicebot_stt_*) go to the app's own /metrics.
            from voicebot.observe.metrics import RecognizerMetrics

            self._stt_server = await start_server(server_config, engine=self._engine,
                                                  metrics=RecognizerMetrics(self.metrics.registry))
            target = f"127.0.0.1:{self._stt_server.port}"
            settings = ClientSettings.from_config(rc, target=target, api_key=key)
            # The embedded server is plaintext on loopback, whatever TLS the config asks of endpoints.
            self._stt_settings = dataclasses.replace(settings, tls=False, ca_file=None)
        self._stt_channel = open_channel(self.stt_settings)

    @property
    def ops_url(self) -> str | None:
        """Where /metrics, /healthz and /readyz are served (None: [http] listen is off)."""
        return self._ops.url if self._ops is not None else None

    def unready_reason(self) -> str | None:
        """None while this instance takes new calls, else why not (for /readyz)."""
        if not self._started:
            return "starting"
        if self._draining or self._stopping.is_set():
            return "draining"
        if len(self._calls) >= self.config.sip.max_calls:
            return "at max calls"
        return None

    def _count(self, leg: CallLeg, outcome: CallOutcome) -> None:
        """A finished call's numbers into the metrics."""
        m = self.metrics
        kind = "failed" if outcome.error else "completed" if outcome.answered else "unanswered"
        m.call_ended(direction=outcome.direction, outcome=kind, cause=outcome.cause.split(":")[0],
                     side=outcome.side)
        for reaction_ms in outcome.reaction_ms:
            m.reaction.observe(reaction_ms / 1000.0)
        with contextlib.suppress(VoicebotError):
            stats = leg.stats()
            m.leg_media(lost=stats.lost, late=stats.late, concealed=stats.concealed_frames,
                        refused=stats.dropped_stranger + stats.dropped_malformed)

    def request_stop(self) -> None:
        """Begin a graceful shutdown (SIGTERM/SIGINT): new calls and OPTIONS probes get 503 (a
        proxy takes the instance out of rotation), running ones may finish."""
        if not self._stopping.is_set():
            log.info("app.stopping", active_calls=len(self._calls), grace_s=self.grace_s)
            if self._telephony is not None:
                self._telephony.endpoint.set_draining(True)
        self._stopping.set()

    async def serve(self) -> None:
        """Run until :meth:`request_stop`, then drain (see :meth:`drain`). Inbound calls are
        answered from :meth:`start` on."""
        try:
            await self._stopping.wait()
        finally:
            if self.campaigns is not None:
                await self.campaigns.stop()  # paused in the store; nobody new is dialed
            await self.drain(self.grace_s)

    async def _accept(self) -> None:
        async for leg in self.telephony.incoming():
            if self._draining or not self.accept_inbound:
                reason = "shutting down" if self._draining else "this voicebot only places calls"
                with contextlib.suppress(VoicebotError):
                    leg.reject(503, f"Service Unavailable: {reason}")
                log.info("call.rejected", status=503, reason=reason, call_id=leg.call_id)
                continue
            self.start_call(leg)

    def start_call(self, leg: CallLeg, *, plan: Dialplan | None = None,
                   variables: Mapping[str, str] | None = None,
                   amd: AmdOptions | None = None,
                   entry: CallEntry | None = None) -> asyncio.Task[CallOutcome]:
        """Run the pipeline for ``leg`` in its own task (owned by the app until it ends); ``entry``
        is the call's registry entry when it was made before the leg (an outbound call)."""
        use_plan = plan if plan is not None else self.plan
        assert use_plan is not None, "App is not started"
        values = {**self.variables, **(variables or {})}
        call = entry or self.calls.add(leg.direction, from_uri=leg.from_uri, to_uri=leg.to_uri,
                                       dialplan=use_plan.name, sip_call_id=leg.call_id)

        async def run_call() -> CallOutcome:
            structlog.contextvars.bind_contextvars(call_id=leg.call_id)
            log.info("call.started", direction=leg.direction, dialplan=use_plan.name,
                     **{"pii.from": leg.from_uri, "pii.to": leg.to_uri})
            pipeline = CallPipeline(self.call_parts(), leg, use_plan, values, amd=amd, events=call.publish)
            with call.running(leg.call_id, pipeline, lambda: pipeline.outcome):
                outcome = await pipeline.run()
            self.outcomes.append(outcome)
            self._count(leg, outcome)
            return outcome

        # A fresh context: the call's call_id binding must not leak into the app's own lines.
        task = asyncio.get_running_loop().create_task(run_call(), name=f"call-{leg.call_id}",
                                                       context=contextvars.Context())
        self._calls[task] = leg
        task.add_done_callback(lambda t: self._calls.pop(t, None))
        task.add_done_callback(lambda _: call.finish(cause="cancelled"))  # if it never ran
        return task

    def hangup_all(self, *, cause: str = "shutdown") -> None:
        """Hang up every running call now; each call's record gets ``cause`` (by the robot), not a
        plain "bye", so a call cut by a shutdown is told from one the dialplan ended."""
        for leg in list(self._calls.values()):
            leg.hangup(cause=cause)

    async def drain(self, grace_s: float) -> None:
        """Let running calls finish for up to ``grace_s``, then hang up the rest and wait for them."""
        self._draining = True
        calls = list(self._calls)
        if calls:
            log.info("app.draining", active_calls=len(calls), grace_s=grace_s)
            _, pending = await asyncio.wait(calls, timeout=grace_s)
            if pending:
                log.info("app.hanging_up", active_calls=len(pending))
                self.hangup_all()
                _, pending = await asyncio.wait(pending, timeout=POST_HANGUP_FLUSH_S + 5.0)
                for task in pending:
                    task.cancel()

    async def place_call(self, uri: str, *, plan: Dialplan | None = None,
                         variables: Mapping[str, str] | None = None, timeout_s: float = 60.0,
                         credentials: Credentials | None = None, amd: AmdOptions | None = None,
                         destination: tuple[str, int] | None = None,
                         from_user: str | None = None, entry: CallEntry | None = None) -> CallOutcome:
        """Dial ``uri`` (through ``destination``, an outbound proxy, when given; ``from_user`` is the
        caller ID); once answered, run the dialplan (default: the app's) until the call ends, with
        answering-machine detection when ``amd`` is given.

        A call that is not answered returns an outcome with ``answered=False`` and the SIP reason.
        ``entry``: the call's registry entry, when the caller made it already (:meth:`dial`).
        """
        use_plan = plan if plan is not None else self.plan
        assert use_plan is not None, "App is not started"
        call = entry or self.calls.add("outbound", from_uri=self.contact_uri, to_uri=uri,
                                       dialplan=use_plan.name)
        try:
            leg = await self.telephony.dial(uri, credentials=credentials, timeout_s=timeout_s,
                                            destination=destination, from_user=from_user)
        except CallFailed as exc:
            log.info("call.outbound.failed", status=exc.status_code, error=exc.message, **{"pii.to": uri})
            outcome = CallOutcome(call_id="", direction="outbound", answered=False,
                                  cause=f"failed: {exc.status_code or ''} {exc.message}".strip(),
                                  side="caller", error=exc.message, sip_status=exc.status_code)
            call.finish(outcome)
            return outcome
        except BaseException as exc:
            call.finish(cause="cancelled" if isinstance(exc, asyncio.CancelledError) else f"failed: {exc}")
            raise
        return await self.start_call(leg, plan=use_plan, variables=variables, amd=amd, entry=call)

    def dial(self, uri: str, *, plan: Dialplan, variables: Mapping[str, str], timeout_s: float) -> CallEntry:
        """Place a call in the background (the control API): its registry entry at once (status
        dialing), the call in a task the registry owns. Digest credentials as ``voicebot call``."""
        sip = self.config.sip
        credentials = (Credentials(sip.register_user, sip.register_password)
                       if sip.register_user and sip.register_password else None)
        entry = self.calls.add("outbound", from_uri=self.contact_uri, to_uri=uri, dialplan=plan.name)
        self.calls.dial(entry, self.place_call(uri, plan=plan, variables=variables, timeout_s=timeout_s,
                                               credentials=credentials, entry=entry))
        return entry

    async def aclose(self) -> None:
        """Stop everything started, in reverse order; safe to call more than once."""
        self._draining = True
        if self._calls:
            await self.drain(0.0)
        if self.campaigns is not None:  # every dialer's results are stored before the calls' parts go
            await self.campaigns.aclose()
            self.campaigns = None
        # Calls still dialing are cancelled; then the event streams end (after the calls' ended
        # events), so no open stream holds the HTTP server open.
        await self.calls.aclose()
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
            self._accept_task = None
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
            self._retention_task = None
        if self._telephony is not None:
            await self._unregister()
            with contextlib.suppress(Exception):
                await self._telephony.stop()
            self._telephony = None
        if self._stt_channel is not None:
            await self._stt_channel.close(None)
            self._stt_channel = None
        if self._stt_server is not None:
            await self._stt_server.stop(grace_s=1.0)
            self._stt_server = None
        if self._records is not None:
            await self._records.aclose()
            self._records = None
        if self._ops is not None:
            await self._ops.aclose()
            self._ops = None
        if self._prompts is not None:
            await self._prompts.aclose()
            self._prompts = None
        log.info("app.stopped")


@dataclasses.dataclass(frozen=True, slots=True)
class _PlanPlacer:
    """:class:`~voicebot.campaign.dialer.Placer` for a campaign run by ``voicebot run``: the App's
    :meth:`App.place_call` with the campaign's dialplan rather than the App's default."""

    app: App
    plan: Dialplan

    async def place_call(self, uri: str, *, variables: Mapping[str, str] | None = None,
                         timeout_s: float = 60.0, credentials: Credentials | None = None,
                         amd: AmdOptions | None = None, destination: tuple[str, int] | None = None,
                         from_user: str | None = None) -> CallOutcome:
        return await self.app.place_call(uri, plan=self.plan, variables=variables, timeout_s=timeout_s,
                                         credentials=credentials, amd=amd, destination=destination,
                                         from_user=from_user)


__all__ = ["App", "resolve_dialplan_path"]
