# -*- test-case-name: tests.test_handshake -*-
"""
Alerts on a L{securechat.crypto.handshake.Connection} (docs/protocol.rst,
8.3): the peer's alert taken in, and ours sent, sealed whenever the peer
can open it, else in the clear.

The rule that a plaintext ALERT where we hold keys is
C{unauthenticated-alert} (never believed, never answered) is part of the
transition table, in L{securechat.crypto.handshake}; what reaches
L{handle_alert} is an alert that state accepts.  These functions are steps
of the connection's state machine, kept apart to keep its module readable:
they read and set the connection's fields as its own methods would.  No
IO, no Twisted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from securechat.crypto.authstep import application_secret
from securechat.crypto.events import ConnectionClosed, ConnectionFailed, Event, State
from securechat.crypto.records import RecordSealer
from securechat.errors import (
    Alert as AlertCode,
    LocalProtocolError,
    PeerAlert,
    ProtocolError,
    UnauthenticatedAlert,
)
from securechat.wire.messages import Alert, encode_frame_message, encode_inner

if TYPE_CHECKING:
    from securechat.crypto.handshake import Connection


def handle_alert(conn: Connection, alert: Alert, events: list[Event]) -> None:
    """
    The peer's C{alert}: CLOSE_NOTIFY closes the connection cleanly; any
    other code fails it with L{PeerAlert}, the peer's reason quoted.
    """
    if alert.code == AlertCode.CLOSE_NOTIFY:
        conn.state = State.CLOSED
        events.append(ConnectionClosed())
        return
    error = PeerAlert(alert.code)
    if alert.reason:
        error.detail += f" ({alert.reason!r})"
    conn.error = error
    conn.state = State.FAILED
    events.append(ConnectionFailed(error))


def answer_failure(conn: Connection, error: ProtocolError) -> None:
    """
    Queue the alert that tells the peer we fail with C{error}: none for an
    unauthenticated alert (an alert is never answered), and no reason with
    C{HANDSHAKE_FAILED} (every handshake failure the peer could learn from
    looks the same).
    """
    if not isinstance(error, UnauthenticatedAlert):
        reason = "" if error.alert == AlertCode.HANDSHAKE_FAILED else error.detail
        queue_alert(conn, error.alert, reason)


def queue_alert(conn: Connection, code: int, reason: str) -> None:
    """
    Queue our alert C{code} with C{reason}, under L{alert_sealer} or in the
    clear.
    """
    sealer = alert_sealer(conn)
    alert = Alert(code, reason)
    if sealer is not None:
        try:
            sealer.seal_into(encode_inner([alert]), conn._out)
        except LocalProtocolError:
            pass  # counter exhausted: nothing more can be sealed
    else:
        conn._out.append(encode_frame_message(alert))


def alert_sealer(conn: Connection) -> RecordSealer | None:
    """
    The sealer our alert goes under, or None to send it in the clear
    (docs/protocol.rst, 8.3): once established, the current one; a
    responder that opened the initiator's AUTH (WAIT_VERIFY) derives
    C{ap_r} over the whole transcript and sends under it, as the record
    the initiator, already established, expects first; otherwise the
    peer holds no key of ours it could open the alert with.
    """
    if conn.state is State.ESTABLISHED:
        return conn._sealer
    auth = conn._pending_auth
    if (conn.state is State.WAIT_VERIFY and not conn.is_initiator and auth is not None
            and conn._hs_secret is not None and conn.suite is not None):
        conn._absorb(auth.encode_body())
        ap_r = application_secret(conn._hs_secret, conn._transcript_hash(), initiator=False)
        return RecordSealer(conn.suite, ap_r, conn._interval)
    return None
