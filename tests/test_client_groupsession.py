"""
Tests for the client's groups (L{securechat.client.groupsession},
L{securechat.client.groupcommands}): real L{ChatClient}s, each with a
letters file and a group file in memory, against the real relay on an
in-memory network (L{tests.relay_harness}); no real time.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from securechat.client.core import ChatClient
from securechat.client.groupmembers import Action
from securechat.client.groups import GroupText
from securechat.client.groupstore import GroupKeyStore
from securechat.client.letterstore import LetterStore
from securechat.client.pins import PinStore
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.protocol import SecureChatProtocol
from securechat.wire.groups import GROUP_FROM_SERVER
from securechat.wire.messages import UserIdentity
from tests.relay_harness import Harness, user_key
from tests.test_client_core import RecordingView, verify_test_server


class _Addr:
    host = "10.0.0.1"


class Member:
    """One user's client, its files kept across logins."""

    def __init__(self, h: Harness, name: str) -> None:
        self.h, self.name = h, name
        self.pins, self.letters, self.groups = PinStore(None), LetterStore(None), GroupKeyStore(None)
        self.view = RecordingView()
        self.client: ChatClient | None = None
        self.proto: SecureChatProtocol | None = None

    def login(self) -> ChatClient:
        self.client = ChatClient(self.name, user_key(self.name), self.view, verify_test_server, self.pins,
                                 clock=self.h.clock.seconds, letters=self.letters, groups=self.groups)
        self.proto = SecureChatProtocol(
            Config(CLIENT_SERVER, Role.INITIATOR, user_key(self.name), UserIdentity(self.name),
                   registry=GROUP_FROM_SERVER), self.client, self.h.clock, handshake_timeout=1e9)
        self.h.network.connect(self.proto, self.h.factory.buildProtocol(_Addr()))
        self.h.pump()
        assert self.client.logged_in
        return self.client

    def logout(self) -> None:
        assert self.proto is not None
        self.proto.close()
        self.h.pump()

    @property
    def session(self) -> Any:
        assert self.client is not None and self.client.groups is not None
        return self.client.groups

    def texts(self) -> list[tuple[str, str]]:
        """The group lines shown: (sender, text)."""
        return [(e.sender, e.text) for _, e in self.view.of("group_event") if isinstance(e, GroupText)]

    def changes(self) -> list[tuple[Any, ...]]:
        return [args[2:4] for args in self.view.of("group_changed")]


