# -*- test-case-name: tests.test_mailbox_relay -*-
"""
POST_LETTER on the relay (docs/protocol.rst 14.7), for
L{securechat.server.mailbox.Mailbox}: the checks, and the letters of a read
stored by one store call.

Each POST_LETTER is one L{LetterSlot} in its session's answer order (no
closures and no Deferred of its own).  When the order starts it,
L{LetterPoster.start} checks it in the order of 14.7: too large; unknown or
revoked recipient; the sender's letter rate (a refused letter that is a
resend of one already stored is answered as the first time, after a store
lookup).  A letter that passes joins the I{run} of letters started in the
same read; when the read ends (L{securechat.outbound.EndOfTurn.call_at_end}),
the run goes to the store in ONE C{store_letters} call, and the store's
group commit takes it with whatever else is pending.  When that Deferred
fires (after the transaction holding the run committed), each letter is
answered in its session's order: LETTER_STORED, or LETTER_REFUSED for the
quota, and LETTER_ARRIVED to the recipient if online (on another process
with C{--cluster}: through the router).  If the store fails, nothing of the
run was stored: if it could not be reached (L{StoreUnavailable}: PostgreSQL
down), each letter of the run is answered LETTER_REFUSED(TRY_AGAIN) in its
order (L{Mailbox.try_again}), the connections kept; otherwise each session
with a letter in it is closed once (INTERNAL_ERROR), and its client resends
what was not acknowledged.  The resend lookup of a refused letter fails the
same two ways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from securechat.server.limits import TokenBucket
from securechat.server.ordering import AnswerOrder, Slot
from securechat.server.store.interface import (
    MAILBOX_FULL_BYTES, MAILBOX_FULL_LETTERS, Duplicate, NewLetter, Refused, Stored, StoreOutcome,
    StoreUnavailable)
from securechat.wire.mailbox import LetterArrived, LetterRefused, LetterStored, PostLetter
from securechat.wire.messages import Message
from securechat.wire.relay import Reason

if TYPE_CHECKING:
    from securechat.server.mailbox import Mailbox
    from securechat.server.session import UserSession


class LetterSlot(Slot):
    """
    A POST_LETTER in its session's answer order, with what it needs to
    start (L{LetterPoster.start}) and to be answered: one object per letter.
    """

    __slots__ = ("poster", "session", "order", "message", "letter")

    def __init__(self, poster: LetterPoster, session: UserSession, order: AnswerOrder,
                 message: PostLetter) -> None:
        # (The bound method makes a cycle with the slot until the order
        # starts it and lets go of it, as the closure of any command does.)
        super().__init__(True, self.run)
        self.poster = poster
        self.session = session
        self.order = order
        self.message = message
        self.letter: NewLetter | None = None

    def run(self) -> None:
        self.poster.start(self)

    def finish(self, answer: Message) -> None:
        self.order.finish(self, answer, self.session.deliver)


class LetterPoster:
    """
    The letters of C{mailbox}'s users: checked, and stored a run at a time.
    """

    log = Logger()

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.relay = mailbox.relay
        self.limits = mailbox.limits
        self.metrics = mailbox.metrics
        #: Each user's letter rate (kept across its connections).
        self.rates: dict[str, TokenBucket] = {}
        #: The letters started in this read, stored together when it ends,
        #: and when the first of them started.
        self._run: list[LetterSlot] = []
        self._run_started = 0.0
        self._letter_limit = self.limits.letter_limit

    def start(self, slot: LetterSlot) -> None:
        """
        POST_LETTER's checks (14.7); a letter that passes joins the read's
        run, stored when the read ends (L{_store_run}).
        """
        session, message = slot.session, slot.message
        try:
            sender = session.user
            assert sender is not None
            if len(message.letter) > self._letter_limit:
                slot.finish(self.refuse(sender, message, Reason.TOO_LARGE))
                return
            problem = self._problem(sender, message)
            if problem is None:
                run = self._run
                if not run:
                    self._run_started = self.relay.clock.seconds()
                    self.relay.end_of_turn.call_at_end(self._store_run)
                slot.letter = NewLetter(sender, message.recipient, message.letter_id,
                                        message.letter)
                run.append(slot)
                return
            # Refused, unless it is a resend of a letter already stored:
            # that is answered as the first time, whatever the checks say
            # (14.7, step 2).
            self.mailbox.store.sent_status(sender, [message.letter_id]).addCallback(
                self._earlier, sender, message, problem).addCallbacks(
                slot.finish, self._lookup_failed, errbackArgs=(slot,)).addErrback(
                self.mailbox.store_failed, session, "PostLetter")
        except Exception:
            self._lookup_failed(Failure(), slot)

    def _lookup_failed(self, failure: Failure, slot: LetterSlot) -> None:
        """
        The letter could not be checked or looked up: TRY_AGAIN if the
        store could not be reached, else its session is closed.
        """
        if failure.check(StoreUnavailable):
            slot.finish(self.mailbox.try_again(slot.session, slot.message))
        else:
            self.mailbox.store_failed(failure, slot.session, "PostLetter")

    def _problem(self, sender: str, message: PostLetter) -> Reason | None:
        """Why the letter is refused before the store, if it is (14.7)."""
        entry = self.relay.directory.lookup_recent(message.recipient)
        if entry is None:
            return Reason.UNKNOWN_USER
        if entry.revoked:
            return Reason.REVOKED
        bucket = self.rates.get(sender)
        if bucket is None:
            bucket = self.rates[sender] = TokenBucket(
                self.relay.clock, self.limits.letter_rate, self.limits.letter_burst)
        if bucket.refill() < 1:
            return Reason.RATE_LIMITED
        bucket.tokens -= 1
        return None

    def _earlier(self, found: list[Any], sender: str, message: PostLetter,
                 problem: Reason) -> Message:
        if found:
            return LetterStored(found[0].recipient, message.letter_id, found[0].stored_at,
                                found[0].expires_at)
        return self.refuse(sender, message, problem)

    def refuse(self, sender: str, message: PostLetter, reason: Reason) -> Message:
        self.metrics.letters_refused.labels(reason.name.lower()).inc()
        self.log.info("mailbox: letter from {sender} to {recipient} refused: {reason}",
                      sender=sender, recipient=message.recipient, reason=reason.name)
        return LetterRefused(message.recipient, message.letter_id, reason)

    def _store_run(self) -> None:
        """
        Store the letters the read started, in one store call; each is
        answered, in its session's order, once the transaction holding it
        has committed.
        """
        run, self._run = self._run, []
        try:
            d = self.mailbox.store.store_letters([slot.letter for slot in run])  # type: ignore[misc]
        except Exception:
            d = fail()
        d.addCallbacks(self._stored, self._failed, callbackArgs=(run, self._run_started),
                       errbackArgs=(run,))

    def _stored(self, outcomes: list[StoreOutcome], run: list[LetterSlot], started: float) -> None:
        metrics, sessions, router = self.metrics, self.relay.sessions, self.relay.router
        stored = 0
        for slot, result in zip(run, outcomes):
            message = slot.message
            try:
                sender = slot.session.user
                assert sender is not None
                if type(result) is Stored:
                    stored += 1
                    # (Built only for a recipient online here or, with
                    # --cluster, perhaps on another process.)
                    target = sessions.get(message.recipient)
                    if target is not None:
                        target.deliver(LetterArrived(sender, message.letter_id, result.stored_at,
                                                     len(message.letter)))
                    elif router is not None:
                        router.notify(message.recipient, LetterArrived(
                            sender, message.letter_id, result.stored_at, len(message.letter)))
                    answer: Message = LetterStored(message.recipient, message.letter_id,
                                                   result.stored_at, result.expires_at)
                elif isinstance(result, Duplicate):
                    # The first answer again, naming the first recipient (14.7).
                    answer = LetterStored(result.recipient, message.letter_id, result.stored_at,
                                          result.expires_at)
                else:
                    assert isinstance(result, Refused)
                    full = result.reason in (MAILBOX_FULL_LETTERS, MAILBOX_FULL_BYTES)
                    answer = self.refuse(sender, message,
                                         Reason.MAILBOX_FULL if full else Reason.TOO_LARGE)
                slot.finish(answer)
            except Exception:
                self.mailbox.store_failed(Failure(), slot.session, "PostLetter")
        if stored:
            metrics.letters_stored += stored
            # (Every letter of the run arrived in the same read.)
            metrics.letter_ack_latency.observe_many(self.relay.clock.seconds() - started, stored)

    def _failed(self, failure: Failure, run: list[LetterSlot]) -> None:
        # Nothing of the run was stored.  The store could not be reached:
        # each letter is refused with TRY_AGAIN, in its session's order.
        # Otherwise each session with a letter in it is closed (once), and
        # its client resends what was not answered.
        if failure.check(StoreUnavailable):
            for slot in run:
                try:
                    slot.finish(self.mailbox.try_again(slot.session, slot.message))
                except Exception:
                    self.mailbox.store_failed(Failure(), slot.session, "PostLetter")
            return
        ended: set[UserSession] = set()
        for slot in run:
            if slot.session not in ended:
                ended.add(slot.session)
                self.mailbox.store_failed(failure, slot.session, "PostLetter")
