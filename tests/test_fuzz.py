"""
A stateful fuzzer for the relay: hypothesis interleaves honest clients'
actions with random bytes, random frames and the passing of time, and after
every step checks the relay's invariants (no exception escapes, sessions,
chats, requests and the gate stay consistent).

In the normal test run it is bounded to a few seconds.  For a longer run::

    python -m tests.test_fuzz --seconds 300

which prints how many inputs were tried.
"""

from __future__ import annotations

import sys
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.trial import unittest

from securechat.server.limits import Limits
from securechat.wire.framing import encode_frame
from securechat.wire.messages import encode_inner
from securechat.wire.relay import (
    ChatAccept,
    ChatCancel,
    ChatRefuse,
    ChatRequest,
    ChatStop,
    ListOnline,
    Relay,
)
from tests.attack_tools import RawClient, connect_raw
from tests.relay_harness import USERS, Harness

NAMES = st.sampled_from(list(USERS[:5]) + ["nobody"])
COMMANDS = st.one_of(
    st.just(ListOnline()),
    st.builds(ChatRequest, NAMES), st.builds(ChatAccept, NAMES), st.builds(ChatRefuse, NAMES),
    st.builds(ChatCancel, NAMES), st.builds(ChatStop, NAMES),
    st.builds(Relay, NAMES, st.binary(max_size=64)),
)
FRAME_TYPES = st.sampled_from([0x01, 0x02, 0x03, 0x15, 0x17, 0x30, 0xFF])

#: Inputs tried, across runs (reported by the command-line entry point).
STEPS = [0]


class RelayMachine(RuleBasedStateMachine):
    """
    One relay, honest and raw clients, and a clock.
    """

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(Limits(max_unauthenticated=8, max_unauthenticated_per_host=4))
        self.raws: list[RawClient] = []
        self.honest: dict[str, RawClient] = {}

    def _step(self) -> None:
        STEPS[0] += 1
        self.h.pump()

    @precondition(lambda self: len(self.raws) < 12)
    @rule(host=st.integers(0, 3))
    def open_raw(self, host: int) -> None:
        raw, server, link = connect_raw(self.h, host=f"10.5.0.{host}")
        self.raws.append(raw)
        self._step()

    @precondition(lambda self: self.raws)
    @rule(index=st.integers(0, 11), data=st.binary(max_size=200))
    def random_bytes(self, index: int, data: bytes) -> None:
        raw = self.raws[index % len(self.raws)]
        if raw.transport is not None and not raw.lost:
            raw.write(data)
        self._step()

    @precondition(lambda self: self.raws)
    @rule(index=st.integers(0, 11), frame_type=FRAME_TYPES, payload=st.binary(max_size=120))
    def random_frame(self, index: int, frame_type: int, payload: bytes) -> None:
        raw = self.raws[index % len(self.raws)]
        if raw.transport is not None and not raw.lost:
            raw.write(encode_frame(frame_type, payload))
        self._step()

    @precondition(lambda self: len(self.honest) < 4)
    @rule(name=st.sampled_from(USERS[:5]))
    def login(self, name: str) -> None:
        raw, server, link = connect_raw(self.h, host="10.5.1.1")
        raw.login(name)
        self.honest[name] = raw
        self._step()

    @precondition(lambda self: self.honest)
    @rule(name=st.sampled_from(USERS[:5]), commands=st.lists(COMMANDS, min_size=1, max_size=4))
    def command(self, name: str, commands: list) -> None:  # type: ignore[type-arg]
        raw = self.honest.get(name)
        if raw is not None and raw.established and not raw.lost and raw.connection is not None \
                and raw.connection.state.value == "ESTABLISHED":
            raw.write(raw.seal(encode_inner(commands)))
        self._step()

    @precondition(lambda self: self.honest)
    @rule(name=st.sampled_from(USERS[:5]), data=st.binary(min_size=1, max_size=60))
    def garbage_record(self, name: str, data: bytes) -> None:
        raw = self.honest.get(name)
        if raw is not None and raw.established and not raw.lost and raw.connection is not None \
                and raw.connection.state.value == "ESTABLISHED":
            raw.write(raw.seal(data))
        self._step()

    @rule(seconds=st.floats(0, 30))
    def wait(self, seconds: float) -> None:
        self.h.network.advance(seconds)
        STEPS[0] += 1

    @invariant()
    def consistent(self) -> None:
        relay = self.h.relay
        assert relay.gate.total >= 0
        for user, session in relay.sessions.items():
            assert session.active and session.user == user
            assert session.protocol.established, user
            for peer in session.chats:
                assert peer in relay.sessions, (user, peer)
                assert user in relay.sessions[peer].chats, (user, peer)
            assert len(session.chats) <= relay.limits.max_chats
            assert len(session.outgoing) <= relay.limits.max_outgoing_requests
        for requester, target in relay._requests:
            assert requester in relay.sessions and target in relay.sessions
            assert target in relay.sessions[requester].outgoing
            assert requester in relay.sessions[target].incoming


class RelayFuzzTests(unittest.TestCase):
    """
    The relay under the fuzzer, bounded (and derandomized, so the normal run
    is deterministic).
    """

    def test_fuzzRelay(self) -> None:
        """
        60 runs of up to 30 steps of honest and hostile input keep every
        invariant and raise nothing.
        """
        from hypothesis.stateful import run_state_machine_as_test
        before = STEPS[0]
        run_state_machine_as_test(RelayMachine, settings=settings(
            max_examples=60, stateful_step_count=30, deadline=None, database=None,
            derandomize=True, suppress_health_check=list(HealthCheck)))
        self.assertGreater(STEPS[0] - before, 100)


def main(seconds: float) -> int:
    """
    Run the fuzzer for about C{seconds}; print how many inputs were tried.
    """
    from hypothesis.stateful import run_state_machine_as_test
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        run_state_machine_as_test(RelayMachine, settings=settings(
            max_examples=20, stateful_step_count=50, deadline=None, database=None,
            suppress_health_check=list(HealthCheck)))
        runs += 1
    print(f"fuzzed the relay for {seconds:.0f} s: {STEPS[0]} inputs in {runs} runs, no failure")
    return 0


if __name__ == "__main__":
    seconds = 60.0
    if "--seconds" in sys.argv:
        seconds = float(sys.argv[sys.argv.index("--seconds") + 1])
    sys.exit(main(seconds))
