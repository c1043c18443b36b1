"""
A relay and recording clients on an in-memory network, for the relay tests.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.task import Clock
from zope.interface import implementer

from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.errors import ProtocolError
from securechat.delegate import ISessionDelegate, PeerRejected
from securechat.protocol import SecureChatProtocol
from securechat.server.directory import MemoryDirectory, UserEntry
from securechat.server.limits import Limits
from securechat.server.relay import Relay, RelayFactory, ServerCredentials
from securechat.wire.messages import CertificateIdentity, Identity, Message
from securechat.wire.groups import GROUP_FROM_SERVER
from securechat.wire.relay import Welcome
from tests.memnet import Link, Network

SERVER_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x53" * 32)
# The relay tests do not check certificates (tests.test_x509 does); the
# recording client trusts the server key directly.
SERVER_IDENTITY = CertificateIdentity((b"test certificate",), b"test crl")


def user_key(name: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


USERS = ("alice", "bob", "carol", "dave", "eve", "frank", "grace", "heidi", "ivan", "judy")


@implementer(ISessionDelegate)
class RecordingClient:
    """
    A client delegate that trusts the test server key and records what the
    relay sends.
    """

    protocol: SecureChatProtocol

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: list[Message] = []
        self.is_established = False
        #: True once the relay's WELCOME arrived: the initiator's handshake
        #: completes before the relay has accepted it.
        self.logged_in = False
        self.ended = False
        self.error: ProtocolError | None = None

    def verify_peer(self, identity: Identity) -> keys.PublicKey:
        if identity != SERVER_IDENTITY:
            raise PeerRejected("bad-certificate", "not the test server")
        return SERVER_KEY.public_key()

    def established(self, peer: Identity) -> None:
        self.is_established = True

    def message_received(self, message: Message) -> None:
        if isinstance(message, Welcome):
            self.logged_in = True
        self.messages.append(message)

    def connection_ended(self, reason: ProtocolError | None) -> None:
        self.ended = True
        self.error = reason

    def send(self, *messages: Message) -> None:
        self.protocol.send(*messages)

    def take(self) -> list[Message]:
        """
        The messages received since the last call.
        """
        out, self.messages = self.messages, []
        return out

    def of_type(self, cls: type) -> list[Any]:
        return [m for m in self.messages if isinstance(m, cls)]


class Harness:
    """
    One relay, its directory of test users, and a network to reach it.
    """

    def __init__(self, limits: Limits = Limits(), clock: Clock | None = None,
                 relay_class: type[Relay] = Relay, store: Any = None,
                 group_store: Any = None) -> None:
        self.network = Network(clock)
        self.clock = self.network.clock
        self.directory = MemoryDirectory(
            UserEntry(name, user_key(name).public_key()) for name in USERS)
        self.relay = relay_class(
            self.directory, ServerCredentials(SERVER_KEY, SERVER_IDENTITY), self.clock, limits,
            store=store, group_store=group_store)
        self.factory = RelayFactory(self.relay)
        self.links: dict[str, Link] = {}

    def connect(self, name: str, key: Any = None, host: str = "10.0.0.1",
                **kw: Any) -> tuple[RecordingClient, Link]:
        """
        Connect a client for C{name} (signing with C{key}, by default its
        registered one) without checking the outcome.
        """
        client = RecordingClient(name)
        config = Config(CLIENT_SERVER, Role.INITIATOR, key or user_key(name),
                        _user_identity(name), registry=GROUP_FROM_SERVER)
        proto = SecureChatProtocol(config, client, self.clock, handshake_timeout=1e9)
        server = self.factory.buildProtocol(None if host is None else _Addr(host))
        link = self.network.connect(proto, server, client_host=host, **kw)
        return client, link

    def login(self, name: str, **kw: Any) -> RecordingClient:
        """
        Connect and log in C{name}; the Welcome is consumed.
        """
        client, link = self.connect(name, **kw)
        assert client.logged_in, f"{name} did not log in: {client.error}"
        self.links[name] = link
        client.take()
        return client

    def pump(self) -> None:
        self.network.pump()


class _Addr:
    def __init__(self, host: str) -> None:
        self.host = host


def _user_identity(name: str) -> Identity:
    from securechat.wire.messages import UserIdentity
    return UserIdentity(name)