class GroupSessionTests(unittest.TestCase):
    """
    Three users in a group through the real relay: the changes verified
    and shown by the clients, keys carried in letters, messages read.
    """

    def setUp(self) -> None:
        self.h = Harness()
        self.h.clock.advance(1_700_000_000)
        self.alice, self.bob, self.carol = (Member(self.h, n) for n in ("alice", "bob", "carol"))
        for m in (self.alice, self.bob, self.carol):
            m.login()
        self.alice.session.create("team")
        self.h.pump()
        self.alice.session.change("team", Action.ADD, target="bob")
        self.h.pump()
        self.alice.session.change("team", Action.ADD, target="carol")
        self.h.pump()

    def test_changesVerifiedAndShown(self) -> None:
        """
        Every member's client replays the signed log itself: bob, added
        while online, fetches the log from the creation, verifies it and
        shows his own addition and carol's as the client's events.
        """
        self.assertEqual(self.alice.changes(), [(Action.CREATE, "alice"), (Action.ADD, "alice"),
                                                (Action.ADD, "alice")])
        self.assertEqual([a[3:5] for a in self.bob.view.of("group_changed")],
                         [("alice", "bob"), ("alice", "carol")])
        for m in (self.alice, self.bob, self.carol):
            [state] = m.session.states.values()
            self.assertEqual((state.name, state.epoch, sorted(state.members)), ("team", 3, ["alice", "bob", "carol"]))

    def test_messageReadByEveryMember(self) -> None:
        """
        alice's first message makes her chain, sends it to bob and carol
        in letters of content type 2 (fetched and taken automatically, not
        shown as letters), and both read the message.
        """
        self.alice.session.say("team", "hello team")
        self.h.pump()
        self.assertEqual(self.alice.texts(), [("alice", "hello team")])
        for m in (self.bob, self.carol):
            self.assertEqual(m.texts(), [("alice", "hello team")])
            self.assertEqual(m.view.of("letter_opened"), [])
            self.assertEqual(m.view.of("letter_arrived"), [])
        self.assertEqual(self.alice.view.of("letter_sent"), [])

    def test_offlineMemberReadsWhenBack(self) -> None:
        """
        carol, offline while alice writes, gets the message and the key
        letter at her next login and reads it; bob's reply too.
        """
        self.carol.logout()
        self.alice.session.say("team", "while you were away")
        self.h.pump()
        self.bob.session.say("team", "me too")
        self.h.pump()
        self.carol.login()
        self.h.pump()
        self.assertEqual(sorted(self.carol.texts()), [("alice", "while you were away"), ("bob", "me too")])

    def test_removedMemberGetsNothingMore(self) -> None:
        """
        After carol is removed she is shown the removal, gets nothing
        more, and alice's new chain goes only to bob.
        """
        self.alice.session.say("team", "before")
        self.h.pump()
        self.alice.session.change("team", Action.REMOVE, target="carol")
        self.h.pump()
        self.alice.session.say("team", "after")
        self.h.pump()
        self.assertEqual(self.bob.texts(), [("alice", "before"), ("alice", "after")])
        self.assertEqual(self.carol.texts(), [("alice", "before")])
        self.assertIn((Action.REMOVE, "alice"), self.carol.changes())
        self.assertEqual(self.carol.session.states, {})

    def test_keyLetterFetchedAtLogin(self) -> None:
        """
        A key letter that came while bob was away is fetched by his client
        at login (nobody types /read), so the message that came with it is
        shown, not left waiting for the key.
        """
        self.bob.logout()
        self.alice.session.say("team", "held")
        self.h.pump()
        self.bob.login()
        self.h.pump()
        self.assertEqual(self.bob.texts(), [("alice", "held")])

    def test_keyLetterFetchedByAnotherClientStillTaken(self) -> None:
        """
        A key letter another client of bob's fetched first (the browser
        page, say, with files of its own: it cannot open a letter sealed to
        this client's prekeys, unknown-prekey, but its FETCH_LETTER leaves
        the letter fetched on the relay) is still found by bob's terminal
        client at login, which looks among all its letters, not only new
        ones (16.2): it takes the key and reads alice's next message.
        """
        self.bob.logout()
        self.alice.session.say("team", "held")
        self.h.pump()
        other = Member(self.h, "bob")
        other.login()
        self.h.pump()
        [(_sender, _id, _at, code, _detail)] = other.view.of("letter_failed")
        self.assertEqual(code, "decrypt-failed")
        other.logout()
        self.bob.login()
        self.h.pump()
        self.alice.session.say("team", "next")
        self.h.pump()
        self.assertEqual(self.bob.texts(), [("alice", "next")])

    def test_refusedChangeShownLocally(self) -> None:
        """
        bob, a plain member, cannot add: refused by the client before it
        is sent, in one line naming the rule (not-allowed).
        """
        self.bob.session.change("team", Action.ADD, target="dave")
        [(line,)] = self.bob.view.of("notice")
        self.assertIn("not-allowed", str(self.bob.view.of("notice")) + line)
        self.assertIn("only the owner and admins add members", line)

    def test_membersShowPins(self) -> None:
        """
        /members lists the verified members with their roles and the
        fingerprint pinned for each (ourselves marked).
        """
        self.alice.session.members("team")
        [(group, rows)] = self.alice.view.of("group_members")
        self.assertEqual(group, "team")
        self.assertEqual([r[:2] for r in rows], [("alice", "owner"), ("bob", "member"), ("carol", "member")])
        self.assertTrue(rows[0][2].startswith("you, SHA256:"))
        self.assertEqual(rows[1][2], "not pinned yet")  # alice has not fetched bob's key yet
        self.alice.session.say("team", "hi")  # sealing the key letter pins bob and carol
        self.h.pump()
        self.alice.session.members("team")
        rows = self.alice.view.of("group_members")[-1][1]
        self.assertTrue(rows[1][2].startswith("pinned SHA256:"))


class GroupCommandTests(unittest.TestCase):
    """
    The line terminal's group commands, through the real client and relay.
    """

    def test_lineCommands(self) -> None:
        """
        !group create, !group add, !g and !groups do what /help says;
        a bad command is one usage line.
        """
        from securechat.client.terminal import ChatTerminal
        h = Harness()
        h.clock.advance(1_700_000_000)
        alice, bob = Member(h, "alice"), Member(h, "bob")
        bob.login()
        out: list[str] = []
        terminal = ChatTerminal(write=out.append)
        alice.view = terminal  # type: ignore[assignment]
        terminal.client = alice.login()
        for line in ("!group create team", "!group add team bob", "!g team hello bob", "!groups",
                     "!group frobnicate"):
            terminal.handle(line)
            h.pump()
        self.assertEqual(bob.texts(), [("alice", "hello bob")])
        text = "".join(out)
        self.assertIn("* #team: alice added bob (change 2, signed by alice: verified)", text)
        self.assertIn("#team <alice> hello bob", text)
        self.assertIn("#team [", text)
        self.assertIn("! usage: !group create NAME", text)


