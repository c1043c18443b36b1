"""
A store that cannot be reached (PostgreSQL stopped: L{StoreUnavailable})
seen from the relay (docs/protocol.rst 14.7, TRY_AGAIN) and the client:
letters are refused with TRY_AGAIN and never acknowledged, other mailbox
and group commands likewise, logins go on, the connection stays open; when
the store is back the same letter is stored.  In memory, with a store that
is switched off and on (the real PostgreSQL stopped and started is
L{tests.test_store_pgrestart}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial import unittest

from securechat.server.limits import Limits
from securechat.server.mailbox import mailbox_limits
from securechat.server.store.groupmemory import MemoryGroupStore
from securechat.server.store.interface import StoreUnavailable
from securechat.server.store.memory import MemoryMailboxStore
from securechat.wire.groups import ChangeGroup, GroupChanged, GroupPost, GroupRefused, ListGroups
from securechat.wire.mailbox import (
    FetchBundle, LetterRefused, LetterStored, ListLetters, NewLetters, PostLetter)
from securechat.wire.relay import CommandFailed, Reason
from tests.relay_harness import Harness, RecordingClient
from tests.test_groupstate import GID
from tests.test_group_relay import GroupCase
from tests.test_mailbox_relay import lid

GONE = "postgresql:///securechat unavailable: server closed the connection unexpectedly"


class Switchable:
    """A store (mailbox or groups) whose every call fails while C{down}."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if not callable(value) or name == "close":
            return value

        def call(*args: Any) -> Any:
            if self.down:
                return fail(StoreUnavailable(GONE))
            return value(*args)
        return call


class UnavailableCase(unittest.TestCase):
    """A harness on switchable stores, the relay's log captured."""

    def setUp(self) -> None:
        clock = Clock()
        limits = Limits()
        self.mailbox = Switchable(MemoryMailboxStore(clock, mailbox_limits(limits)))
        self.groups = Switchable(MemoryGroupStore(clock, 30 * 86400))
        self.h = Harness(limits, clock, store=self.mailbox, group_store=self.groups)
        self.events: list[dict[str, Any]] = []
        self.h.relay.mailbox.log = Logger(observer=self.events.append)  # type: ignore[misc]
        # (POST_LETTER's refusals are logged by the mailbox's LetterPoster.)
        self.h.relay.mailbox.letters.log = Logger(  # type: ignore[misc]
            observer=self.events.append)
        self.h.relay.groups.log = Logger(observer=self.events.append)  # type: ignore[misc]

    def down(self, is_down: bool = True) -> None:
        self.mailbox.down = self.groups.down = is_down

    def ask(self, client: RecordingClient, *messages: Any) -> list[Any]:
        client.send(*messages)
        self.h.pump()
        return client.take()

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def unavailable_count(self) -> float:
        return self.h.relay.metrics.store_unavailable._value.get()  # type: ignore[no-any-return]


class MailboxUnavailableTests(UnavailableCase):
    """The mailbox's answers while the store cannot be reached."""

    def test_letterRefusedTryAgainThenStored(self) -> None:
        """
        POST_LETTER: LETTER_REFUSED(TRY_AGAIN), not acknowledged, the
        connection open, a metric and a log line; once the store is back,
        the same letter (same id) is stored.
        """
        alice = self.h.login("alice")
        self.down()
        self.assertEqual(self.ask(alice, PostLetter("bob", lid(1), b"sealed")),
                         [LetterRefused("bob", lid(1), Reason.TRY_AGAIN)])
        self.assertFalse(alice.ended)
        self.assertEqual(self.unavailable_count(), 1)
        self.assertIn("mailbox: letter from alice to bob refused: TRY_AGAIN", self.lines())
        self.down(False)
        [stored] = self.ask(alice, PostLetter("bob", lid(1), b"sealed"))
        self.assertIsInstance(stored, LetterStored)

    def test_resendOfStoredLetterAlsoTryAgain(self) -> None:
        """
        A resend of a letter the store holds, while it cannot be reached,
        is TRY_AGAIN too (the relay cannot look it up), never refused
        otherwise; once back it is answered as the first time.
        """
        alice = self.h.login("alice")
        [first] = self.ask(alice, PostLetter("bob", lid(1), b"sealed"))
        self.down()
        self.assertEqual(self.ask(alice, PostLetter("bob", lid(1), b"sealed")),
                         [LetterRefused("bob", lid(1), Reason.TRY_AGAIN)])
        self.down(False)
        self.assertEqual(self.ask(alice, PostLetter("bob", lid(1), b"sealed")), [first])

    def test_refusedLetterLookupTryAgain(self) -> None:
        """
        A letter the checks would refuse (an unknown recipient) is looked
        up first, in case it is a resend of one stored (14.7, step 2); when
        that lookup cannot reach the store, it is TRY_AGAIN, never left
        unanswered and never UNKNOWN_USER; once back, UNKNOWN_USER.
        """
        alice = self.h.login("alice")
        self.down()
        self.assertEqual(self.ask(alice, PostLetter("nobody", lid(1), b"sealed")),
                         [LetterRefused("nobody", lid(1), Reason.TRY_AGAIN)])
        self.assertFalse(alice.ended)
        self.assertEqual(self.unavailable_count(), 1)
        self.down(False)
        self.assertEqual(self.ask(alice, PostLetter("nobody", lid(1), b"sealed")),
                         [LetterRefused("nobody", lid(1), Reason.UNKNOWN_USER)])

    def test_runOfLettersTryAgainInOrder(self) -> None:
        """
        Several letters posted together (one store call for the run) and a
        command after them: each letter is refused with TRY_AGAIN and the
        command too, in the order asked, each counted; nothing stored.
        """
        alice = self.h.login("alice")
        self.down()
        self.assertEqual(
            self.ask(alice, PostLetter("bob", lid(1), b"one"), PostLetter("bob", lid(2), b"two"),
                     ListLetters(0, 0)),
            [LetterRefused("bob", lid(1), Reason.TRY_AGAIN),
             LetterRefused("bob", lid(2), Reason.TRY_AGAIN),
             CommandFailed(ListLetters.TYPE, "alice", Reason.TRY_AGAIN)])
        self.assertFalse(alice.ended)
        self.assertEqual(self.unavailable_count(), 3)
        self.down(False)
        self.assertEqual([type(m) for m in self.ask(alice, PostLetter("bob", lid(1), b"one"),
                                                    PostLetter("bob", lid(2), b"two"))],
                         [LetterStored, LetterStored])

    def test_otherCommandsTryAgainInOrder(self) -> None:
        """
        LIST_LETTERS and FETCH_BUNDLE: COMMAND_FAILED(type, subject,
        TRY_AGAIN), answered in the order asked, each counted and logged.
        """
        alice = self.h.login("alice")
        self.down()
        self.assertEqual(self.ask(alice, ListLetters(0, 0), FetchBundle("bob")),
                         [CommandFailed(ListLetters.TYPE, "alice", Reason.TRY_AGAIN),
                          CommandFailed(FetchBundle.TYPE, "bob", Reason.TRY_AGAIN)])
        self.assertEqual(self.unavailable_count(), 2)
        self.assertIn("mailbox: FetchBundle from alice refused: TRY_AGAIN (the store is "
                      "unavailable)", self.lines())

    def test_loginGoesOnWithoutNotices(self) -> None:
        """
        A login while the store cannot be read: WELCOME, no NEW_LETTERS, the
        session open, one line; the next login after it is back is told.
        """
        alice = self.h.login("alice")
        self.ask(alice, PostLetter("bob", lid(1), b"sealed"))
        self.down()
        bob = self.h.login("bob")
        self.h.pump()
        self.assertEqual(bob.take(), [])
        self.assertFalse(bob.ended)
        self.assertIn("mailbox: reading the mailbox at login for bob skipped: the store is "
                      "unavailable", self.lines())
        self.down(False)
        bob.protocol.transport.loseConnection()
        self.h.pump()
        again = self.h.connect("bob")[0]
        self.h.pump()
        self.assertIn(NewLetters(1), again.messages)


