"""
The IRC gateway in memory: the real relay and real clients
(L{tests.test_letters_endtoend.LetterHarness}), alice's gateway
(L{securechat.client.irc.gateway.IrcGateway} as her client's view), and
Twisted's own L{IRCClient} as the IRC client, all on one in-memory network
and clock.
"""

from __future__ import annotations

from typing import Any

from twisted.words.protocols import irc

from securechat.client.core import ChatClient
from securechat.client.irc.connection import IrcConnection
from securechat.client.irc.gateway import IrcGateway
from securechat.client.groupstore import GroupKeyStore
from securechat.client.letterstore import LetterStore
from securechat.client.pins import PinStore
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.protocol import SecureChatProtocol
from securechat.wire.groups import GROUP_FROM_SERVER
from securechat.wire.mailbox import MAILBOX_FROM_SERVER
from securechat.wire.messages import UserIdentity
from tests.memnet import Link
from tests.relay_harness import user_key
from tests.test_client_core import RecordingView, verify_test_server
from tests.test_letters_endtoend import LetterHarness

PASSWORD = "sesame"


class IrcUser(irc.IRCClient):
    """
    An IRC client (Twisted's) that records every line and event it gets.
    """

    heartbeatInterval = None  # no LoopingCall on the global reactor
    lineRate = None

    def __init__(self, nickname: str = "alice", password: str | None = PASSWORD,
                 login: bool = True) -> None:
        self.nickname = nickname
        self.password = password
        self.performLogin = 1 if login else 0
        self.raw: list[str] = []
        self.events: list[tuple[str, ...]] = []
        self.signed_on = False
        self.lost = False

    def lineReceived(self, line: bytes) -> None:
        self.raw.append(line.decode("utf-8"))
        super().lineReceived(line)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True
        super().connectionLost(reason)

    def irc_ERR_PASSWDMISMATCH(self, prefix: str, params: list[str]) -> None:
        self.events.append(("refused", params[-1]))

    def signedOn(self) -> None:
        self.signed_on = True

    def privmsg(self, user: str, channel: str, message: str) -> None:
        self.events.append(("privmsg", user, message))

    def noticed(self, user: str, channel: str, message: str) -> None:
        self.events.append(("notice", user, message))

    def action(self, user: str, channel: str, data: str) -> None:
        self.events.append(("action", user, data))

    def nickChanged(self, nick: str) -> None:
        super().nickChanged(nick)
        self.events.append(("nick", nick))

    def send_raw(self, line: str) -> None:
        self.sendLine(line)

    # What the tests look at.

    def of(self, kind: str, source: str | None = None) -> list[str]:
        """The texts of the events of C{kind} (from C{source}'s nick)."""
        return [e[-1] for e in self.events if e[0] == kind
                and (source is None or e[1].split("!")[0] == source)]

    def notices(self) -> list[str]:
        """The service nick's notices."""
        return self.of("notice", "securechat")

    def numerics(self, code: str) -> list[str]:
        return [line for line in self.raw if line.split(" ")[1:2] == [code]]


class GatewayHarness(LetterHarness):
    """
    The relay, clients that keep letters, and alice's gateway.
    """

    def __init__(self, accept_pinned: bool = False, groups: bool = False) -> None:
        super().__init__()
        self.gateway = IrcGateway("alice", accept_pinned)
        self.pins["alice"] = PinStore(None)
        #: With groups: every client keeps a group file (in memory).
        self.group_stores: dict[str, GroupKeyStore] | None = {} if groups else None

    def _groups(self, name: str) -> tuple[GroupKeyStore | None, Any]:
        if self.group_stores is None:
            return None, MAILBOX_FROM_SERVER
        return self.group_stores.setdefault(name, GroupKeyStore(None)), GROUP_FROM_SERVER

    def client(self, name: str, key: Any = None) -> tuple[ChatClient, RecordingView]:
        """A plain client core (with groups when the harness has them)."""
        view = RecordingView()
        store = self.stores.setdefault(name, LetterStore(None))
        pins = self.pins.setdefault(name, PinStore(None))
        key = key or user_key(name)
        groups, registry = self._groups(name)
        client = ChatClient(name, key, view, verify_test_server, pins,
                            clock=lambda: 1_700_000_000 + self.clock.seconds(), letters=store,
                            groups=groups)
        config = Config(CLIENT_SERVER, Role.INITIATOR, key, UserIdentity(name), registry=registry)
        proto = SecureChatProtocol(config, client, self.clock, handshake_timeout=1e9)
        self.links[name] = self.network.connect(proto, self.factory.buildProtocol(None))
        self.pump()
        assert client.logged_in, view.seen
        return client, view

    def gateway_login(self) -> ChatClient:
        """alice's gateway (re)connects to the relay and logs in."""
        store = self.stores.setdefault("alice", LetterStore(None))
        groups, registry = self._groups("alice")
        client = ChatClient("alice", user_key("alice"), self.gateway, verify_test_server,
                            self.pins["alice"], clock=lambda: 1_700_000_000 + self.clock.seconds(),
                            letters=store, groups=groups)
        self.gateway.client = client
        config = Config(CLIENT_SERVER, Role.INITIATOR, user_key("alice"), UserIdentity("alice"),
                        registry=registry)
        proto = SecureChatProtocol(config, client, self.clock, handshake_timeout=1e9)
        self.links["alice"] = self.network.connect(proto, self.factory.buildProtocol(None))
        self.pump()
        assert client.logged_in
        return client

    def irc(self, user: IrcUser | None = None, password: bytes = PASSWORD.encode()) -> IrcUser:
        """Connect an IRC client (by default alice's, with the password)."""
        user = user or IrcUser()
        connection = IrcConnection(self.gateway, password)
        link: Link = self.network.connect(user, connection)
        user.link = link  # type: ignore[attr-defined]
        self.pump()
        return user
