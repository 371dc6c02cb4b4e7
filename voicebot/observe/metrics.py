"""Prometheus metrics for ``voicebot run`` and ``voicebot stt-server`` (the standard client library).

Each process builds one :class:`CallMetrics` or :class:`RecognizerMetrics` on its own
``CollectorRegistry`` (never the global one), so tests can run several apps in one process and read
each app's numbers. The names follow Prometheus conventions: ``voicebot_`` prefix, base units
(seconds), ``_total`` for counters. Label values come from small fixed vocabularies (hang-up causes,
SIP status codes, gRPC codes), never from caller data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "CallMetrics", "RecognizerMetrics", "render"]

# Reaction (caller stops talking -> robot answers) and recognition latency live around 0.5-3 s.
_LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


# Where a read-at-scrape counter gets its numbers: label value -> count so far (monotonic).
CountSource = Callable[[], Mapping[str, int]]


class _ReadAtScrape(Collector):
    """A labelled counter whose values live elsewhere (the SIP stack's per-code tally, the prompt
    caches' hit counters) and are read when Prometheus scrapes, so the hot path pays nothing."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.sources: list[CountSource] = []

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        totals: dict[str, int] = {}
        for source in self.sources:
            for value, count in source().items():
                totals[value] = totals.get(value, 0) + count
        for value in sorted(totals):
            family.add_metric([value], totals[value])
        yield family


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format of everything in ``registry``."""
    return generate_latest(registry)


class CallMetrics:
    """What one ``voicebot run`` instance counts; the call pipeline and telephony feed it."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.calls_active = Gauge("voicebot_calls_active", "Calls in progress", registry=r)
        self.max_calls = Gauge("voicebot_calls_max", "Configured maximum of concurrent calls", registry=r)
        self.draining = Gauge("voicebot_draining", "1 while the instance drains for shutdown", registry=r)
        self.calls = Counter("voicebot_calls", "Calls ended, by direction and outcome",
                             ["direction", "outcome"], registry=r)
        self.hangups = Counter("voicebot_hangups", "Calls ended, by hang-up cause and side",
                               ["cause", "side"], registry=r)
        self.reaction = Histogram("voicebot_reaction_seconds",
                                  "Caller's end of speech (final) to the robot's first answer packet",
                                  buckets=_LATENCY_BUCKETS_S, registry=r)
        self.recognition_latency = Histogram(
            "voicebot_recognition_latency_seconds",
            "Audio sent up to the end of an utterance to its final result arriving",
            buckets=_LATENCY_BUCKETS_S, registry=r)
        self.recognizer_errors = Counter("voicebot_recognizer_errors",
                                         "Recognition sessions that ended in an error, by gRPC code",
                                         ["code"], registry=r)
        self.recognizer_sessions = Counter("voicebot_recognizer_sessions",
                                           "Recognition sessions opened, by reason (start, rotation, "
                                           "reconnect, context)", ["reason"], registry=r)
        self.rtp_packets_lost = Counter("voicebot_rtp_packets_lost", "RTP packets the caller sent that "
                                        "never arrived (sequence gaps)", registry=r)
        self.rtp_packets_late = Counter("voicebot_rtp_packets_late", "RTP packets that arrived after "
                                        "their playout time", registry=r)
        self.rtp_frames_concealed = Counter("voicebot_rtp_frames_concealed", "20 ms frames the jitter "
                                            "buffer had to conceal", registry=r)
        self.rtp_packets_refused = Counter("voicebot_rtp_packets_refused", "RTP packets refused (wrong "
                                           "source, invalid header)", registry=r)
        self.sip_responses = _ReadAtScrape("voicebot_sip_responses", "SIP responses sent, by status code",
                                           "code")
        r.register(self.sip_responses)
        self.prompt_cache = _ReadAtScrape("voicebot_prompt_cache", "Prompt syntheses by cache result "
                                          "(memory, disk, miss)", "result")
        r.register(self.prompt_cache)

    def call_ended(self, *, direction: str, outcome: str, cause: str, side: str) -> None:
        self.calls.labels(direction=direction, outcome=outcome).inc()
        self.hangups.labels(cause=cause, side=side).inc()

    def watch_sip_responses(self, source: CountSource) -> None:
        """Read the SIP stack's responses-sent tally (status code -> count) at every scrape."""
        self.sip_responses.sources.append(source)

    def watch_prompt_cache(self, source: CountSource) -> None:
        """Read prompt cache results (``memory``/``disk``/``miss`` -> count) at every scrape."""
        self.prompt_cache.sources.append(source)

    def session_opened(self, reason: str) -> None:
        """A recognition session opened (start, rotation-pause, rotation-forced, context, reconnect)."""
        self.recognizer_sessions.labels(reason=reason).inc()

    def session_closed(self, reason: str) -> None:
        """A recognition session ended; ``server: CODE message`` with a code other than OK counts as
        an error under that gRPC code (rotations, input end and cancellation are not errors)."""
        if not reason.startswith("server:"):
            return
        words = reason.removeprefix("server:").split()
        code = words[0] if words else "UNKNOWN"
        if code != "OK":
            self.recognizer_errors.labels(code=code).inc()

    def recognition_failed(self) -> None:
        """The call's recognition stream gave up (RecognitionError): no gRPC code to tell."""
        self.recognizer_errors.labels(code="stream_failed").inc()

    def leg_media(self, *, lost: int, late: int, concealed: int, refused: int = 0) -> None:
        """A leg's RTP counters at its end (each leg reports once)."""
        self.rtp_packets_lost.inc(max(lost, 0))
        self.rtp_packets_late.inc(max(late, 0))
        self.rtp_frames_concealed.inc(max(concealed, 0))
        self.rtp_packets_refused.inc(max(refused, 0))


class RecognizerMetrics:
    """What ``voicebot stt-server`` counts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge("voicebot_stt_sessions_active", "Streaming sessions in progress",
                                     registry=r)
        self.sessions = Counter("voicebot_stt_sessions", "Sessions ended, by gRPC status code",
                                ["code"], registry=r)
        self.finals = Counter("voicebot_stt_finals", "Final results sent", registry=r)
        self.audio_seconds = Counter("voicebot_stt_audio_seconds", "Audio received", registry=r)
        self.final_latency = Histogram("voicebot_stt_final_latency_seconds",
                                       "End of an utterance's audio to its final being sent",
                                       buckets=_LATENCY_BUCKETS_S, registry=r)
        self.decode = Histogram("voicebot_stt_decode_seconds", "Time one decode took on a worker",
                                ["kind"], buckets=_LATENCY_BUCKETS_S, registry=r)