class GroupTrustTests(unittest.TestCase):
    """
    The relay is not trusted with membership: what it hands out is
    checked against the actors' keys, pinned as for chats and letters.
    """

    def setUp(self) -> None:
        self.h = Harness()
        self.h.clock.advance(1_700_000_000)
        self.alice, self.bob, self.carol = (Member(self.h, n) for n in ("alice", "bob", "carol"))

    def group(self, *names: str) -> None:
        for m in (self.alice, self.bob, self.carol):
            if m.name in ("alice",) + names:
                m.login()
        self.alice.session.create("team")
        self.h.pump()
        for name in names:
            self.alice.session.change("team", Action.ADD, target=name)
            self.h.pump()

    def test_forgedChangeRefused(self) -> None:
        """
        A GROUP_CHANGED that claims alice as its actor but is signed with
        another key is refused by bob's client (bad-change), shown as
        such, and not applied: bob's view of the group stays at epoch 2.
        """
        from securechat.crypto.groupstate import GroupChange, sign_change
        from securechat.wire.groups import GroupChanged
        self.group("bob")
        [(gid, state)] = self.bob.session.states.items()
        forged = sign_change(GroupChange(gid, 3, state.head, "alice", Action.ADD, target="dave"),
                             user_key("mallory"))
        assert self.bob.client is not None
        self.bob.client.message_received(GroupChanged(forged.encode()))
        self.h.pump()
        [(group, text, alert, _)] = self.bob.view.of("group_notice")
        self.assertEqual(group, "team")
        self.assertIn("change 3 by alice REFUSED (bad-change)", text)
        self.assertEqual(self.bob.session.states[gid].epoch, 2)
        self.assertNotIn("dave", self.bob.session.states[gid].members)

    def test_changedKeyStopsTheLog(self) -> None:
        """
        bob has alice pinned to another key: the log alice signed is not
        taken (key-changed, the /trust hint), and bob is not in the group
        on the relay's word.
        """
        self.bob.pins.pin("alice", user_key("mallory").public_key())
        self.group("bob")
        self.assertEqual(self.bob.session.states, {})
        [(_, text, _, _)] = self.bob.view.of("group_notice")
        self.assertIn("cannot be verified (key-changed)", text)
        self.assertIn("/trust alice", text)
        self.assertEqual(len(self.bob.view.of("key_changed")), 1)

    def test_addedWhileOffline(self) -> None:
        """
        carol, added while offline, learns the group from the GROUP_LIST
        at login, fetches and verifies its log, and then reads the
        message that was waiting for her (held until the log came).
        """
        self.carol.login()  # once before, so that her prekeys are on the relay
        self.carol.logout()
        self.group("bob")
        self.alice.session.change("team", Action.ADD, target="carol")
        self.h.pump()
        self.alice.session.say("team", "welcome carol")
        self.h.pump()
        self.carol.login()
        self.h.pump()
        self.assertEqual(self.carol.texts(), [("alice", "welcome carol")])
        [state] = self.carol.session.states.values()
        self.assertEqual(state.epoch, 3)

    def test_removedWhileOffline(self) -> None:
        """
        carol, removed while offline, is told at login that the relay no
        longer lists her in the group, and her client forgets it.
        """
        self.group("bob", "carol")
        self.carol.logout()
        self.alice.session.change("team", Action.REMOVE, target="carol")
        self.h.pump()
        self.carol.login()
        self.h.pump()
        self.assertEqual(self.carol.session.states, {})
        [(group, text, alert, _)] = self.carol.view.of("group_notice")
        self.assertEqual((group, alert), ("team", True))
        self.assertIn("no longer lists you", text)

    def test_acknowledgedNotServedAgain(self) -> None:
        """
        A message bob has shown is acknowledged: after logging in again he
        is not served it again (no duplicate, no replay refusal).
        """
        self.group("bob")
        self.alice.session.say("team", "once")
        self.h.pump()
        shown = len(self.bob.view.of("group_event"))
        self.bob.logout()
        self.bob.login()
        self.h.pump()
        self.assertEqual(self.bob.texts(), [("alice", "once")])
        self.assertEqual(len(self.bob.view.of("group_event")), shown)


