"""Scale-out behind the shipped Kamailio front: calls spread over two instances, a SIGKILLed instance
leaves rotation within seconds and no new call fails, it rejoins after a restart, and a SIGTERMed
instance drains with no caller seeing an error.

Real parts only: Debian's kamailio with docker/kamailio/kamailio.cfg (rendered for 127.0.0.1 by
its -A defines), two ``voicebot run`` processes, one shared ``voicebot stt-server`` with the real
model, sipp callers. The test prints the numbers the issue asks for (calls placed / failed,
failover detection time, drain result).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Voicebot
from tests.scaleout.front import (
    Front,
    Recognizer,
    start_callers,
    start_front,
    start_instance,
    start_recognizer,
)
from tests.sip.peers import free_udp_port

pytestmark = [pytest.mark.scaleout, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recognizer]:
    rec = start_recognizer(tmp_path_factory.mktemp("recognizer"))
    yield rec
    rec.stop()


@pytest.fixture
def tts_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "tts-cache"


class Topology:
    def __init__(self, tmp_path: Path, tts_cache: Path, recognizer: Recognizer) -> None:
        self.tmp_path, self.tts_cache, self.recognizer = tmp_path, tts_cache, recognizer
        self.ports = [free_udp_port(), free_udp_port()]
        self.bots: dict[int, Voicebot] = {}
        self.front: Front | None = None

    def start_bot(self, i: int) -> Voicebot:
        bot = start_instance(self.tmp_path / f"bot{i}-{time.monotonic_ns()}", tts_cache=self.tts_cache,
                             recognizer=self.recognizer, sip_port=self.ports[i])
        self.bots[i] = bot
        return bot

    def uri(self, i: int) -> str:
        return f"sip:127.0.0.1:{self.ports[i]}"

    def stop(self) -> None:
        if self.front is not None:
            self.front.stop()
        for bot in self.bots.values():
            bot.stop()


@pytest.fixture
def topology(tmp_path: Path, tts_cache: Path, recognizer: Recognizer) -> Iterator[Topology]:
    topo = Topology(tmp_path, tts_cache, recognizer)
    try:
        topo.start_bot(0)
        topo.start_bot(1)
        topo.front = start_front(tmp_path / "front", topo.ports)
        topo.front.wait_destination(topo.uri(0), active=True, timeout_s=10)
        topo.front.wait_destination(topo.uri(1), active=True, timeout_s=10)
        yield topo
    finally:
        topo.stop()


def _spread(front: Front, call_ids: set[str] | None = None) -> collections.Counter[str]:
    last: dict[str, str] = {}
    for call_id, uri in front.routes():
        if call_ids is None or call_id in call_ids:
            last[call_id] = uri
    return collections.Counter(last.values())


def test_calls_spread_a_killed_instance_leaves_rotation_and_rejoins(topology: Topology) -> None:
    front = topology.front
    assert front is not None

    spread = start_callers(topology.tmp_path, front, name="spread", calls=10, rate=4, hold_ms=1500)
    code, ok, failed = spread.wait(90)
    routed = _spread(front)
    print(f"\nscale-out spread: placed 10, ok {ok}, failed {failed}, per instance {dict(routed)}")
    assert (code, ok, failed) == (0, 10, 0), spread.errors()
    assert routed[topology.uri(0)] >= 3 and routed[topology.uri(1)] >= 3, routed

    # SIGKILL instance 0 with no warning, then keep calling: no new call may fail.
    routes_before = len(front.routes())
    topology.bots[0].proc.kill()
    killed_at = time.monotonic()
    after = start_callers(topology.tmp_path, front, name="after-kill", calls=16, rate=4, hold_ms=1000)
    detected_s = front.wait_destination(topology.uri(0), active=False, timeout_s=15)
    detected_s += 0.0 if detected_s else time.monotonic() - killed_at
    code, ok, failed = after.wait(120)
    new_routes = front.routes()[routes_before:]
    failovers = sum(1 for _, uri in new_routes if uri == topology.uri(0))
    print(f"scale-out SIGKILL: placed 16 after the kill, ok {ok}, failed {failed}; instance out of "
          f"rotation after {detected_s:.1f} s; {failovers} INVITE(s) tried on the dead instance first")
    assert (code, ok, failed) == (0, 16, 0), after.errors()
    assert detected_s < 5.0

    # Restarted on its port, it rejoins the rotation and takes calls again.
    topology.start_bot(0)
    rejoin_s = front.wait_destination(topology.uri(0), active=True, timeout_s=15)
    routes_before = len(front.routes())
    again = start_callers(topology.tmp_path, front, name="rejoined", calls=6, rate=4, hold_ms=500)
    code, ok, failed = again.wait(60)
    routed = collections.Counter(uri for _, uri in front.routes()[routes_before:])
    print(f"scale-out rejoin: back in rotation {rejoin_s:.1f} s after its restart was ready; "
          f"next 6 calls: ok {ok}, failed {failed}, per instance {dict(routed)}")
    assert (code, ok, failed) == (0, 6, 0), again.errors()
    assert routed[topology.uri(0)] >= 2, routed


def test_a_sigtermed_instance_drains_without_a_caller_seeing_an_error(topology: Topology) -> None:
    front = topology.front
    assert front is not None
    # Calls that are up on both instances when instance 1 is told to stop, and calls that keep
    # coming while it drains.
    held = start_callers(topology.tmp_path, front, name="held", calls=6, rate=6, hold_ms=4000)
    time.sleep(1.5)
    draining = topology.bots[1]
    draining.proc.terminate()
    stopped_at = time.monotonic()
    during = start_callers(topology.tmp_path, front, name="during-drain", calls=12, rate=4, hold_ms=500)
    out_s = front.wait_destination(topology.uri(1), active=False, timeout_s=10)
    held_result = held.wait(60)
    during_result = during.wait(60)
    exit_code = draining.proc.wait(40)
    drained_s = time.monotonic() - stopped_at
    ended = draining.log_events("call.summary")
    causes = collections.Counter(f"{e.get('cause')} by {e.get('side')}" for e in ended)
    print(f"\nscale-out drain: out of rotation {out_s:.1f} s after SIGTERM; held calls {held_result[1:]}, "
          f"calls during the drain {during_result[1:]} (ok, failed); instance exited {exit_code} after "
          f"{drained_s:.1f} s; its call endings {dict(causes)}")
    assert held_result == (0, 6, 0), held.errors()
    assert during_result == (0, 12, 0), during.errors()
    assert exit_code == 0
    # Every call the draining instance had was ended by its caller, none cut by the shutdown.
    assert ended and all(e.get("side") == "caller" for e in ended), causes
