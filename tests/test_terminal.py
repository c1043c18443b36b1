"""
Tests for the terminal front end (L{securechat.client.terminal}) driving
real chat clients over the in-memory relay.
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.client.core import ChatClient
from securechat.client.pins import PinStore
from securechat.client.terminal import ChatTerminal
from securechat.crypto.config import CLIENT_SERVER, Config, Role
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
    def terminal(self, name: str, connect: bool = True) -> tuple[ChatTerminal, Screen]:
        screen = Screen()
        exits: list[bool] = []
        term = ChatTerminal(write=screen.write, clock=lambda: 0.0, on_exit=lambda: exits.append(True))
        term.exits = exits  # type: ignore[attr-defined]
        if connect:
            self.connect_terminal(name, term)
        return term, screen

    def connect_terminal(self, name: str, term: ChatTerminal) -> ChatClient:
        """
        Give C{term} a new client for C{name} and connect it (as the
        program does on every connection).
        """
        client = ChatClient(name, user_key(name), term, verify_test_server, PinStore(None),
                            clock=lambda: 0.0)
        term.client = client
        config = Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name),
                        registry=FROM_SERVER)
        proto = SecureChatProtocol(config, client, self.clock, handshake_timeout=1e9)
        self.links[name] = self.network.connect(proto, self.factory.buildProtocol(None))
        return client

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

    def test_addressedLineNeverGoesToTheCurrentChat(self) -> None:
        """
        A line addressed to someone we have no chat with ("carol: ...")
        while chatting with bob is refused with one line and never reaches
        bob (issue 13: "alice: meant for alice" used to go to bob); a line
        addressed to bob may itself start with "word: ".
        """
        self.h.type(self.alice, "!chat bob")
        self.h.type(self.bob, "!accept")
        self.sa.take()
        self.sb.take()
        self.h.type(self.alice, "carol: meant for carol")
        self.assertEqual(self.sb.take(), [])
        [line] = self.sa.take()
        self.assertTrue(line.startswith("! no chat with carol; not sent."), line)
        self.h.type(self.alice, "bob: note: meant for bob")
        self.assertIn("alice: note: meant for bob", self.sb.take()[-1])

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
            ("!chat carol", "* carol is not online; !letter carol TEXT sends them a letter to read later"),
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


class ChatRequestDisplayTests(unittest.TestCase):
    """
    What !chat, !cancel, !accept and !refuse show: only what is true, one
    line for the relay's answer and one for the request's outcome.
    """

    def setUp(self) -> None:
        self.h = TerminalHarness()
        self.alice, self.sa = self.h.terminal("alice")
        self.bob, self.sb = self.h.terminal("bob")
        self.sa.take()
        self.sb.take()

    def test_requestThenOneOutcome(self) -> None:
        """
        !chat shows nothing until the relay answers; then one line that the
        request is pending, and one line for its outcome.
        """
        self.alice.lineReceived(b"!chat bob")
        self.assertEqual(self.sa.take(), [])
        self.h.pump()
        self.assertEqual(self.sa.take(), [
            "* bob has been asked to chat; waiting for an answer (!cancel bob withdraws)"])
        self.assertEqual(self.sb.take(), ["* alice wants to chat: !accept alice or !refuse alice"])
        self.h.type(self.bob, "!refuse alice")
        self.assertEqual(self.sb.take(), ["* you refused alice's chat request"])
        self.assertEqual(self.sa.take(), ["* bob refused your chat request"])

    def test_failedRequestsOneLineEach(self) -> None:
        """
        Each request the relay cannot pass on gets exactly one line, saying
        why, and no "request sent" line contradicting it.
        """
        self.h.type(self.bob, "!chat alice")
        self.sa.take()
        self.sb.take()
        for line, expected in [
            ("!chat alice", "! you cannot chat with yourself"),
            ("!chat nobody", "* there is no user nobody"),
            ("!chat carol", "* carol is not online; !letter carol TEXT sends them a letter to read later"),
            ("!chat bob", "! bob has already asked you: !accept bob or !refuse bob"),
        ]:
            self.h.type(self.alice, line)
            self.assertEqual(self.sa.take(), [expected], line)
        self.h.type(self.bob, "!chat alice")
        self.assertEqual(self.sb.take(), [
            "! you already asked alice; waiting for an answer (!cancel alice withdraws)"])
        self.h.type(self.alice, "!accept")
        self.sa.take()
        self.h.type(self.alice, "!chat bob")
        self.assertEqual(self.sa.take(), ["! you are already chatting with bob"])

    def test_cancelPendingOneLine(self) -> None:
        """
        !cancel of a pending request shows one line, once the relay has
        withdrawn it; the target is told.
        """
        self.h.type(self.alice, "!chat bob")
        self.sa.take()
        self.sb.take()
        self.h.type(self.alice, "!cancel bob")
        self.assertEqual(self.sa.take(), ["* you withdrew your chat request to bob"])
        self.assertEqual(self.sb.take(), ["* alice withdrew the chat request"])

    def test_cancelDuringChatOneLine(self) -> None:
        """
        !cancel of a user we chat with is one line saying there is no
        request (and how to end the chat); nothing is sent, the chat goes on.
        """
        self.h.type(self.alice, "!chat bob")
        self.h.type(self.bob, "!accept")
        self.sa.take()
        self.h.type(self.alice, "!cancel bob")
        self.assertEqual(self.sa.take(), [
            "! you are chatting with bob, there is no request to withdraw (!stop bob ends the chat)"])
        self.assertIn("bob", self.alice.client.chats)  # type: ignore[union-attr]

    def test_cancelWithoutRequestOneLine(self) -> None:
        """
        !cancel without a request is one line, and nothing is sent.
        """
        self.h.type(self.alice, "!cancel bob")
        self.assertEqual(self.sa.take(), ["! you have no chat request to bob"])
        self.assertEqual(self.sb.take(), [])

    def test_refuseWithoutRequestOneLine(self) -> None:
        """
        !refuse or !accept of a request that does not exist is one line,
        not "you refused" followed by an error.
        """
        self.h.type(self.alice, "!refuse bob")
        self.assertEqual(self.sa.take(), ["! there is no chat request from bob"])
        self.h.type(self.alice, "!accept bob")
        self.assertEqual(self.sa.take(), ["! there is no chat request from bob"])


class DepartureTests(unittest.TestCase):
    """
    A partner who leaves is reported as leaving, not as a truncation.
    """

    def setUp(self) -> None:
        self.h = TerminalHarness()
        self.alice, self.sa = self.h.terminal("alice")
        self.bob, self.sb = self.h.terminal("bob")
        self.h.type(self.alice, "!chat bob")
        self.h.type(self.bob, "!accept")
        self.h.type(self.bob, "one")
        self.sa.take()

    def test_partnerWentOffline(self) -> None:
        """
        The partner's connection ends without its END (Ctrl-C, a crash):
        "went offline", with the count received and an honest note that
        nothing after it can be confirmed.
        """
        self.h.links["bob"].close(ConnectionError("gone"))
        self.h.pump()
        self.assertEqual(self.sa.take(), [
            "* chat with bob ended: bob went offline (1 messages received; bob's client sent no "
            "authenticated end, so any later messages are unconfirmed)"])

    def test_partnerLoggedInElsewhere(self) -> None:
        """
        The partner logs in again elsewhere: "logged in elsewhere", not
        TRUNCATED.
        """
        self.h.terminal("bob")
        self.h.pump()
        self.assertEqual(self.sa.take(), [
            "* chat with bob ended: bob logged in elsewhere (1 messages received; bob's client "
            "sent no authenticated end, so any later messages are unconfirmed)"])

    def test_partnerExitCleanly(self) -> None:
        """
        The partner's !exit sends its END first: a clean end with the count.
        """
        self.h.type(self.bob, "!exit")
        self.assertEqual(self.sa.take(), ["* chat with bob ended by bob (1 messages received)"])


class DisconnectedInputTests(unittest.TestCase):
    """
    Lines typed while the relay connection is down, and scripts piped in
    before the login.
    """

    def test_linesWhileDisconnectedRefusedAtOnce(self) -> None:
        """
        After a login, a line typed while disconnected is refused at once,
        quoting it, and is not replayed after the next login.
        """
        h = TerminalHarness()
        alice, screen = h.terminal("alice")
        h.links["alice"].close(ConnectionError("network down"))
        h.pump()
        screen.take()
        h.type(alice, "hello bob")
        h.type(alice, "!online")
        self.assertEqual(screen.take(), [
            "! not connected to the relay; not sent: hello bob",
            "! not connected to the relay; !online not run",
        ])
        h.connect_terminal("alice", alice)
        h.pump()
        self.assertEqual(screen.take(), ["* logged in as alice; !help lists the commands"])

    def test_pipedScriptEndingBeforeLoginRuns(self) -> None:
        """
        A script whose input ends before the login runs once logged in, and
        the client then exits.
        """
        h = TerminalHarness()
        alice, screen = h.terminal("alice", connect=False)
        alice.lineReceived(b"!online")
        alice.connectionLost(None)
        self.assertEqual(alice.exits, [])  # type: ignore[attr-defined]
        h.connect_terminal("alice", alice)
        h.pump()
        self.assertEqual(screen.take(), ["* logged in as alice; !help lists the commands",
                                         "* online: alice"])
        self.assertEqual(alice.exits, [True])  # type: ignore[attr-defined]

    def test_endOfInputWaitsForAnswers(self) -> None:
        """
        When a script's input ends after the login, the client leaves once
        the relay has answered its commands, so their answers are shown.
        """
        h = TerminalHarness()
        alice, screen = h.terminal("alice")
        screen.take()
        alice.lineReceived(b"!online")
        alice.lineReceived(b"!chat nobody")
        alice.connectionLost(None)
        self.assertEqual(alice.exits, [])  # type: ignore[attr-defined]
        h.pump()
        self.assertEqual(screen.take(), ["* online: alice", "* there is no user nobody"])
        self.assertEqual(alice.exits, [True])  # type: ignore[attr-defined]

    def test_neverLoggedInSaysWhatWasNotRun(self) -> None:
        """
        When the client gives up before its first login, it says how many
        lines read were not run.
        """
        alice, screen = TerminalHarness().terminal("alice", connect=False)
        alice.lineReceived(b"!online")
        alice.lineReceived(b"!chat bob")
        alice.login_abandoned()
        self.assertEqual(screen.take(), ["! never logged in; 2 lines not run"])


class HostileChatTests(unittest.TestCase):
    """
    Hostile text through a real end-to-end chat.
    """

    def test_hostileLinesArriveNeutralised(self) -> None:
        """
        Every hostile string a peer sends arrives as exactly one line on
        the receiver's screen, with no control, format or separator
        character in it.
        """
        from securechat.client.display import is_safe, untrusted
        from tests.test_display import HOSTILE

        h = TerminalHarness()
        alice, sa = h.terminal("alice")
        bob, sb = h.terminal("bob")
        h.type(alice, "!chat bob")
        h.type(bob, "!accept")
        sb.take()
        for label, hostile in HOSTILE:
            if "\ud800" in hostile:
                continue  # not UTF-8: it cannot travel in a TEXT
            alice.client.say("bob", hostile)  # type: ignore[union-attr]
            h.pump()
            self.assertEqual(sb.take(), [f"[00:00] alice: {untrusted(hostile)}"], label)
        self.assertTrue(is_safe(" ".join(sb.lines)))
