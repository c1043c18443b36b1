# -*- test-case-name: tests.test_client_core -*-
"""
The relay's reason codes (docs/protocol.rst 11.3) in a user's words, and
codes this client does not know, which are shown by number rather than
treated as errors; and why a relay connection ended (L{describe_error}).
"""

from __future__ import annotations

from securechat.errors import Alert, PeerAlert, ProtocolError, UnauthenticatedAlert
from securechat.wire.relay import Reason

#: How a chat ends when the relay reports that the peer left.
DEPARTURES: dict[int, str] = {
    Reason.GONE: "{peer} went offline",
    Reason.REPLACED: "{peer} logged in elsewhere",
    Reason.REVOKED: "{peer}'s access was revoked",
}


def reason_of(code: int) -> Reason | int:
    """
    The L{Reason} for C{code}, or C{code} itself if this client does not
    know it (a newer relay): shown by number, never an error.
    """
    try:
        return Reason(code)
    except ValueError:
        return code


def reason_name(reason: Reason | int) -> str:
    """
    A reason in words for a user: C{too many pending}, or C{reason 99}.
    """
    if isinstance(reason, Reason):
        return reason.name.lower().replace("_", " ")
    return f"reason {reason}"


def reason_text(reason: Reason | int) -> str:
    """
    Why a chat ended, as the relay reported it, in words.
    """
    return _ENDED.get(reason, reason_name(reason))


_ENDED: dict[int, str] = {
    Reason.GONE: "the other side disconnected",
    Reason.STOPPED: "stopped",
    Reason.REVOKED: "the other side's access was revoked",
    Reason.REPLACED: "the other side logged in elsewhere",
}


def describe_error(error: ProtocolError | None, was_logged_in: bool) -> str | None:
    """
    One line for the user about why the relay connection ended.
    """
    if error is None:
        return None
    if isinstance(error, UnauthenticatedAlert):
        # Not believed (protocol 8.3): never reported as a refused login.
        return ("the connection to the relay was interrupted (an unauthenticated alert "
                "arrived, which is not believed)")
    if isinstance(error, PeerAlert):
        if error.peer_alert == Alert.HANDSHAKE_FAILED and not was_logged_in:
            return ("the relay refused the login: the user name is unknown or revoked, "
                    "or the key does not match the registered one")
        if error.peer_alert == Alert.SERVER_REKEYED:
            return "the relay changed its certificate; reconnecting to check the new one"
        if error.peer_alert == Alert.UNAVAILABLE:
            return ("the relay cannot serve users now (it lost its link to the other relay "
                    "processes); try again shortly")
        return error.detail.replace("peer closed the connection", "the relay closed the connection")
    if error.code == "bad-certificate":
        return f"the relay's certificate was rejected: {error.detail}"
    return error.detail
