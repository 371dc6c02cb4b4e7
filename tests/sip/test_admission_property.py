"""Hypothesis: whatever callers and the application do, the admission counts match the calls.

Random interleavings of INVITE / ACK / BYE / CANCEL from three sources, the application's answer /
reject / hangup and the passing of time (answer timeout, Timer H without ACK) run against one
sans-IO user agent. After every step the per-source and unconfirmed counts must equal what the
events say is alive, so no path (reject, CANCEL, 480 timeout, ack-timeout, BYE before ACK) can leak
a slot or free one twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.sip.config import UaConfig
from voicebot.sip.errors import SipStateError
from voicebot.sip.events import AckReceived, CallReceived, CallTerminated
from voicebot.sip.message import Response, parse_message
from voicebot.sip.useragent import UserAgent

from .test_hardening import ack, in_dialog, invite

pytestmark = pytest.mark.unit

SOURCES = ("198.51.100.1", "198.51.100.2", "127.0.0.1")  # the last is exempt (a local proxy)
# the call lifecycle twice as likely as the ways out of it, so most examples reach the ACK
ACTIONS = ("invite", "answer", "ack") * 2 + ("reject", "hangup", "bye", "cancel", "wait")


@dataclass
class Model:
    ua: UserAgent
    now: float = 0.0
    alive: dict[str, str] = field(default_factory=dict)  # call_id -> source IP
    unconfirmed: set[str] = field(default_factory=set)
    to_tags: dict[str, str] = field(default_factory=dict)
    number: dict[str, int] = field(default_factory=dict)

    def pump(self) -> None:
        self.ua.get_timer()
        for data, _ in self.ua.datagrams_to_send():
            message = parse_message(data)
            if (
                isinstance(message, Response)
                and message.status_code == 200
                and message.cseq.method == "INVITE"
            ):
                self.to_tags[message.call_id] = message.to_addr.tag or ""
        while (event := self.ua.next_event()) is not None:
            if isinstance(event, CallReceived):
                self.alive[event.call_id] = event.source[0]
                self.unconfirmed.add(event.call_id)
            elif isinstance(event, AckReceived):
                self.unconfirmed.discard(event.call_id)
            elif isinstance(event, CallTerminated):
                self.alive.pop(event.call_id, None)
                self.unconfirmed.discard(event.call_id)

    def check(self) -> None:
        admission = self.ua.admission
        for ip in SOURCES:
            assert admission.calls_from(ip) == sum(1 for s in self.alive.values() if s == ip)
        assert admission.unconfirmed_calls == len(self.unconfirmed)
        assert self.ua.active_calls == len(self.alive)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 1), st.integers(0, 2)), max_size=60))
def test_admission_counts_follow_the_calls(steps: list[tuple[str, int, int]]) -> None:
    config = UaConfig(
        local_host="10.0.0.2", max_calls=6, max_calls_per_source=3, answer_timeout_s=10, rate_limit_burst=1000
    )
    model = Model(UserAgent(config, rng=random.Random(3)))
    for action, n, source_index in steps:
        host = SOURCES[source_index]
        call_id = f"{n}@{host}"
        if action == "invite":
            model.ua.receive_datagram(
                invite(host, n, branch=f"{n}x{len(model.number)}"), (host, 5060), model.now
            )
            model.number[call_id] = n
        elif action in ("answer", "reject", "hangup"):
            try:
                if action == "answer":
                    model.ua.answer(call_id, model.now, local_rtp_port=40000)
                elif action == "reject":
                    model.ua.reject(call_id, model.now, 486)
                else:
                    model.ua.hangup(call_id, model.now)
            except SipStateError:
                pass
        elif action == "ack" and call_id in model.to_tags:
            model.ua.receive_datagram(ack(host, n, model.to_tags[call_id]), (host, 5060), model.now)
        elif action == "bye" and call_id in model.to_tags:
            bye = in_dialog(
                "BYE", host, n, to_tag=model.to_tags[call_id], branch=f"bye{len(model.number)}{n}"
            )
            model.ua.receive_datagram(bye, (host, 5060), model.now)
        elif action == "cancel":
            cancel = (
                invite(host, n, branch=f"{n}x{len(model.number) - 1}")
                .replace(b"INVITE sip:", b"CANCEL sip:", 1)
                .replace(b"1 INVITE", b"1 CANCEL")
            )
            model.ua.receive_datagram(cancel, (host, 5060), model.now)
        elif action == "wait":
            model.now += [0.5, 5.0, 11.0, 33.0][(n * 3 + source_index) % 4]
            while (timer := model.ua.get_timer()) is not None and timer <= model.now:
                model.ua.handle_timer(model.now)
        model.pump()
        model.check()
