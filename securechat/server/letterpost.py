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

import struct
from typing import TYPE_CHECKING, Any, Union

from twisted.internet.defer import fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from securechat.server.limits import TokenBucket
from securechat.server.ordering import AnswerOrder, Slot
from securechat.server.store.interface import (
    MAILBOX_FULL_BYTES, MAILBOX_FULL_LETTERS, Duplicate, NewLetter, Refused, Stored, StoreOutcome,
    StoreUnavailable)
from securechat.wire.mailbox import (
    MAILBOX_FROM_CLIENT, LetterArrived, LetterRefused, LetterStored, PostLetter)
from securechat.wire.messages import INNER_HEADER, Message
from securechat.wire.names import BadUserName, check_user_name
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


def _started() -> None:
    """The start of a L{LetterRun}: its letters were checked as they came."""


class LetterRun(Slot):
    """
    The letters of one session's read that passed 14.7's checks as they
    came (L{LetterPoster.post_raw}): ONE slot in its session's answer
    order for all of them, answered by their encoded answers together.
    """

    __slots__ = ("session", "order", "letters")

    def __init__(self, session: UserSession, order: AnswerOrder) -> None:
        super().__init__(True, _started)
        self.session = session
        self.order = order
        self.letters: list[NewLetter] = []

    def finish(self, answer: Message | bytes) -> None:
        self.order.finish(self, answer, self.session.deliver)


#: What a run of letters stored together holds: one slot per letter
#: started on its own, one per read's run of letters.
Member = Union[LetterSlot, LetterRun]

_U32 = struct.Struct(">I")
_U64_U64 = struct.Struct(">QQ")
_STORED = LetterStored.TYPE
#: A POST_LETTER body's bytes besides its name and letter: the name's
#: length byte, the 16-byte id and the letter's u32 length.
_POST_FIXED = 1 + 16 + 4
#: User names remembered as checked (a bound on memory, not a cache policy).
_NAMES_KEPT = 4096


def _parsed(body: memoryview) -> PostLetter:
    """A POST_LETTER's body by the generic parser (its errors for a malformed one)."""
    message = MAILBOX_FROM_CLIENT.parse(PostLetter.TYPE, bytes(body))
    assert isinstance(message, PostLetter)
    return message


