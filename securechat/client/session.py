# -*- test-case-name: tests.test_client_cli -*-
"""
One relay connection of C{securechat-client}: the session (a
L{ChatClient} that decides, when the connection ends, whether reconnecting
can help: L{is_final}), the protocol that also notes why TLS ended a
connection, and the factory L{twisted.application.internet.ClientService}
uses for each attempt.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from securechat.client.core import ChatClient, ServerVerifier
from securechat.client.endpoint import describe_tls_failure
from securechat.client.groupstore import GroupKeyStore
from securechat.client.letterstore import LetterStore
from securechat.client.pins import PinStore
from securechat.client.view import ChatView
from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.crypto.signer import ExternalKey
from securechat.crypto.suites import DEFAULT_OFFER, SUITES
from securechat.errors import Alert, PeerAlert, ProtocolError, RemoteProtocolError
from securechat.protocol import SecureChatProtocol
from securechat.wire.groups import GROUP_FROM_SERVER
from securechat.wire.messages import UserIdentity


class FinalError(RemoteProtocolError):
    """
    The relay connection ended in a way reconnecting cannot fix; C{detail}
    is the one line that says why.
    """

    def __init__(self, detail: str) -> None:
        super().__init__("connection-closed", detail)


def is_final(error: Any) -> bool:
    """
    Whether the relay connection ended in a way reconnecting cannot fix:
    the login refused, access revoked, the session replaced by another
    login, a relay that is not the one configured, no encryption suite or
    protocol version in common, or TLS refusing the relay (L{FinalError}).
    """
    if isinstance(error, FinalError):
        return True
    if isinstance(error, PeerAlert):
        return error.peer_alert in (Alert.HANDSHAKE_FAILED, Alert.ACCESS_REVOKED,
                                    Alert.SESSION_REPLACED, Alert.UNSUPPORTED_VERSION,
                                    Alert.NO_COMMON_SUITE)
    return error.code in ("bad-certificate", "wrong-identity-kind", "bad-signature", "signing-failed",
                          "bad-handshake-record", "suite-not-offered", "unsupported-version")


def explain(error: ProtocolError) -> ProtocolError:
    """
    C{error}, or a L{FinalError} whose line names the problem when no
    encryption suite is shared with the relay.
    """
    offered = ", ".join(SUITES[code].name for code in DEFAULT_OFFER)
    if isinstance(error, PeerAlert) and error.peer_alert == Alert.NO_COMMON_SUITE:
        return FinalError(f"the relay accepts none of the encryption suites this client offers "
                          f"({offered}): no suite in common")
    if error.code == "suite-not-offered":
        return FinalError(f"the relay chose an encryption suite this client does not offer "
                          f"({error.detail}; it offers {offered}): no suite in common")
    return error


class FrontEnd(ChatView, Protocol):
    """
    What L{RelaySession} needs of the interface beyond L{ChatView}: the
    line terminal (L{ChatTerminal}) and the full-screen view
    (L{securechat.client.tui.view.FullScreen}) both offer it.
    """

    client: ChatClient | None
    exiting: bool
    was_logged_in: bool
    input_ended: bool

    def say(self, text: str) -> None: ...
    def login_abandoned(self) -> None: ...


class RelaySession(ChatClient):
    """
    The client of one relay connection: at its end, exit (C{finish(1)})
    when reconnecting cannot help, else say that it reconnects.

    @ivar tls_failure: set by L{RelayConnection} when TLS ended the
        connection: the line that says why.
    """

    def __init__(self, user: str, private_key: keys.PrivateKey | ExternalKey, terminal: FrontEnd,
                 verify: ServerVerifier, pins: PinStore, finish: Any,
                 letters: LetterStore | None = None, groups: GroupKeyStore | None = None) -> None:
        super().__init__(user, private_key, terminal, verify, pins, letters=letters, groups=groups)
        self.terminal = terminal
        self.finish = finish
        self.tls_failure: str | None = None

    def connection_ended(self, reason: ProtocolError | None) -> None:
        key = self.private_key
        if (isinstance(key, ExternalKey) and isinstance(reason, PeerAlert) and not self.logged_in
                and reason.peer_alert == Alert.HANDSHAKE_FAILED):
            # With a key on a token, the likely cause is the wrong key on it.
            reason = FinalError(
                f"the relay refused the login: the user name is unknown or revoked, or the key "
                f"on the token (fingerprint {keys.fingerprint(key.public_key())}) is not the "
                f"one registered for {self.user}")
        if reason is not None:
            if self.tls_failure is not None and reason.code == "connection-closed":
                if self.logged_in:
                    reason = RemoteProtocolError("connection-closed", self.tls_failure)
                else:
                    reason = FinalError(self.tls_failure)
            reason = explain(reason)
        super().connection_ended(reason)
        terminal = self.terminal
        if terminal.exiting:
            return
        final = reason is not None and is_final(reason)
        if terminal.input_ended or (final and not terminal.was_logged_in):
            # Refused, or a script whose input has ended, which cannot
            # wait for a reconnection: what was not run is said.
            terminal.login_abandoned()
            self.finish(1 if reason is not None or not terminal.was_logged_in else 0)
            return
        if reason is None:
            return
        if final:
            self.finish(1)  # refused, revoked, replaced, or not the right relay
        else:
            terminal.say("* reconnecting...")


class RelayConnection(SecureChatProtocol):
    """
    The client's protocol: also notes, for its L{RelaySession}, why TLS
    ended the connection underneath it (the protocol itself would only see
    the connection lost).
    """

    _lost: list[Deferred[None]] | None = None

    def when_lost(self) -> Deferred[None]:
        """
        A Deferred that fires once the connection is gone (after a clean
        close has written its last bytes).
        """
        d: Deferred[None] = Deferred()
        if self._lost is None:
            self._lost = []
        self._lost.append(d)
        return d

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        line = describe_tls_failure(reason, self.transport)
        if line is not None and isinstance(self.delegate, RelaySession):
            self.delegate.tls_failure = line
        super().connectionLost(reason)
        waiting, self._lost = self._lost or [], None
        for d in waiting:
            d.callback(None)


class SessionFactory(Factory):
    """
    Builds one L{RelayConnection} with a fresh L{RelaySession} per
    connection attempt, and points the terminal at it.
    """

    def __init__(self, reactor: Any, user: str, private_key: keys.PrivateKey | ExternalKey,
                 terminal: FrontEnd, verify: ServerVerifier, pins: PinStore,
                 finish: Any, letters: LetterStore | None = None,
                 groups: GroupKeyStore | None = None) -> None:
        self.reactor = reactor
        self.user = user
        self.private_key = private_key
        self.terminal = terminal
        self.verify = verify
        self.pins = pins
        self.finish = finish
        self.letters = letters
        self.groups = groups

    def buildProtocol(self, addr: Any) -> RelayConnection:
        client = RelaySession(self.user, self.private_key, self.terminal, self.verify, self.pins,
                              self.finish, self.letters, self.groups)
        self.terminal.client = client
        config = Config(CLIENT_SERVER, Role.INITIATOR, self.private_key, UserIdentity(self.user),
                        registry=GROUP_FROM_SERVER)
        protocol = RelayConnection(config, client, self.reactor, handshake_timeout=30,
                                   idle_timeout=None)
        return protocol
