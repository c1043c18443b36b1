# -*- test-case-name: tests.test_handshake, tests.test_handshake_fastpath -*-
"""
The peer's AUTH step of a L{securechat.crypto.handshake.Connection}
(docs/protocol.rst, 5): its handshake record opened, the identity kind and
the Finished MAC checked, the AUTH held (with the bytes it was read from)
while the application decides about the identity, and its signature
checked when it has (L{securechat.crypto.peerproof} holds the checks).

These functions are steps of the connection's state machine, kept apart
to keep its module readable: they read and set the connection's handshake
fields as its own methods would.  Which frames each state accepts stays in
the one transition table, in L{securechat.crypto.handshake}.  No IO, no
Twisted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from securechat.crypto import keys
from securechat.crypto.authstep import check_finished, open_auth
from securechat.crypto.events import Event, PeerIdentityReceived, State
from securechat.crypto.peerproof import check_identity_kind, check_signature

if TYPE_CHECKING:
    from securechat.crypto.handshake import Connection


def receive_auth(conn: Connection, frame: bytes, events: list[Event]) -> None:
    """
    WAIT_AUTH: open the peer's AUTH record C{frame}, check the identity's
    kind and the Finished MAC, and hold the AUTH, with its encoded
    identity, signature field and body as received (what the signature and
    the transcript cover), for L{check_peer_signature}; WAIT_VERIFY.
    """
    assert conn._opener is not None and conn._hs_recv is not None
    auth, identity_bytes, signature_bytes = open_auth(conn._opener, frame)
    check_identity_kind(conn.config.context, conn.is_initiator, auth.identity)
    check_finished(conn._hs_recv, auth.finished, identity_bytes, signature_bytes,
                   conn._transcript_hash)
    conn._pending_auth = auth
    conn._pending_raw = (identity_bytes, signature_bytes,
                         identity_bytes + signature_bytes + auth.finished)
    conn.state = State.WAIT_VERIFY
    events.append(PeerIdentityReceived(auth.identity))


def check_peer_signature(conn: Connection, public_key: keys.PublicKey | None) -> None:
    """
    L{check_signature} on the held AUTH, against the transcript so far
    followed by its encoded identity (C{public_key} None: the identity is
    refused, and the signature is checked against a stand-in).
    """
    assert conn._pending_auth is not None and conn._pending_raw is not None
    check_signature(conn.config.context, conn.is_initiator, conn.config.verifier,
                    conn._pending_auth, conn._transcript_hash(conn._pending_raw[0]), public_key)


__all__ = ["check_peer_signature", "receive_auth"]
