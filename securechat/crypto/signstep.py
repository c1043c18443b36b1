# -*- test-case-name: tests.test_handshake_signing, tests.test_handshake -*-
"""
The signing step of a L{securechat.crypto.handshake.Connection}: where we
sign our AUTH.  A key in memory signs at once and the handshake goes on; a
key held elsewhere (L{securechat.crypto.signer.ExternalKey}) is asked for
its signature with L{SignatureNeeded}, and the connection waits in
C{WAIT_SIGN}, input held back, until L{signature_ready} (then it goes on as
if it had signed at once) or L{signing_failed}.

These functions are steps of the connection's state machine, kept apart
to keep its module readable: they read and set the connection's handshake
fields as its own methods would.  Which frames each state accepts stays in
the one transition table, in L{securechat.crypto.handshake}.  No IO, no
Twisted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from securechat.crypto import keys
from securechat.crypto.authstep import auth_body, auth_content
from securechat.crypto.events import Event, SignatureNeeded, State
from securechat.crypto.signer import ExternalKey, SigningError, check_signature as check_own
from securechat.errors import LocalProtocolError, ProtocolError
from securechat.wire.messages import AUTH, INNER_HEADER

if TYPE_CHECKING:
    from securechat.crypto.handshake import Connection


def send_auth(conn: Connection, events: list[Event]) -> bool:
    """
    Sign and send our AUTH, and return True; or, our key being held
    elsewhere, ask for the signature (L{SignatureNeeded}), enter WAIT_SIGN
    and return False.
    """
    content = auth_content(conn.config.context, conn.is_initiator, conn.config.identity,
                           conn._transcript_hash)
    key = conn.config.private_key
    if isinstance(key, ExternalKey):
        conn._pending_sign = (key.scheme, content)
        conn.state = State.WAIT_SIGN
        events.append(SignatureNeeded(key.scheme, content))
        return False
    finish_auth(conn, *keys.sign(key, content))
    return True


def finish_auth(conn: Connection, scheme: int, signature: bytes) -> None:
    """
    Add our AUTH, with C{signature} made under C{scheme}, to the transcript
    and queue it sealed under our handshake traffic key.
    """
    assert conn._sealer is not None and conn._hs_send is not None
    body = auth_body(conn.config.identity, scheme, signature, conn._hs_send,
                     conn._transcript_hash)
    conn._absorb(body)
    conn._sealer.seal_into(INNER_HEADER.pack(AUTH, len(body)) + body, conn._out)


def signature_ready(conn: Connection, signature: bytes) -> list[Event]:
    """
    L{securechat.crypto.handshake.Connection.signature_ready}: check
    C{signature} against the external key's public half (else
    C{signing-failed}), send our AUTH and go on where the handshake stopped,
    processing input held back meanwhile.
    """
    if conn.state is not State.WAIT_SIGN or conn._pending_sign is None:
        raise LocalProtocolError("unexpected-message", "no signature is awaited")
    scheme, content = conn._pending_sign
    conn._pending_sign = None
    events: list[Event] = []
    try:
        key = conn.config.private_key
        assert isinstance(key, ExternalKey)
        try:
            check_own(key, content, signature)
        except SigningError as e:
            raise LocalProtocolError("signing-failed", str(e)) from None
        finish_auth(conn, scheme, signature)
        if conn.is_initiator:
            assert conn._pending_peer is not None
            public_key, identity = conn._pending_peer
            conn._pending_peer = None
            conn._enter_established(public_key, identity, events)
        else:
            conn.state = State.WAIT_AUTH
    except ProtocolError as e:
        events.append(conn._fail(e))
        return events
    events.extend(conn._process())
    return events


def signing_failed(conn: Connection, detail: str) -> list[Event]:
    """
    L{securechat.crypto.handshake.Connection.signing_failed}: fail with
    C{signing-failed}.
    """
    if conn.state is not State.WAIT_SIGN:
        raise LocalProtocolError("unexpected-message", "no signature is awaited")
    return [conn._fail(LocalProtocolError("signing-failed", detail))]
