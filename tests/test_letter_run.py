"""
POST_LETTERs handed over undecoded (L{securechat.server.letterpost.LetterPoster.post_raw}):
a read's letters that pass 14.7's checks as they come are one
L{securechat.server.letterpost.LetterRun}, answered by encoded answers;
every other letter takes the per-letter path in its place.  The answers
must be those of the per-letter path, in order, byte for byte.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from securechat.outbound import EndOfTurn, OutboundQueue
from securechat.server.limits import Limits
from securechat.server.mailbox import mailbox_limits
from securechat.server.store.interface import DAY
from securechat.server.store.memory import MemoryMailboxStore
from securechat.wire.mailbox import (
    FetchLetter, Letter, LetterArrived, LetterRefused, LetterStored, ListLetters, PostLetter)
from securechat.wire.messages import INNER_HEADER, split_inner
from securechat.wire.relay import Reason
from tests.attack_tools import Canary, assert_fail_closed, connect_raw
from tests.test_mailbox_relay import HeldStore, MailboxCase, lid

EXPIRES = 2 * DAY


def encoded(message: Any) -> bytes:
    body = message.encode_body()
    return INNER_HEADER.pack(message.TYPE, len(body)) + body


class LetterRunTests(MailboxCase):
    """Letters posted together, answered as one by one."""

    limits = Limits(max_letter=1000, mailbox_letters=50, letter_rate=0.1, letter_burst=8,
                    expiry_days=2)

    def test_runAnsweredAsTheGenericEncoder(self) -> None:
        """
        Letters of one record that pass their checks are answered, in
        order, by exactly the bytes the generic encoder writes for their
        LETTER_STOREDs, queued as one piece; one store call for all.
        """
        pushed: list[bytes] = []
        original = OutboundQueue.push_inner

        def push_inner(queue: OutboundQueue, data: bytes) -> None:
            pushed.append(data)
            original(queue, data)
        self.patch(OutboundQueue, "push_inner", push_inner)
        alice = self.h.login("alice")
        letters = [PostLetter("bob", lid(1), b"a"), PostLetter("carol", lid(2), b"bb"),
                   PostLetter("bob", lid(3), b"ccc")]
        expected = [LetterStored(m.recipient, m.letter_id, 0, EXPIRES) for m in letters]
        self.assertEqual(self.ask(alice, *letters), expected)
        self.assertEqual(pushed, [b"".join(encoded(m) for m in expected)])
        self.assertEqual(self.h.relay.metrics.letters_stored, 3)

    def test_refusalsInTheMiddleOfARun(self) -> None:
        """
        A letter refused by a check before the store (unknown or revoked
        recipient, too large) is answered in its place among letters
        stored with it.
        """
        self.h.directory.revoke("dave")
        alice = self.h.login("alice")
        self.assertEqual(self.ask(
            alice, PostLetter("bob", lid(1), b"x"), PostLetter("nobody", lid(2), b"x"),
            PostLetter("carol", lid(3), b"x"), PostLetter("bob", lid(4), b"x" * 1001),
            PostLetter("dave", lid(5), b"x"), PostLetter("bob", lid(6), b"x")), [
            LetterStored("bob", lid(1), 0, EXPIRES),
            LetterRefused("nobody", lid(2), Reason.UNKNOWN_USER),
            LetterStored("carol", lid(3), 0, EXPIRES),
            LetterRefused("bob", lid(4), Reason.TOO_LARGE),
            LetterRefused("dave", lid(5), Reason.REVOKED),
            LetterStored("bob", lid(6), 0, EXPIRES)])

    def test_letterRefusedBeforeTheRateSpendsNoToken(self) -> None:
        """
        The run takes its letters' rate tokens at once; a letter refused
        before the rate check (14.7) gets its token back, as it never
        spends one on the per-letter path.
        """
        alice = self.h.login("alice")
        for n in range(5):
            self.post(alice, "bob", 10 + n)
        self.assertEqual(self.ask(alice, PostLetter("nobody", lid(1), b"x"),
                                  PostLetter("bob", lid(2), b"x"),
                                  PostLetter("bob", lid(3), b"x")),
                         [LetterRefused("nobody", lid(1), Reason.UNKNOWN_USER),
                          LetterStored("bob", lid(2), 0, EXPIRES),
                          LetterStored("bob", lid(3), 0, EXPIRES)])
        # Eight tokens: five, then two; the unknown recipient's came back.
        self.assertIsInstance(self.post(alice, "bob", 4), LetterStored)
        self.assertEqual(self.post(alice, "bob", 5),
                         LetterRefused("bob", lid(5), Reason.RATE_LIMITED))

    def test_runBeyondTheRateLetterByLetter(self) -> None:
        """
        When the sender's tokens do not cover the read's letters, each is
        checked on its own: those within the rate stored, the rest
        RATE_LIMITED, in order.
        """
        alice = self.h.login("alice")
        for n in range(6):
            self.post(alice, "bob", 10 + n)
        self.assertEqual(self.ask(alice, *(PostLetter("carol", lid(n), b"x") for n in range(3))),
                         [LetterStored("carol", lid(0), 0, EXPIRES),
                          LetterStored("carol", lid(1), 0, EXPIRES),
                          LetterRefused("carol", lid(2), Reason.RATE_LIMITED)])

    def test_sameIdTwiceInARun(self) -> None:
        """
        The same id twice in one read is stored once; both are answered
        with the first answer, naming the first recipient.
        """
        alice = self.h.login("alice")
        first = LetterStored("bob", lid(1), 0, EXPIRES)
        self.assertEqual(self.ask(alice, PostLetter("bob", lid(1), b"first"),
                                  PostLetter("carol", lid(1), b"second")), [first, first])
        bob = self.h.login("bob")
        [listing] = self.ask(bob, ListLetters(1, 0))
        self.assertEqual(listing.total, 1)
        carol = self.h.login("carol")
        [listing] = self.ask(carol, ListLetters(1, 0))
        self.assertEqual(listing.total, 0)

    def test_resendOfStoredLetterInARun(self) -> None:
        """
        A resend whose recipient is revoked since is answered as the first
        time (looked up on the per-letter path), in its place in the run.
        """
        alice = self.h.login("alice")
        self.h.clock.advance(7)
        first = self.post(alice, "bob", 1)
        self.h.directory.revoke("bob")
        self.assertEqual(self.ask(alice, PostLetter("carol", lid(2), b"x"),
                                  PostLetter("bob", lid(1), b"x"),
                                  PostLetter("carol", lid(3), b"x")),
                         [LetterStored("carol", lid(2), 7, 7 + EXPIRES), first,
                          LetterStored("carol", lid(3), 7, 7 + EXPIRES)])


class LetterRunOrderTests(MailboxCase):
    """Letters behind another command of their session wait for it."""

    def make_store(self) -> Any:
        self.store = HeldStore(MemoryMailboxStore(Clock(), mailbox_limits(self.limits)))
        return self.store

    def test_lettersBehindACommandWait(self) -> None:
        """
        Letters read while a command before them has not finished start
        after it (per letter, in order), so the command does not see them
        and they see its effects; answers in order.
        """
        alice = self.h.login("alice")
        self.assertEqual(self.ask(alice, PostLetter("alice", lid(1), b"x")), [])
        self.assertEqual(self.ask(alice, FetchLetter("alice", lid(1))), [])
        self.assertEqual(self.ask(alice, PostLetter("alice", lid(2), b"y"),
                                  PostLetter("alice", lid(3), b"z")), [])
        # Only the first letter went to the store: the fetch waits for its
        # commit, the two later letters for the fetch.
        self.assertEqual([[n.letter_id for n in letters] for _, letters in self.store.held],
                         [[lid(1)]])
        self.store.commit()
        self.h.pump()
        self.assertEqual([[n.letter_id for n in letters] for _, letters in self.store.held],
                         [[lid(2), lid(3)]])
        self.store.commit()
        self.h.pump()
        self.assertEqual([type(m) for m in alice.take() if not isinstance(m, LetterArrived)],
                         [LetterStored, Letter, LetterStored, LetterStored])


class MalformedLetterInARun(MailboxCase):
    """A malformed POST_LETTER after good ones: the generic parser's error."""

    def inner(self, code: int, body: bytes) -> bytes:
        return bytes([code]) + len(body).to_bytes(4, "big") + body

    def test_malformedAfterGoodLetters(self) -> None:
        """
        A bad recipient name, a letter length that does not match the body
        or a cut body after a good letter in the same record closes the
        connection with the generic parser's error.
        """
        canary = Canary(self.h)
        good = self.inner(0x53, PostLetter("bob", lid(1), b"x").encode_body())
        post = PostLetter("bob", lid(2), b"xy").encode_body()
        cases = [
            (self.inner(0x53, b"\x04Bob!" + post[4:]), "bad-value"),
            (self.inner(0x53, b"\x03b\xffb" + post[4:]), "bad-value"),
            (self.inner(0x53, post[:-6] + b"\x00\x00\x00\x03xy"), "truncated"),
            (self.inner(0x53, post + b"z"), "trailing-bytes"),
            (self.inner(0x53, b""), "truncated"),
        ]
        for frame, code in cases:
            raw, server, _ = connect_raw(self.h)
            raw.login("alice")
            self.h.pump()
            online = set(self.h.relay.sessions) - {"alice"}
            raw.write(raw.seal(good + frame))
            self.h.pump()
            assert_fail_closed(self, self.h, server, code, canary, online)


