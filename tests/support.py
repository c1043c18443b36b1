"""
Shared helpers for the tests: deterministic randomness and a driver that
runs two sans-IO connections against each other in memory.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

from securechat.crypto import keys
from securechat.crypto.events import ConnectionFailed, Event, PeerIdentityReceived
from securechat.crypto.handshake import Connection
from securechat.wire.messages import Identity

#: Decides what to do with a claimed identity: return the public key to
#: accept it, or a (code, detail) pair to reject it.
Resolver = Callable[[Identity], "keys.PublicKey | tuple[str, str]"]


class DeterministicRandom:
    """
    A reproducible byte source: SHA-256 in counter mode over a seed.  Only
    for tests and test vectors.
    """

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return out[:n]


def resolve(conn: Connection, events: Sequence[Event], resolver: Resolver) -> list[Event]:
    """
    Answer every L{PeerIdentityReceived} in C{events} with C{resolver};
    return all events, including those the answers produced.
    """
    out: list[Event] = []
    for event in events:
        out.append(event)
        if isinstance(event, PeerIdentityReceived):
            answer = resolver(event.identity)
            if isinstance(answer, tuple):
                out.extend(conn.reject_peer(*answer))
            else:
                out.extend(resolve(conn, conn.accept_peer(answer), resolver))
    return out


def run(
    initiator: Connection,
    responder: Connection,
    resolve_at_initiator: Resolver,
    resolve_at_responder: Resolver,
    max_rounds: int = 10,
    chunk: int | None = None,
) -> tuple[list[Event], list[Event]]:
    """
    Shuttle bytes between the two connections until both are quiet; return
    the events each saw.  C{chunk} delivers bytes that many at a time.
    """
    if initiator.state.value == "START":
        initiator.initiate()
    seen_i: list[Event] = []
    seen_r: list[Event] = []
    for _ in range(max_rounds):
        to_r = initiator.data_to_send()
        to_i = responder.data_to_send()
        if not to_r and not to_i:
            break
        for data, conn, seen, resolver in (
            (to_r, responder, seen_r, resolve_at_responder),
            (to_i, initiator, seen_i, resolve_at_initiator),
        ):
            step = chunk or max(len(data), 1)
            for i in range(0, len(data), step):
                seen.extend(resolve(conn, conn.receive_data(data[i:i + step]), resolver))
    return seen_i, seen_r


def failure(events: Sequence[Event]) -> str | None:
    """
    The error code of the L{ConnectionFailed} in C{events}, if any.
    """
    for e in events:
        if isinstance(e, ConnectionFailed):
            return e.error.code
    return None