class GroupsUnavailableTests(UnavailableCase, GroupCase):
    """The group commands' answers while the store cannot be reached."""

    def setUp(self) -> None:
        GroupCase.setUp(self)
        UnavailableCase.setUp(self)

    def test_postAndListTryAgain(self) -> None:
        """
        GROUP_POST and LIST_GROUPS: GROUP_REFUSED(group, type, TRY_AGAIN);
        once the store is back the post is stored.
        """
        [alice] = self.login("alice")
        creation = self.chain.changes[0].encode()
        self.assertEqual(self.ask(alice, ChangeGroup(creation)), [GroupChanged(creation)])
        self.down()
        answers = self.ask(alice, GroupPost(GID, b"hello"), ListGroups())
        self.assertEqual([(a.group_id, a.command, a.reason) for a in answers],
                         [(GID, GroupPost.TYPE, Reason.TRY_AGAIN),
                          (answers[1].group_id, ListGroups.TYPE, Reason.TRY_AGAIN)])
        self.assertTrue(all(isinstance(a, GroupRefused) for a in answers))
        self.assertEqual(self.unavailable_count(), 2)
        self.down(False)
        [posted] = self.ask(alice, GroupPost(GID, b"hello"))
        self.assertNotIsInstance(posted, GroupRefused)


class ClientTests(unittest.TestCase):
    """The reference client's view of TRY_AGAIN: one line; the letter is kept to post again."""

    def test_oneLine(self) -> None:
        """The letter view says it in one line, and that it is posted again."""
        from securechat.client.letterview import LetterLines
        lines: list[str] = []

        class View(LetterLines):
            def letter_line(self, text: str, alert: bool = False) -> None:
                lines.append(text)
        View().letter_refused("bob", lid(1), Reason.TRY_AGAIN)
        self.assertEqual(len(lines), 1)
        self.assertIn("to bob NOT stored: the relay cannot store letters just now; it is posted "
                      "again when you next log in", lines[0])

    def test_reasonName(self) -> None:
        """A client shows the code by its name in words."""
        from securechat.client.reasons import reason_name
        self.assertEqual(reason_name(Reason.TRY_AGAIN), "try again")

    def test_letterKeptAndPostedAgain(self) -> None:
        """
        A letter refused with TRY_AGAIN stays unanswered (not refused) in
        the client's store, and is posted again, same id and bytes, after
        the next login; the view is told once.
        """
        from securechat.client.letterstore import PENDING, LetterStore
        from tests.test_client_letters import User, post
        store = LetterStore(None)
        alice = User("alice", store)
        posted = post(alice, User("bob"), "hello")
        alice.feed(LetterRefused("bob", posted.letter_id, Reason.TRY_AGAIN))
        self.assertEqual(store.sent(posted.letter_id).state, PENDING)  # type: ignore[union-attr]
        self.assertEqual(alice.view.of("letter_refused"),
                         [("bob", posted.letter_id, Reason.TRY_AGAIN)])
        [again] = User("alice", store).relay.take(PostLetter)
        self.assertEqual((again.letter_id, again.letter), (posted.letter_id, posted.letter))