class PushInnerTests(MailboxCase):
    """L{OutboundQueue.push_inner}: encoded messages cut to what a record holds."""

    def test_cutAtMessageBoundaries(self) -> None:
        """
        Encoded messages longer together than a record holds are sealed in
        pieces cut between messages, none over the limit unless a single
        message is; their order kept.
        """
        sealed: list[bytes] = []
        queue = OutboundQueue(EndOfTurn(Clock()), sealed.append, 40)
        messages = [encoded(LetterRefused("bob", lid(n), Reason.TOO_LARGE)) for n in range(5)]
        big = encoded(PostLetter("bob", lid(9), b"x" * 50))
        queue.push_inner(b"".join(messages) + big + messages[0])
        queue.drain()
        self.assertEqual(sealed, [messages[0], messages[1], messages[2], messages[3],
                                  messages[4], big, messages[0]])
        for piece in sealed:
            self.assertEqual(b"".join(INNER_HEADER.pack(t, len(b)) + bytes(b)
                                      for t, b in split_inner(piece)), piece)

    def test_fitsWhole(self) -> None:
        """Messages that fit one record are queued as one piece."""
        sealed: list[bytes] = []
        queue = OutboundQueue(EndOfTurn(Clock()), sealed.append, 1000)
        data = b"".join(encoded(LetterRefused("bob", lid(n), Reason.TOO_LARGE))
                        for n in range(5))
        queue.push_inner(data)
        queue.drain()
        self.assertEqual(sealed, [data])