def _encoded(message: Message) -> bytes:
    """C{message} as an inner message (header and body)."""
    body = message.encode_body()
    return INNER_HEADER.pack(message.TYPE, len(body)) + body


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
        #: The letters started in this read, stored together when it ends
        #: (each member one letter or a read's run of them), and when the
        #: first of them started.
        self._run: list[Member] = []
        self._run_started = 0.0
        self._letter_limit = self.limits.letter_limit
        #: Recipients' names as posted (text8 bytes, without the length)
        #: found valid, and the start of a LETTER_STORED to each.
        self._names: dict[bytes, str] = {}
        self._stored_heads: dict[str, bytes] = {}

    def _join_run(self, member: Member) -> None:
        run = self._run
        if not run:
            self._run_started = self.relay.clock.seconds()
            self.relay.end_of_turn.call_at_end(self._store_run)
        run.append(member)

    def post_raw(self, session: UserSession, items: list[tuple[int, memoryview]]) -> None:
        """
        A read's run of POST_LETTERs, undecoded (C{(type, body)} pairs; the
        session charged its message rate).  When nothing before them waits
        in the session's answer order, the letters that pass 14.7's checks
        (too large; unknown or revoked recipient; the letter rate, taken for
        the whole run at once when it covers it) join ONE L{LetterRun}
        straight from their bytes.  Any other letter (refused by a check, so
        perhaps a resend answered as the first time; or all of them when
        something waits before them or the rate does not cover the run)
        goes through the generic parser and L{Mailbox}'s per-letter path,
        in its place in the order: the same checks and answers.  A
        malformed body raises the generic parser's L{ProtocolError}.
        """
        mailbox = self.mailbox
        sender = session.user
        assert sender is not None
        order = mailbox._owed.get(session)
        if order is None:
            order = mailbox._owed[session] = AnswerOrder()
        bucket = self.rates.get(sender)
        if bucket is None:
            bucket = self.rates[sender] = TokenBucket(
                self.relay.clock, self.limits.letter_rate, self.limits.letter_burst)
        if order.pending or order.busy_other or bucket.refill() < len(items):
            for _, body in items:
                mailbox._post_in_order(session, _parsed(body))
                if not session.active:
                    return
            return
        bucket.tokens -= len(items)  # one each, given back to a letter that goes on its own
        names, lookup = self._names, self.relay.directory.lookup_recent
        limit = self._letter_limit
        run: LetterRun | None = None
        for _, body in items:
            size = len(body)
            n = body[0] if size else 0
            length = size - n - _POST_FIXED
            if length >= 0 and _U32.unpack_from(body, n + 17)[0] == length and length <= limit:
                recipient = names.get(body[1:n + 1])  # type: ignore[call-overload]
                if recipient is None:
                    recipient = self._checked_name(bytes(body[1:n + 1]))
                entry = lookup(recipient) if recipient is not None else None
                if entry is not None and not entry.revoked:
                    if run is None:
                        run = LetterRun(session, order)
                        order.add(run, session.deliver)
                        self._join_run(run)
                    run.letters.append(NewLetter(sender, recipient, bytes(body[n + 1:n + 17]),
                                                 bytes(body[n + 21:])))
                    continue
            # On its own, in its place: the generic parser (its error for a
            # malformed body) and every check again.
            bucket.tokens += 1
            run = None
            mailbox._post_in_order(session, _parsed(body))
            if not session.active:
                return

    def _checked_name(self, raw: bytes) -> str | None:
        """C{raw} as a user name, remembered; C{None} if it is not one."""
        try:
            name = check_user_name(raw.decode("utf-8"))
        except (UnicodeDecodeError, BadUserName):
            return None
        if len(self._names) >= _NAMES_KEPT:
            self._names.clear()
        self._names[raw] = name
        return name

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
                slot.letter = NewLetter(sender, message.recipient, message.letter_id,
                                        message.letter)
                self._join_run(slot)
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
        letters: list[NewLetter] = []
        for member in run:
            if type(member) is LetterRun:
                letters.extend(member.letters)
            else:
                letters.append(member.letter)  # type: ignore[union-attr,arg-type]
        try:
            d = self.mailbox.store.store_letters(letters)
        except Exception:
            d = fail()
        d.addCallbacks(self._stored, self._failed, callbackArgs=(run, self._run_started),
                       errbackArgs=(run,))

    def _stored(self, outcomes: list[StoreOutcome], run: list[Member], started: float) -> None:
        stored = at = 0
        for member in run:
            if type(member) is LetterRun:
                count = len(member.letters)
                try:
                    stored += self._answer_run(member, outcomes[at:at + count])
                except Exception:
                    self.mailbox.store_failed(Failure(), member.session, "PostLetter")
                at += count
                continue
            assert isinstance(member, LetterSlot)
            result = outcomes[at]
            at += 1
            message = member.message
            try:
                sender = member.session.user
                assert sender is not None
                if type(result) is Stored:
                    stored += 1
                    self._arrived(sender, message.recipient, message.letter_id,
                                  len(message.letter), result)
                answer = self._answer(sender, message.recipient, message.letter_id, result)
                member.finish(answer)
            except Exception:
                self.mailbox.store_failed(Failure(), member.session, "PostLetter")
        if stored:
            self.metrics.letters_stored += stored
            # (Every letter of the run arrived in the same read.)
            self.metrics.letter_ack_latency.observe_many(self.relay.clock.seconds() - started,
                                                         stored)

    def _arrived(self, sender: str, recipient: str, letter_id: bytes, size: int,
                 result: Stored) -> None:
        """LETTER_ARRIVED to C{recipient}, online here or, with --cluster, perhaps elsewhere."""
        target = self.relay.sessions.get(recipient)
        if target is not None:
            target.deliver(LetterArrived(sender, letter_id, result.stored_at, size))
        elif self.relay.router is not None:
            self.relay.router.notify(recipient, LetterArrived(sender, letter_id,
                                                              result.stored_at, size))

    def _answer(self, sender: str, recipient: str, letter_id: bytes,
                result: StoreOutcome) -> Message:
        """The answer to a letter the store took: LETTER_STORED or LETTER_REFUSED."""
        if type(result) is Stored:
            return LetterStored(recipient, letter_id, result.stored_at, result.expires_at)
        if isinstance(result, Duplicate):
            # The first answer again, naming the first recipient (14.7).
            return LetterStored(result.recipient, letter_id, result.stored_at,
                                result.expires_at)
        assert isinstance(result, Refused)
        full = result.reason in (MAILBOX_FULL_LETTERS, MAILBOX_FULL_BYTES)
        return self.refuse(sender, PostLetter(recipient, letter_id, b""),
                           Reason.MAILBOX_FULL if full else Reason.TOO_LARGE)

    def _answer_run(self, member: LetterRun, outcomes: list[StoreOutcome]) -> int:
        """
        Answer a L{LetterRun} from its outcomes, encoded together (a
        LETTER_STORED written from the recipient's name and the letter's
        id as posted); the number stored.
        """
        sender = member.session.user
        assert sender is not None
        sessions, router, heads = self.relay.sessions, self.relay.router, self._stored_heads
        parts: list[bytes] = []
        stored = 0
        tail = b""
        for new, result in zip(member.letters, outcomes):
            if type(result) is Stored:
                stored += 1
                recipient = new.recipient
                if not tail:
                    tail = _U64_U64.pack(result.stored_at, result.expires_at)
                head = heads.get(recipient)
                if head is None:
                    name = recipient.encode("utf-8")
                    head = heads[recipient] = INNER_HEADER.pack(
                        _STORED, len(name) + 33) + bytes((len(name),)) + name
                parts.append(head)
                parts.append(new.letter_id)
                parts.append(tail)
                if recipient in sessions or router is not None:
                    self._arrived(sender, recipient, new.letter_id, len(new.body), result)
            else:
                parts.append(_encoded(self._answer(sender, new.recipient, new.letter_id,
                                                   result)))
        member.finish(b"".join(parts))
        return stored

    def _failed(self, failure: Failure, run: list[Member]) -> None:
        # Nothing of the run was stored.  The store could not be reached:
        # each letter is refused with TRY_AGAIN, in its session's order.
        # Otherwise each session with a letter in it is closed (once), and
        # its client resends what was not answered.
        if failure.check(StoreUnavailable):
            for member in run:
                try:
                    if type(member) is LetterRun:
                        member.finish(b"".join(
                            _encoded(self.mailbox.try_again(member.session, PostLetter(
                                new.recipient, new.letter_id, b"")))
                            for new in member.letters))
                    else:
                        assert isinstance(member, LetterSlot)
                        member.finish(self.mailbox.try_again(member.session, member.message))
                except Exception:
                    self.mailbox.store_failed(Failure(), member.session, "PostLetter")
            return
        ended: set[UserSession] = set()
        for member in run:
            if member.session not in ended:
                ended.add(member.session)
                self.mailbox.store_failed(failure, member.session, "PostLetter")
