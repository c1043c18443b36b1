"""
Tests for the terminal front end (L{securechat.client.terminal}) driving
real chat clients over the in-memory relay.
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.client.core import ChatClient
from securechat.client.pins import PinStore
from securechat.client.terminal import ChatTerminal
from securechat.crypto.handshake import CLIENT_SERVER, Config, Role
from securechat.protocol import SecureChatProtocol
from securechat.wire.messages import UserIdentity
from securechat.wire.relay import FROM_SERVER
from tests.relay_harness import Harness, user_key
from tests.test_client_core import verify_test_server


class Screen:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text.rstrip("\n"))

    def take(self) -> list[str]:
        out, self.lines = self.lines, []
        return out


class TerminalHarness(Harness):
    def terminal(self, name: str) -> tuple[ChatTerminal, Screen]:
        screen = Screen()
        exits: list[bool] = []
        term = ChatTerminal(write=screen.write, clock=lambda: 0.0, on_exit=lambda: exits.append(True))
        term.exits = exits  # type: ignore[attr-defined]
        client = ChatClient(name, user_key(name), term, verify_test_server, PinStore(None),
                            clock=lambda: 0.0)
        term.client = client
        config = Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name),
                        registry=FROM_SERVER)
        proto = SecureChatProtocol(config, client, self.clock, handshake_timeout=1e9)
        self.links[name] = self.network.connect(proto, self.factory.buildProtocol(None))
        return term, screen

    def type(self, term: ChatTerminal, line: str) -> None:
        term.lineReceived(line.encode("utf-8"))
        self.pump()


class TerminalTests(unittest.TestCase):
    """
    Commands typed, and what is shown.
    """

    def setUp(self) -> None:
        self.h = TerminalHarness()
        self.alice, self.sa = self.h.terminal("alice")
        self.bob, self.sb = self.h.terminal("bob")

    def test_loginShown(self) -> None:
        """
        Logging in prints one line saying who we are and how to get help.
        """
        self.assertEqual(self.sa.take(), ["* logged in as alice; !help lists the commands"])

    def test_help(self) -> None:
        """
        !help lists every command.
        """
        self.sa.take()
        self.h.type(self.alice, "!help")
        text = "\n".join(self.sa.take())
        for command in ("!online", "!chat", "!accept", "!refuse", "!stop", "!exit",
                        "!fingerprint", "!trust", "USER: TEXT"):
            self.assertIn(command, text)

    def test_online(self) -> None:
        """
        !online lists who is online.
        """
        self.sa.take()
        self.h.type(self.alice, "!online")
        self.assertEqual(self.sa.take(), ["* online: alice, bob"])

    def test_chatSession(self) -> None:
        """
        A whole chat typed at two terminals: request, accept, talk both ways
        (plain lines and USER: TEXT), stop.
        """
        self.sa.take()
        self.sb.take()
        self.h.type(self.alice, "!chat bob")
        self.assertIn("* alice wants to chat: !accept alice or !refuse alice", self.sb.take())
        self.h.type(self.bob, "!accept")
        self.assertIn("* chat with alice is end-to-end encrypted; type to talk, !stop to end",
                      self.sb.take())
        self.assertIn("* chat with bob is end-to-end encrypted; type to talk, !stop to end",
                      self.sa.take())
        self.h.type(self.alice, "hello bob")
        self.h.type(self.bob, "alice: hello alice")
        self.assertIn("alice: hello bob", self.sb.take()[-1])
        self.assertIn("bob: hello alice", self.sa.take()[-1])
        self.h.type(self.alice, "!stop")
        self.assertEqual(self.sb.take(), ["* chat with alice ended by alice (1 messages received)"])
        self.assertEqual(self.sa.take(),
                         ["* chat with bob ended by you (1 sent, 1 received; no end from bob)"])

    def test_refuse(self) -> None:
        """
        !refuse tells the requester, in one line.
        """
        self.h.type(self.alice, "!chat bob")
        self.h.type(self.bob, "!refuse alice")
        self.assertIn("* bob refused your chat request", self.sa.take())

    def test_errorsAreOneLine(self) -> None:
        """
        Mistakes get one clear line each, never a traceback.
        """
        self.sa.take()
        for line, expected in [
            ("!bogus", "! unknown command !bogus; !help lists the commands"),
            ("hello?", "! no current chat: use !chat USER, or USER: TEXT"),
            ("!chat", "! usage: !chat USER"),
            ("!chat Not-A-Name", "! 'Not-A-Name' is not a user name"),
            ("!chat alice", "! you cannot chat with yourself"),
            ("!chat nobody", "* there is no user nobody"),
            ("!chat carol", "* carol is not online"),
            ("!accept", "! nothing to accept"),
            ("!stop", "! no current chat"),
            ("!trust bob", "! no changed key to trust for bob"),
        ]:
            self.h.type(self.alice, line)
            self.assertEqual(self.sa.take()[-1:], [expected], line)

    def test_linesBeforeLoginWait(self) -> None:
        """
        Lines typed (or piped) before the login completes are run after it.
        """
        screen = Screen()
        term = ChatTerminal(write=screen.write, clock=lambda: 0.0)
        term.lineReceived(b"!online")
        self.assertEqual(screen.lines, [])
        self.assertEqual(term._pending, ["!online"])

    def test_fingerprint(self) -> None:
        """
        !fingerprint shows ours, and a peer's once pinned.
        """
        from securechat.crypto import keys
        self.sa.take()
        self.h.type(self.alice, "!fingerprint")
        self.assertEqual(self.sa.take(), [f"* your key: {keys.fingerprint(user_key('alice').public_key())}"])
        self.h.type(self.alice, "!fingerprint bob")
        self.assertEqual(self.sa.take(), ["* no key pinned for bob yet (chat with them first)"])

    def test_exit(self) -> None:
        """
        !exit logs out cleanly and asks the program to stop.
        """
        self.h.type(self.alice, "!exit")
        self.assertEqual(self.alice.exits, [True])  # type: ignore[attr-defined]
        self.assertNotIn("alice", self.h.relay.sessions)

    def test_endOfInputExits(self) -> None:
        """
        Standard input closing (end of a script) exits like !exit.
        """
        self.alice.connectionLost(None)
        self.h.pump()
        self.assertEqual(self.alice.exits, [True])  # type: ignore[attr-defined]
