"""
The client's lists, page by page (L{securechat.client.listpages}): a
scripted relay shows each request the client makes and feeds the answers
(cut short, empty, or with a total that changed), then the real relay in
memory with more entries than one answer holds.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from securechat.client.listpages import MAX_RESTARTS, PAGE_SIZE, page_arguments
from securechat.server.limits import Limits
from securechat.wire.mailbox import (
    LetterEntry, LetterList, ListLetters, ListUsers, PostLetter, PostReceipt, SentStatus,
    StatusEntry, StatusList, UserEntry, UserList)
from securechat.wire.relay import CommandFailed, Reason
from tests.test_client_letters import NOW, User
from tests.test_letters_endtoend import LetterHarness
from tests.test_mailbox_relay import receipt


def lid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def letters(first: int, count: int) -> tuple[LetterEntry, ...]:
    """Entries first .. first+count-1 of a list, newest first."""
    return tuple(LetterEntry("alice", lid(n), NOW - n, 10, 0) for n in range(first, first + count))


def status(first: int, count: int) -> tuple[StatusEntry, ...]:
    return tuple(StatusEntry("bob", lid(n), NOW - n, NOW + 100, 0, 0, b"", b"")
                 for n in range(first, first + count))


class ScriptedPagingTests(unittest.TestCase):
    """What the client asks, answer by answer."""

    def setUp(self) -> None:
        self.bob = User("bob")
        self.bob.view.take()

    def asked(self, kind: type = ListLetters) -> list[int]:
        return [m.offset for m in self.bob.relay.take(kind)]

    def shown(self) -> tuple[Any, ...]:
        [(page, total, more)] = self.bob.view.of("letter_list")
        return tuple(e.letter_id for e in page), total, more

    def test_pageSpansSeveralAnswers(self) -> None:
        """
        Rule: one page may take several answers; the next offset is the
        last plus the entries that answer carried, and fetching stops when
        the offset reaches the total, with no request past it.
        """
        self.bob.box.list_letters(False)
        self.assertEqual(self.asked(), [0])
        self.bob.feed(LetterList(letters(0, 20), 45))
        self.assertEqual(self.asked(), [20])
        self.bob.feed(LetterList(letters(20, 20), 45))
        self.assertEqual(self.asked(), [40])
        self.bob.feed(LetterList(letters(40, 5), 45))
        self.assertEqual(self.asked(), [])
        self.assertEqual(self.shown(), (tuple(lid(n) for n in range(45)), 45, ""))

    def test_pageFullStopsFetching(self) -> None:
        """
        Rule: a page stops at PAGE_SIZE entries (an answer may hold more;
        the rest is not shown) and names the next page's command.
        """
        self.bob.box.list_letters(False)
        self.asked()
        self.bob.feed(LetterList(letters(0, 120), 300))
        self.assertEqual(self.asked(), [])
        ids, total, more = self.shown()
        self.assertEqual((len(ids), ids[-1], total, more), (PAGE_SIZE, lid(PAGE_SIZE - 1), 300,
                                                            "/letters all 2"))

    def test_exactlyFullLastPage(self) -> None:
        """
        Rule: a list of exactly PAGE_SIZE entries is one page with no
        "more"; a list of PAGE_SIZE + 1 names page 2.
        """
        self.bob.box.list_letters(True)
        self.asked()
        self.bob.feed(LetterList(letters(0, PAGE_SIZE), PAGE_SIZE))
        self.assertEqual(self.shown()[2], "")
        self.bob.view.take()
        self.bob.box.list_letters(True)
        self.asked()
        self.bob.feed(LetterList(letters(0, PAGE_SIZE + 1), PAGE_SIZE + 1))
        self.assertEqual(self.shown()[2], "/letters new 2")

    def test_laterPageNumberedOnAndReadByNumber(self) -> None:
        """
        Rule: page 2 asks from offset PAGE_SIZE and numbers its letters on
        from PAGE_SIZE + 1, so /read 57 reads the 57th of the list.
        """
        self.bob.box.list_letters(False, 2)
        self.assertEqual(self.asked(), [PAGE_SIZE])
        self.bob.feed(LetterList(letters(PAGE_SIZE, 30), PAGE_SIZE + 30))
        [(page, total, more)] = self.bob.view.of("letter_list")
        self.assertEqual((page[0].number, page[-1].number, more), (51, 80, ""))
        self.assertEqual(self.bob.box.find("57").letter_id, lid(56))

    def test_emptyAnswerEndsPage(self) -> None:
        """
        Rule: an empty answer ends the page even though the total says
        more (the list shrank, or the relay has nothing more): what came is
        shown and nothing more is asked, so the client never loops.
        """
        self.bob.box.list_letters(False)
        self.asked()
        self.bob.feed(LetterList(letters(0, 20), 30))
        self.asked()
        self.bob.feed(LetterList((), 30))
        self.assertEqual(self.asked(), [])
        self.assertEqual(len(self.shown()[0]), 20)

    def test_emptyPagePastTheEnd(self) -> None:
        """
        A page past the last is shown as empty, with the total, and its
        line says so.
        """
        self.bob.box.list_letters(False, 3)
        self.assertEqual(self.asked(), [2 * PAGE_SIZE])
        self.bob.feed(LetterList((), 60))
        self.assertEqual(self.shown(), ((), 60, ""))

    def test_entryAddedBetweenAnswersRefetched(self) -> None:
        """
        Rule: a total that changed between two answers of one page (a
        letter came meanwhile) makes the client fetch the page again from
        its start; each letter is then shown once, none twice.
        """
        self.bob.box.list_letters(False)
        self.asked()
        self.bob.feed(LetterList(letters(1, 20), 30))
        self.asked()
        self.bob.feed(LetterList(letters(20, 11), 31))  # lid(0) came; lid(20) is here again
        self.assertEqual(self.asked(), [0])
        self.bob.feed(LetterList(letters(0, 20), 31))
        self.bob.feed(LetterList(letters(20, 11), 31))
        ids, total, _ = self.shown()
        self.assertEqual((ids, total), (tuple(lid(n) for n in range(31)), 31))

    def test_entryDeletedBetweenAnswersRefetched(self) -> None:
        """
        Rule: a total that shrank between two answers (a letter was deleted
        or read meanwhile, so one would be skipped) also refetches the page
        from its start.
        """
        self.bob.box.list_letters(False)
        self.asked()
        self.bob.feed(LetterList(letters(0, 20), 30))
        self.asked()
        self.bob.feed(LetterList(letters(21, 8), 29))
        self.assertEqual(self.asked(), [0])
        self.bob.feed(LetterList(letters(0, 20), 29))
        self.assertEqual(self.asked(), [20])
        self.bob.feed(LetterList(letters(20, 9), 29))
        self.assertEqual(len(self.shown()[0]), 29)

    def test_listThatKeepsChangingShownWithNotice(self) -> None:
        """
        Rule: after MAX_RESTARTS refetches the page is shown as it is, with
        a notice saying so: a list that keeps changing costs a bounded
        number of requests.
        """
        self.bob.box.list_letters(False)
        requests = len(self.asked())
        total = 30
        while not self.bob.view.of("letter_list"):
            self.bob.feed(LetterList(letters(0, 20), total))
            total += 1
            requests += len(self.asked())
            self.assertLess(requests, 3 * (MAX_RESTARTS + 2))
        self.assertIn(("the list changed while it was being fetched; /letters all again shows it settled",),
                      self.bob.view.of("notice"))

    def test_unaskedListDropped(self) -> None:
        """Rule: a list nobody asked for is dropped, not shown."""
        self.bob.feed(LetterList(letters(0, 3), 3))
        self.bob.feed(StatusList(status(0, 3), 3))
        self.bob.feed(UserList((UserEntry("mallory", 1),), 1))
        self.assertEqual(self.bob.view.kinds(), [])

    def test_refusedListEndsPage(self) -> None:
        """
        Rule: a list request the relay refuses ends that page (the failure
        is shown) and the next list is matched to its own request.
        """
        self.bob.box.list_letters(False)
        self.asked()
        self.bob.feed(LetterList(letters(0, 20), 30))
        self.asked()
        self.bob.feed(CommandFailed(ListLetters.TYPE, "bob", Reason.RATE_LIMITED))
        self.assertEqual(self.bob.view.of("letter_list"), [])
        self.assertEqual(len(self.bob.view.of("command_failed")), 1)
        self.bob.box.list_letters(True)
        self.asked()
        self.bob.feed(LetterList(letters(0, 2), 2))
        self.assertEqual(self.shown()[2], "")

    def test_answersMatchedToRequestsInOrder(self) -> None:
        """
        Rule: with /letters, /sent and another /letters in flight, each
        answer goes to the oldest request of its kind.
        """
        self.bob.box.list_letters(True)
        self.bob.box.sent_status()
        self.bob.box.list_letters(False, 2)
        self.assertEqual(self.asked(), [0, PAGE_SIZE])
        self.assertEqual(self.asked(SentStatus), [0])
        self.bob.feed(LetterList(letters(0, 1), 1))
        self.bob.feed(StatusList((), 0))
        self.bob.feed(LetterList(letters(PAGE_SIZE, 1), PAGE_SIZE + 1))
        [new, every] = self.bob.view.of("letter_list")
        self.assertEqual((new[0][0].number, every[0][0].number), (1, PAGE_SIZE + 1))
        self.assertEqual(self.bob.view.of("sent_status"), [((), 0, "")])

    def test_usersFetchedWhole(self) -> None:
        """Rule: /users fetches every page and shows every user once."""
        self.bob.box.list_users()
        self.assertEqual(self.asked(ListUsers), [0])
        self.bob.feed(UserList(tuple(UserEntry(f"u{n:03d}", n % 2) for n in range(100)), 150))
        self.assertEqual(self.asked(ListUsers), [100])
        self.bob.feed(UserList(tuple(UserEntry(f"u{n:03d}", n % 2) for n in range(100, 150)), 150))
        [(users, total)] = self.bob.view.of("users")
        self.assertEqual((len(users), users[-1], total), (150, ("u149", True), 150))

    def test_sentPagedLocalRowsOnFirstPageOnly(self) -> None:
        """
        Rule: /sent pages like /letters; letters the relay never stored
        (unacknowledged here) are shown on page 1 only.
        """
        self.bob.store.add_sent(b"\x09" * 16, "carol", b"sealed", NOW)
        self.bob.box.sent_status(2)
        self.assertEqual(self.asked(SentStatus), [PAGE_SIZE])
        self.bob.feed(StatusList((), 0))
        self.assertEqual(self.bob.view.of("sent_status"), [((), 0, "")])
        self.bob.box.sent_status()
        self.asked(SentStatus)
        self.bob.feed(StatusList((), 0))
        [(rows, total, more)] = self.bob.view.of("sent_status")[1:]
        self.assertEqual(([r.recipient for r in rows], total, more), (["carol"], 1, ""))


class PageArgumentTests(unittest.TestCase):
    """The words after /letters and /sent."""

    def test_pageArguments(self) -> None:
        """
        [new|all] [PAGE]: the choice defaults to the first, the page to 1;
        a page that is not a whole number from 1 is refused (None).
        """
        choices = ("new", "all")
        self.assertEqual(page_arguments([], choices), ("new", 1))
        self.assertEqual(page_arguments(["all", "3"], choices), ("all", 3))
        self.assertEqual(page_arguments(["2"], choices), ("new", 2))
        self.assertEqual(page_arguments(["4"]), ("", 4))
        for bad in (["0"], ["-1"], ["x"], ["all", "2", "3"], ["2", "all"], ["1" * 20]):
            self.assertIsNone(page_arguments(bad, choices), bad)


class RelayPagingTests(unittest.TestCase):
    """The client against the real relay in memory."""

    def _sent_with_receipts(self, h: LetterHarness, count: int) -> None:
        """alice's relay holds C{count} letters to bob, each with both receipts."""
        poster, bob = h.login("alice"), h.login("bob")
        for n in range(count):
            h.clock.advance(1)
            poster.send(PostLetter("bob", lid(n), b"sealed"))
            h.pump()
        for n in range(count):
            bob.send(*(PostReceipt("alice", lid(n), receipt(kind, "alice", lid(n), "bob"))
                       for kind in (1, 2)))
        h.pump()

    def test_sentPagesOverSeveralAnswersEachOnce(self) -> None:
        """
        With answers cut to a small max_payload (a dozen statuses with
        receipts each, fewer than a page), alice pages through 120 sent
        letters: pages 1, 2 and 3 hold 50, 50 and 20, each letter once,
        newest first, and only the last page names no next one.
        """
        h = LetterHarness(Limits(max_frame=4096, letter_rate=1000, letter_burst=1000, rate=10000,
                                 burst=10000))
        self._sent_with_receipts(h, 120)
        raw = h.login("alice")
        raw.send(SentStatus(0))
        h.pump()
        [answer] = raw.take()
        self.assertLess(len(answer.letters), PAGE_SIZE // 2)  # a page takes several answers
        alice, view = h.client("alice")
        assert alice.mailbox is not None
        for page in (1, 2, 3):
            alice.mailbox.sent_status(page)
            h.pump()
        pages = view.of("sent_status")
        self.assertEqual([len(p[0]) for p in pages], [50, 50, 20])
        self.assertEqual([p[1] for p in pages], [120, 120, 120])
        self.assertEqual([p[2] for p in pages], ["/sent 2", "/sent 3", ""])
        seen = [r.letter_id for p in pages for r in p[0]]
        self.assertEqual(seen, [lid(n) for n in range(119, -1, -1)])

    def test_sentOverOneAnswerAtDefaultPayload(self) -> None:
        """
        200 sent letters with both receipts (more than one STATUS_LIST
        holds at the default max_payload, about 190) are shown over four
        pages of /sent, each once, the last naming no next page.
        """
        h = LetterHarness(Limits(letter_rate=1000, letter_burst=1000, rate=10000, burst=10000))
        self._sent_with_receipts(h, 200)
        alice, view = h.client("alice")
        assert alice.mailbox is not None
        for page in (1, 2, 3, 4, 5):
            alice.mailbox.sent_status(page)
            h.pump()
        pages = view.of("sent_status")
        self.assertEqual([len(p[0]) for p in pages], [50, 50, 50, 50, 0])
        self.assertEqual([p[2] for p in pages], ["/sent 2", "/sent 3", "/sent 4", "", ""])
        seen = [r.letter_id for p in pages for r in p[0]]
        self.assertEqual(seen, [lid(n) for n in range(199, -1, -1)])
        self.assertTrue(all(r.delivered_at and r.read_at for p in pages for r in p[0]))


class PageWordsTests(unittest.TestCase):
    """How a page ends, in the words both views use (LetterLines)."""

    def lines(self, event: str, *args: Any) -> list[str]:
        from securechat.client.letterview import LetterLines
        out: list[str] = []

        class Lines(LetterLines):
            def letter_line(self, text: str, alert: bool = False) -> None:
                out.append(text)
        getattr(Lines(), event)(*args)
        return out

    def test_nextPageNamed(self) -> None:
        """
        A page with more after it ends with the entries it showed, the
        total and the command for the next page; the last page of several
        says which entries it showed; one complete page adds no line.
        """
        from securechat.client.letterview import LetterSummary, StatusRow
        first = tuple(LetterSummary(n, "alice", lid(n), NOW, 10, 0) for n in range(1, 51))
        last = tuple(LetterSummary(n, "alice", lid(n), NOW, 10, 0) for n in range(51, 81))
        self.assertEqual(self.lines("letter_list", first, 80, "/letters all 2")[-1],
                         "(letters 1-50 of 80; more: /letters all 2)")
        self.assertEqual(self.lines("letter_list", last, 80, "")[-1], "(letters 51-80 of 80)")
        self.assertEqual(len(self.lines("letter_list", first[:3], 3, "")), 3)
        self.assertEqual(self.lines("letter_list", (), 80, ""), ["no letters on that page (80 in all)"])
        rows = (StatusRow("bob", lid(1), "pending", 0, 0, 0, 0, "", ""),)
        self.assertEqual(self.lines("sent_status", rows, 51, "/sent 2")[-1],
                         "(1 of 51 letters shown; more: /sent 2)")


class PageCommandTests(unittest.TestCase):
    """/letters and /sent with a page, in both views."""

    def test_lineModePages(self) -> None:
        """
        "!letters all 2", "/letters 3" and "!sent 2" ask from the page's
        offset; a bad page is a usage line and sends nothing.
        """
        from securechat.client.terminal import ChatTerminal
        out: list[str] = []
        terminal = ChatTerminal(write=out.append, clock=lambda: 0.0)
        alice = User("alice")
        terminal.client = alice.client
        for line in (b"!letters all 2", b"/letters 3", b"!sent 2", b"!letters all zero", b"!sent 0"):
            terminal.lineReceived(line)
        self.assertEqual(alice.relay.take(ListLetters),
                         [ListLetters(1, PAGE_SIZE), ListLetters(0, 2 * PAGE_SIZE)])
        self.assertEqual(alice.relay.take(SentStatus), [SentStatus(PAGE_SIZE)])
        self.assertEqual(out[-2:], ["! usage: !letters [new|all] [PAGE]\n", "! usage: !sent [PAGE]\n"])

    def test_fullScreenPages(self) -> None:
        """The full screen takes the same words, and says its usage in one line."""
        from securechat.client.tui.view import FullScreen
        view = FullScreen("alice", "tcp:relay:7070", clock=lambda: 0.0)
        alice = User("alice")
        view.client = alice.client
        view.commands.submit("/letters new 2")
        view.commands.submit("/sent 3")
        view.commands.submit("/sent x")
        self.assertEqual(alice.relay.take(ListLetters), [ListLetters(0, PAGE_SIZE)])
        self.assertEqual(alice.relay.take(SentStatus), [SentStatus(2 * PAGE_SIZE)])
        self.assertIn("usage: /sent [PAGE]", view.windows.current.lines[-1].body)