class GroupScreenTests(unittest.TestCase):
    """The full-screen client's group commands and lines."""

    def test_fullScreenCommands(self) -> None:
        """
        /group create, /group add and /g typed in the full screen work as
        in the line mode; the group's lines land in its own window, where a
        line typed goes to the group, and a member's text that tries to
        look like a change stays one line after the sender's name.
        """
        from securechat.client.tui.view import FullScreen
        h = Harness()
        h.clock.advance(1_700_000_000)
        alice, bob = Member(h, "alice"), Member(h, "bob")
        bob.login()
        screen = FullScreen("alice", "tcp:relay.test:7070", clock=lambda: 0.0, on_exit=lambda: None,
                            on_abort=lambda: None)
        alice.view = screen  # type: ignore[assignment]
        screen.client = alice.login()

        def type_line(text: str) -> None:
            for char in text:
                screen.screen.keypress((100, 30), char)
            screen.screen.keypress((100, 30), "enter")
            h.pump()
        for line in ("/group create team", "/group add team bob"):
            type_line(line)
        bob.session.say("team", "x\n* #team: alice added mallory (change 3, signed by alice: verified)")
        h.pump()
        type_line("/g team hi bob")
        self.assertEqual(bob.texts()[-1], ("alice", "hi bob"))
        window = screen.windows.find_group("team")
        assert window is not None
        self.assertEqual(window.title, "#team")
        screen.windows.switch(window)
        type_line("typed in the window")
        self.assertEqual(bob.texts()[-1], ("alice", "typed in the window"))
        status = [line.prefix + line.body for line in window.lines]
        self.assertIn("00:00 * #team: alice added bob (change 2, signed by alice: verified)", status)
        [forged] = [line for line in status if "mallory" in line]
        self.assertRegex(forged, r"^00:00  \[\d\d:\d\d\] #team <bob> x\\x0a\* #team: alice added mallory")


class OwedKeyTests(unittest.TestCase):
    """A key that could not be sealed is handed out again."""

    def test_owedKeyRetriedBeforeNextMessage(self) -> None:
        """
        carol had never logged in (no prekeys) when alice first wrote, so
        alice's key for her could not be sealed; once carol has logged in,
        alice's next message hands the owed key out first, and carol reads
        that message (the first one stays unreadable to her: it was never
        sealed to her).
        """
        h = Harness()
        h.clock.advance(1_700_000_000)
        alice, carol = Member(h, "alice"), Member(h, "carol")
        alice.login()
        alice.session.create("team")
        h.pump()
        alice.session.change("team", Action.ADD, target="carol")
        h.pump()
        alice.session.say("team", "first")
        h.pump()
        [(note,)] = alice.view.of("notice")
        self.assertIn("your group key for carol was not sent", note)
        carol.login()
        h.pump()
        alice.session.say("team", "second")
        h.pump()
        self.assertIn(("alice", "second"), carol.texts())


class ReAddedTests(unittest.TestCase):
    """A member removed and added again while away."""

    def test_removedAndAddedAgainWhileOffline(self) -> None:
        """
        bob, removed and added again while offline, replays the whole log
        at login (his removal does not cut it short), is in the group at
        its head, reads what is sent after, and the kept log replays when
        his client starts again.
        """
        h = Harness()
        h.clock.advance(1_700_000_000)
        alice, bob = Member(h, "alice"), Member(h, "bob")
        bob.login()
        bob.logout()
        alice.login()
        alice.session.create("team")
        h.pump()
        for action in (Action.ADD, Action.REMOVE, Action.ADD):
            alice.session.change("team", action, target="bob")
            h.pump()
        bob.login()
        h.pump()
        [state] = bob.session.states.values()
        self.assertEqual((state.epoch, sorted(state.members)), (4, ["alice", "bob"]))
        alice.session.say("team", "welcome back")
        h.pump()
        self.assertEqual(bob.texts(), [("alice", "welcome back")])
        bob.logout()
        bob.login()
        self.assertEqual([s.epoch for s in bob.session.states.values()], [4])


class RelayRefusalTests(unittest.TestCase):
    """What the relay refuses is shown, naming the change and the reason."""

    def test_raceLostIsStale(self) -> None:
        """
        alice and bob (an admin) add a member at the same epoch: the relay
        takes alice's first and refuses bob's as a stale change, which bob
        is shown in one line; both clients end at the same head.
        """
        h = Harness()
        h.clock.advance(1_700_000_000)
        alice, bob = Member(h, "alice"), Member(h, "bob")
        alice.login()
        bob.login()
        alice.session.create("team")
        h.pump()
        alice.session.change("team", Action.ADD, target="bob")
        h.pump()
        alice.session.change("team", Action.SET_ROLE, target="bob", role=2)
        h.pump()
        alice.session.change("team", Action.ADD, target="carol")
        bob.session.change("team", Action.ADD, target="dave")
        h.pump()
        [(group, text, alert, _)] = bob.view.of("group_notice")
        self.assertEqual((group, text, alert), ("team", "the relay refused your add: stale change", True))
        heads = [(s.epoch, sorted(s.members)) for m in (alice, bob) for s in m.session.states.values()]
        self.assertEqual(heads, [(4, ["alice", "bob", "carol"])] * 2)
