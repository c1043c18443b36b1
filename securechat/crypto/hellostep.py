# -*- test-case-name: tests.test_handshake -*-
"""
The HELLO step of a L{securechat.crypto.handshake.Connection}
(docs/protocol.rst, 5): our HELLO (initiator) or HELLO_REPLY (responder)
with a fresh ephemeral key share, the peer's checked (version, context,
suite), the one X25519 exchange, and the handshake traffic keys the AUTH
records go under.

These functions are steps of the connection's state machine, kept apart
to keep its module readable: they read and set the connection's handshake
fields as its own methods would.  Which frames each state accepts stays in
the one transition table, in L{securechat.crypto.handshake}.  No IO, no
Twisted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from securechat.crypto import signstep
from securechat.crypto.authstep import handshake_keys
from securechat.crypto.events import Event, State
from securechat.crypto.keyshare import exchange, new_key_share
from securechat.crypto.records import RecordOpener, RecordSealer
from securechat.crypto.suites import SUITES
from securechat.errors import RemoteProtocolError
from securechat.wire.hscodec import hello_fields, hello_reply_frame
from securechat.wire.messages import (
    PROTOCOL_VERSION,
    Hello,
    HelloReply,
    encode_frame_message,
    parse_frame,
)

if TYPE_CHECKING:
    from securechat.crypto.handshake import Connection


def send_hello(conn: Connection) -> None:
    """
    Initiator: queue our HELLO (nonce, key share, suite offer) and wait for
    the reply.
    """
    hello = Hello(
        PROTOCOL_VERSION,
        conn.config.context,
        conn.config.random(32),
        _new_key_share(conn),
        tuple(conn.config.suites),
    )
    frame = encode_frame_message(hello)
    conn._absorb(frame)
    conn._out.append(frame)
    conn.state = State.WAIT_REPLY


def handle_hello(conn: Connection, frame: bytes, events: list[Event]) -> None:
    """
    Responder: check the initiator's HELLO, choose the first suite it offers
    that we allow, reply, and send our AUTH (or wait for its signature,
    L{signstep.send_auth}).
    """
    version, context, key_share, offer = hello_fields(frame)
    if version != PROTOCOL_VERSION:
        raise RemoteProtocolError("unsupported-version", f"version {version}")
    config = conn.config
    if context != config.context:
        raise RemoteProtocolError(
            "wrong-context", f"HELLO for context {context}, this is {config.context}"
        )
    ours = config.suites
    for chosen in offer:
        if chosen in ours and chosen in SUITES:
            break
    else:
        raise RemoteProtocolError("no-common-suite")
    conn.suite = SUITES[chosen]
    reply_frame = hello_reply_frame(PROTOCOL_VERSION, config.random(32), _new_key_share(conn),
                                    chosen)
    shared = _exchange(conn, key_share)
    transcript = conn._transcript
    assert transcript is not None
    transcript.update(frame)
    transcript.update(reply_frame)
    _start_handshake_keys(conn, shared)
    conn._out.append(reply_frame)
    if signstep.send_auth(conn, events):
        conn.state = State.WAIT_AUTH


def handle_reply(conn: Connection, frame: bytes) -> None:
    """
    Initiator: check the responder's HELLO_REPLY (a suite we offered) and
    wait for its AUTH.
    """
    reply = parse_frame(frame, HelloReply)
    if reply.version != PROTOCOL_VERSION:
        raise RemoteProtocolError("unsupported-version", f"version {reply.version}")
    if reply.suite not in conn.config.suites or reply.suite not in SUITES:
        raise RemoteProtocolError("suite-not-offered", f"suite 0x{reply.suite:04x}")
    conn.suite = SUITES[reply.suite]
    shared = _exchange(conn, reply.key_share)
    conn._absorb(frame)
    _start_handshake_keys(conn, shared)
    conn.state = State.WAIT_AUTH


def _new_key_share(conn: Connection) -> bytes:
    conn._ephemeral, conn._key_share = new_key_share(conn.config.random)
    return conn._key_share


def _exchange(conn: Connection, peer_share: bytes) -> bytes:
    assert conn._ephemeral is not None
    try:
        return exchange(conn._ephemeral, conn._key_share, peer_share)
    finally:
        # Forward secrecy: the ephemeral secret is used exactly once.
        conn._ephemeral = None


def _start_handshake_keys(conn: Connection, shared: bytes) -> None:
    suite = conn.suite
    assert suite is not None
    conn._hs_secret, send, recv = handshake_keys(
        conn.config.context, shared, conn._transcript_hash(), conn.is_initiator)
    conn._hs_send = send
    conn._hs_recv = recv
    # Handshake records never reach a key update: one record each way.
    conn._sealer = RecordSealer(suite, send, conn._interval)
    conn._opener = RecordOpener(suite, recv, conn._interval)
