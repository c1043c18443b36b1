# -*- test-case-name: tests.test_attacks,tests.test_relay_reasons -*-
"""
Every way the protocol can fail, with the alert code the peer is told.

Two layers of detail, on purpose:

  - L{ProtocolError.code} is specific (C{"bad-signature"}, C{"unknown-user"},
    C{"record-replayed"}, ...).  It is for our own logs and for tests.
  - L{ProtocolError.alert} is what goes on the wire to the peer.  All failures
    of authentication during a handshake share one alert,
    L{Alert.HANDSHAKE_FAILED}, so a prober cannot tell an unknown user from a
    bad signature, a bad key share or a bad Finished MAC.

The codes and alerts are listed in docs/protocol.rst, "Errors".
"""

from __future__ import annotations

import enum


class Alert(enum.IntEnum):
    """
    Alert codes carried in ALERT messages (docs/protocol.rst, "Alerts").
    """

    CLOSE_NOTIFY = 0
    DECODE_ERROR = 1
    FRAME_TOO_LARGE = 2
    UNEXPECTED_MESSAGE = 3
    UNSUPPORTED_VERSION = 4
    NO_COMMON_SUITE = 5
    HANDSHAKE_FAILED = 6
    BAD_RECORD = 7
    TIMEOUT = 8
    LIMIT_EXCEEDED = 9
    ACCESS_REVOKED = 10
    SESSION_REPLACED = 11
    SHUTTING_DOWN = 12
    INTERNAL_ERROR = 13
    SERVER_REKEYED = 14
    UNAVAILABLE = 15


#: Specific error code -> (alert sent to the peer, default human message).
ERRORS: dict[str, tuple[Alert, str]] = {
    # framing and codecs
    "frame-too-large": (Alert.FRAME_TOO_LARGE, "frame length exceeds the maximum"),
    "empty-frame": (Alert.DECODE_ERROR, "frame of length zero"),
    "unknown-type": (Alert.DECODE_ERROR, "unknown message type"),
    "truncated": (Alert.DECODE_ERROR, "message is truncated"),
    "trailing-bytes": (Alert.DECODE_ERROR, "trailing bytes after message"),
    "bad-value": (Alert.DECODE_ERROR, "field has a value that is not allowed"),
    # state machine
    "unexpected-message": (Alert.UNEXPECTED_MESSAGE, "message not allowed in this state"),
    # negotiation
    "unsupported-version": (Alert.UNSUPPORTED_VERSION, "protocol version not supported"),
    "wrong-context": (Alert.UNEXPECTED_MESSAGE, "handshake meant for another context"),
    "no-common-suite": (Alert.NO_COMMON_SUITE, "no AEAD suite in common"),
    "suite-not-offered": (Alert.HANDSHAKE_FAILED, "peer chose a suite that was not offered"),
    # handshake authentication (all HANDSHAKE_FAILED on the wire)
    "bad-key-share": (Alert.HANDSHAKE_FAILED, "invalid or low-order X25519 key share"),
    "reflected-key-share": (Alert.HANDSHAKE_FAILED, "peer echoed our own key share"),
    "bad-handshake-record": (
        Alert.HANDSHAKE_FAILED,
        "handshake record failed authentication: transcript mismatch or tampering",
    ),
    "bad-signature": (Alert.HANDSHAKE_FAILED, "handshake signature does not verify"),
    "bad-finished": (Alert.HANDSHAKE_FAILED, "Finished MAC does not verify"),
    "wrong-identity-kind": (Alert.HANDSHAKE_FAILED, "peer sent the wrong kind of identity"),
    "bad-certificate": (Alert.HANDSHAKE_FAILED, "server certificate rejected"),
    "unknown-user": (Alert.HANDSHAKE_FAILED, "unknown user"),
    "revoked-user": (Alert.HANDSHAKE_FAILED, "user is revoked"),
    "peer-rejected": (Alert.HANDSHAKE_FAILED, "peer identity rejected"),
    "signing-failed": (Alert.HANDSHAKE_FAILED, "our key held elsewhere could not sign"),
    # records
    "record-replayed": (Alert.BAD_RECORD, "record counter already used (replay)"),
    "record-gap": (Alert.BAD_RECORD, "record counter skips ahead (reordered or dropped record)"),
    "bad-record-mac": (Alert.BAD_RECORD, "record failed authentication"),
    "empty-record": (Alert.BAD_RECORD, "record carries no message"),
    "record-limit": (Alert.BAD_RECORD, "record counter limit reached"),
    # the session
    "peer-alert": (Alert.CLOSE_NOTIFY, "peer sent an alert"),
    "unauthenticated-alert": (
        Alert.UNEXPECTED_MESSAGE,
        "connection interrupted: an alert arrived without authentication (not believed)",
    ),
    "connection-closed": (Alert.CLOSE_NOTIFY, "connection closed"),
    "timeout": (Alert.TIMEOUT, "timed out"),
    "limit-exceeded": (Alert.LIMIT_EXCEEDED, "limit exceeded"),
    "access-revoked": (Alert.ACCESS_REVOKED, "access revoked"),
    "session-replaced": (Alert.SESSION_REPLACED, "logged in again elsewhere"),
    "shutting-down": (Alert.SHUTTING_DOWN, "relay shutting down"),
    "internal-error": (Alert.INTERNAL_ERROR, "internal error"),
    "server-rekeyed": (Alert.SERVER_REKEYED, "the relay's certificate changed; reconnect to check the new one"),
    "unavailable": (Alert.UNAVAILABLE, "the relay cannot serve users now; try again shortly"),
}


class ProtocolError(Exception):
    """
    The connection cannot go on.

    @ivar code: one of the keys of L{ERRORS}.
    @ivar detail: a human sentence for our own log; never sent to the peer
        and never containing plaintext or key material.
    @ivar alert: the L{Alert} the peer is told.
    """

    def __init__(self, code: str, detail: str | None = None) -> None:
        alert, default = ERRORS[code]
        self.code = code
        self.alert = alert
        self.detail = detail or default
        super().__init__(f"{code}: {self.detail}")


class RemoteProtocolError(ProtocolError):
    """
    The peer broke the protocol (or an attacker did).
    """


class LocalProtocolError(ProtocolError):
    """
    We were asked to do something the protocol does not allow in this state:
    a bug in the caller, not the peer's fault.
    """


class PeerAlert(ProtocolError):
    """
    The peer closed the connection with an alert.

    @ivar peer_alert: the L{Alert} it sent (an unknown code is kept as an int).
    """

    def __init__(self, peer_alert: int) -> None:
        self.peer_alert = peer_alert
        try:
            name = Alert(peer_alert).name
        except ValueError:
            name = f"alert {peer_alert}"
        super().__init__("peer-alert", f"peer closed the connection: {name}")


class UnauthenticatedAlert(RemoteProtocolError):
    """
    A plaintext ALERT frame arrived after keys existed (docs/protocol.rst,
    8.3): anyone on the path could have written it, so it is not believed.
    The connection counts as interrupted, not refused, and the alert is
    not answered.

    @ivar peer_alert: the code it carried, for our own log only.
    """

    def __init__(self, peer_alert: int) -> None:
        self.peer_alert = peer_alert
        try:
            name = Alert(peer_alert).name
        except ValueError:
            name = f"alert {peer_alert}"
        super().__init__(
            "unauthenticated-alert",
            f"connection interrupted: an unauthenticated {name} alert arrived in the clear "
            "after keys existed (not believed)")
