# -*- test-case-name: tests.test_mailbox_relay -*-
"""
The relay's side of the mailbox (docs/protocol.rst 14.6, 14.7): L{Mailbox}
answers the mailbox messages of a logged-in user on the store
(L{securechat.server.store.IMailboxStore}).

Rules it keeps:

  - B{Off the hot path.}  Mailbox messages arrive decoded, through
    L{securechat.server.relay.Relay.handle}; RELAY bodies never come here.
  - B{One answer per message, in order.}  Each session's answers go out
    in the order its messages came
    (L{securechat.server.ordering.AnswerOrder}); a command starts once those
    before it finished, except that POST_LETTERs run together (so letters
    posted together share a group commit: the letters a read starts go to
    the store in one call, L{securechat.server.letterpost}).  Notices
    (PREKEYS_LOW, NEW_LETTERS, LETTER_ARRIVED, RECEIPT) go out when they
    happen (to another process through the router, with C{--cluster}).
  - B{Acknowledged after commit.}  LETTER_STORED is sent only when the
    store's Deferred fires, which it does after the transaction holding the
    letter committed.
  - B{POST_LETTER in the order of 14.7}: too large; a resend of a stored
    (sender, letter_id) answered as the first time (never refused by the
    later checks); unknown or revoked recipient; the sender's letter rate;
    the recipient's quota.
  - B{Every refusal specific} (11.3); a store that cannot be reached
    (L{StoreUnavailable}: PostgreSQL down) refuses the command with
    TRY_AGAIN, a letter with LETTER_REFUSED(TRY_AGAIN), never acknowledged;
    a store that fails otherwise closes that one connection with
    INTERNAL_ERROR (the client resends what was not acknowledged).  Logs
    say who, to whom and what was refused, never contents; letters stored
    are counted in one line a minute (by the store).

A signed prekey goes to the store as a L{SignedPrekeyRecord} whose
C{signature} is the scheme (C{u16}) followed by the signature bytes, so the
relay can hand out the exact encoding it was given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from securechat.crypto import keys
from securechat.crypto.prekeys import LetterError, check_upload
from securechat.crypto.receipts import check_posted_receipt
from securechat.server.directory import UserEntry as DirectoryEntry
from securechat.server.limits import mailbox_limits  # noqa: F401 -- re-exported
from securechat.server.letterpost import LetterPoster, LetterSlot
from securechat.server.ordering import AnswerOrder, Slot
from securechat.server.prekeycheck import signed_by_current_key, uploaded_encoding
from securechat.server.store.interface import (
    DELIVERY, IMailboxStore, LetterRecord, LoginState, NoSuchLetter, OneTimePrekeyRecord,
    PrekeyBundle, PrekeyRefused, SignedPrekeyRecord, StockFull, StoreUnavailable)
from securechat.wire.codec import text8, u16
from securechat.wire.declared import MAX_LIST
from securechat.wire.keyhistory import GetKeyHistory, KeyHistory, PreviousKeyEntry
from securechat.wire.mailbox import (
    Bundle, DeleteLetter, FetchBundle, FetchLetter, GetUserKey, Letter, LetterDeleted,
    LetterEntry, LetterList, LetterState, ListLetters, ListUsers, NewLetters, PostLetter,
    PostReceipt, PrekeysLow, PrekeysStored,
    ReceiptMessage, ReceiptStored, SentStatus, StatusEntry, StatusList, UploadPrekeys,
    UserEntry, UserKey, UserList, Which, fit_list)
from securechat.wire.messages import Message
from securechat.wire.relay import CommandFailed, Reason

if TYPE_CHECKING:
    from securechat.server.relay import Relay
    from securechat.server.session import UserSession


class _Refusal(Exception):
    """A command refused with COMMAND_FAILED(reason)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.name)
        self.reason = reason


class Mailbox:
    """
    The mailbox commands of the relay's logged-in users, on C{store}.
    """

    log = Logger()

    def __init__(self, relay: Relay, store: IMailboxStore) -> None:
        self.relay = relay
        self.store = store
        self.limits = relay.limits
        self.metrics = relay.metrics
        #: Each session's commands not yet answered, in order.
        self._owed: dict[UserSession, AnswerOrder] = {}
        #: The commands that may run together (L{Slot.post}); the groups
        #: add GROUP_POST.
        self.together: tuple[type, ...] = (PostLetter,)
        #: Each user's signed prekey as last verified at its login, with the
        #: key it verified with: the same pair is not verified again.
        self._verified: dict[str, tuple[SignedPrekeyRecord, Any]] = {}
        #: POST_LETTER's checks, and its letters stored a read's run at a time.
        self.letters = LetterPoster(self)

    def handlers(self) -> dict[type, Callable[[UserSession, Any], None]]:
        """The relay's handler for each mailbox message type."""
        commands: dict[type, Callable[[UserSession, Any], Deferred[Message] | Message]] = {
            UploadPrekeys: self._upload_prekeys,
            FetchBundle: self._fetch_bundle,
            GetUserKey: self._get_user_key,
            ListLetters: self._list_letters,
            FetchLetter: self._fetch_letter,
            DeleteLetter: self._delete_letter,
            PostReceipt: self._post_receipt,
            SentStatus: self._sent_status,
            ListUsers: self._list_users,
            GetKeyHistory: self._key_history,
        }

        handlers = {cls: self.in_order(command) for cls, command in commands.items()}
        handlers[PostLetter] = self._post_in_order
        return handlers

    def in_order(self, command: Callable[[UserSession, Any], Deferred[Any] | Message | None]
                 ) -> Callable[[UserSession, Any], None]:
        """
        The relay's handler running C{command} in its session's answer
        order (shared with the group commands): its answer (a message, or
        C{None} for none) goes out after those of the commands before it.
        """
        return lambda session, message: self._answer(session, message, command)

    # -- sessions -----------------------------------------------------------

    def logged_in(self, session: UserSession) -> None:
        """
        After WELCOME: NEW_LETTERS if letters were never fetched, then
        PREKEYS_LOW if the user's stock is low (14.7).  Prekeys signed by
        a key the user no longer has (the operator re-keyed it) are dropped
        first, and the user is told it has none.  All of it from one store
        call (L{IMailboxStore.login_state}), which needs no transaction for
        a user that never used the mailbox.
        """
        user, entry = session.user, session.entry
        assert user is not None and entry is not None

        def found(state: LoginState) -> Deferred[Any] | None:
            if state.new_letters:
                session.deliver(NewLetters(state.new_letters))
            if state.signed is not None and not self._still_signed(state.signed, entry):
                return self._drop_stale(state.signed).addCallback(told)
            self._tell_low(user, state, at_login=True)
            return None

        def told(dropped: bool) -> Deferred[Any] | None:
            if dropped:
                # It had prekeys, so it has a mailbox client: it is told.
                session.deliver(PrekeysLow(0, 0))
                return None
            # A new upload came since: what it left.
            return self.store.login_state(user).addCallback(
                lambda state: self._tell_low(user, state, at_login=True))
        d = self.store.login_state(user).addCallback(found)
        d.addErrback(self.store_failed, session, "reading the mailbox at login")

    def session_ended(self, session: UserSession) -> None:
        """Forget the answers owed to a session that is gone."""
        self._owed.pop(session, None)

    def _still_signed(self, record: SignedPrekeyRecord, entry: DirectoryEntry) -> bool:
        """
        Whether C{record} verifies with C{entry}'s key (L{signed_by_current_key}); a
        login finding the record and the key object that verified at the
        last one is answered from memory (a re-keyed user's entry holds
        another key object, and is verified again).
        """
        known = self._verified.get(entry.name)
        if known is not None and known[0] == record and known[1] is entry.public_key:
            return True
        if not signed_by_current_key(record, entry):
            return False
        self._verified[entry.name] = (record, entry.public_key)
        return True

    def _tell_low(self, user: str, state: LoginState, at_login: bool) -> None:
        """
        Tell C{user}, if online, that its prekey stock is low; at login,
        only a user that has uploaded prekeys before (a client without the
        mailbox is never sent a message it does not know, 14.7).
        """
        signed = state.signed is not None
        if at_login and not signed and not state.one_time:
            return
        if not signed or state.one_time < self.limits.prekey_low_mark:
            self._notify(user, PrekeysLow(state.one_time, 1 if signed else 0))

    def _drop_stale(self, record: SignedPrekeyRecord) -> Deferred[bool]:
        """
        Drop every prekey of C{record.user}, whose signed prekey C{record}
        is not signed by its registered key (the key was changed), unless
        a new one was uploaded since (14.7, "Re-keyed users").
        """
        self.log.info("mailbox: {user}'s prekeys were signed by another key (re-keyed):"
                      " dropping them", user=record.user)
        return self.store.drop_prekeys(record.user, record)

    def _notify(self, user: str, message: Message) -> None:
        target = self.relay.sessions.get(user)
        if target is not None:
            target.deliver(message)
        elif self.relay.router is not None:
            self.relay.router.notify(user, message)

    # -- answers in order ---------------------------------------------------

    def _answer(self, session: UserSession, message: Message,
                command: Callable[[UserSession, Any], Deferred[Any] | Message | None]) -> None:
        order = self._owed.get(session)
        if order is None:
            order = self._owed[session] = AnswerOrder()

        def answered(answer: Message | None) -> None:
            assert order is not None
            order.finish(slot, answer, session.deliver)

        def failed(failure: Failure) -> None:
            if failure.check(_Refusal):
                answered(CommandFailed(message.TYPE, _subject(session, message),
                                       failure.value.reason))
            elif failure.check(StoreUnavailable):
                answered(self.try_again(session, message))
            else:
                self.store_failed(failure, session, type(message).__name__)

        def start() -> None:
            # (Not maybeDeferred and a chain of four callbacks: one pair,
            # and a synchronous answer handled at once; a letter costs
            # fewer objects.)
            try:
                result = command(session, message)
                if not isinstance(result, Deferred):
                    answered(result)
                    return
            except Exception:
                try:
                    failed(Failure())
                except Exception:
                    self.store_failed(Failure(), session, type(message).__name__)
                return
            result.addCallbacks(answered, failed).addErrback(
                self.store_failed, session, type(message).__name__)
        slot = Slot(isinstance(message, self.together), start)
        order.add(slot, session.deliver)
        if not order.owed and self._owed.get(session) is order:
            del self._owed[session]

    def try_again(self, session: UserSession, message: Message) -> Message:
        """
        C{message} refused with TRY_AGAIN: the store cannot be reached
        (14.7); a POST_LETTER (L{LetterPoster}) with LETTER_REFUSED.
        """
        self.metrics.store_unavailable.inc()
        if isinstance(message, PostLetter):
            assert session.user is not None
            return self.letters.refuse(session.user, message, Reason.TRY_AGAIN)
        self.log.info("mailbox: {command} from {user} refused: TRY_AGAIN (the store is "
                      "unavailable)", command=type(message).__name__, user=session.user)
        return CommandFailed(message.TYPE, _subject(session, message), Reason.TRY_AGAIN)

    def store_failed(self, failure: Failure, session: UserSession, what: str) -> None:
        if failure.check(StoreUnavailable):
            # At login (notices, group backlog): the session goes on without.
            self.log.info("mailbox: {what} for {user} skipped: the store is unavailable",
                          what=what, user=session.user)
            return
        if not session.active:
            # The session ended first (the relay is stopping, say): nobody
            # is owed an answer, and a letter not acknowledged is resent.
            self.log.info("mailbox: {what} for {user} ended with the session: {why}",
                          what=what, user=session.user, why=failure.getErrorMessage())
            return
        self.log.failure("mailbox: {what} for {user} failed; closing the connection",
                         failure, what=what, user=session.user)
        self.session_ended(session)
        session.protocol.terminate("internal-error", "the mailbox failed; try again")

    # -- prekeys ------------------------------------------------------------

    def _upload_prekeys(self, session: UserSession, message: UploadPrekeys) -> Deferred[Message]:
        user, entry = session.user, session.entry
        assert user is not None and entry is not None
        try:
            signed, one_time = check_upload(user, entry.public_key, message.signed_prekey,
                                            message.one_time_prekeys)
        except LetterError as e:
            self.log.info("mailbox: prekeys from {user} refused: {code}", user=user, code=e.code)
            raise _Refusal(Reason.BAD_PREKEY) from None
        record = None if signed is None else SignedPrekeyRecord(
            user, signed.prekey_id, signed.public, u16(signed.scheme) + signed.signature,
            signed.created_at)

        def stored(count: int) -> Deferred[Message]:
            self.log.info("mailbox: {user} uploaded prekeys ({count} one-time in stock)",
                          user=user, count=count)
            return self.store.signed_prekeys(user).addCallback(
                lambda current: PrekeysStored(current[0].prekey_id if current else 0, count))

        def failed(failure: Failure) -> Failure:
            failure.trap(PrekeyRefused)
            self.log.info("mailbox: prekeys from {user} refused: {why}", user=user,
                          why=str(failure.value))
            raise _Refusal(Reason.TOO_LARGE if failure.check(StockFull) else Reason.BAD_PREKEY)
        records = [OneTimePrekeyRecord(user, p.prekey_id, p.public) for p in one_time]
        return self.store.upload_prekeys(user, record, records).addCallbacks(stored, failed)

    def _registered(self, name: str) -> DirectoryEntry:
        entry = self.relay.directory.lookup(name)
        if entry is None:
            raise _Refusal(Reason.UNKNOWN_USER)
        return entry

    def _fetch_bundle(self, session: UserSession, message: FetchBundle) -> Deferred[Message]:
        entry = self._registered(message.user)
        if entry.revoked:
            raise _Refusal(Reason.REVOKED)

        def claimed(bundle: PrekeyBundle | None) -> Message | Deferred[Message]:
            if bundle is None:
                raise _Refusal(Reason.NO_PREKEYS)
            if not signed_by_current_key(bundle.signed, entry):
                # Signed by the user's old key: no sender could use it.
                def none(_: bool) -> Message:
                    raise _Refusal(Reason.NO_PREKEYS)
                return self._drop_stale(bundle.signed).addCallback(none)
            if bundle.remaining < self.limits.prekey_low_mark:
                self._notify(bundle.user, PrekeysLow(bundle.remaining, 1))
            one_time = (b"" if bundle.one_time is None
                        else bundle.one_time.prekey_id.to_bytes(4, "big") + bundle.one_time.public)
            return Bundle(entry.name, keys.public_key_der(entry.public_key),
                          uploaded_encoding(bundle.signed), one_time)
        return self.store.claim_bundle(entry.name).addCallback(claimed)

    def _get_user_key(self, session: UserSession, message: GetUserKey) -> Message:
        entry = self._registered(message.user)
        return UserKey(entry.name, keys.public_key_der(entry.public_key), 1 if entry.revoked else 0)

    def _key_history(self, session: UserSession, message: GetKeyHistory) -> Message:
        """The user's replaced keys, newest first, as many as fit max_payload (14.7)."""
        entry = self._registered(message.user)
        room = self.limits.max_payload - len(text8(entry.name)) - 2
        fitted: list[PreviousKeyEntry] = []
        for previous in reversed(entry.history):
            item = PreviousKeyEntry(keys.public_key_der(previous.key), previous.added_at,
                                    previous.replaced_at, previous.compromised_at)
            room -= len(item.encode_body())
            if room < 0 or len(fitted) == MAX_LIST:
                break
            fitted.append(item)
        return KeyHistory(entry.name, tuple(fitted))

    # -- letters ------------------------------------------------------------

    def _post_in_order(self, session: UserSession, message: PostLetter) -> None:
        """
        The relay's handler for POST_LETTER: in its session's answer order
        like every command (L{in_order}), as one L{LetterSlot} run by
        L{LetterPoster} (no closures, no Deferred of its own).
        """
        order = self._owed.get(session)
        if order is None:
            order = self._owed[session] = AnswerOrder()
        order.add(LetterSlot(self.letters, session, order, message), session.deliver)
        if not order.owed and self._owed.get(session) is order:
            del self._owed[session]

    def _list_letters(self, session: UserSession, message: ListLetters) -> Deferred[Message]:
        user = session.user
        assert user is not None

        def listed(found: list[Any]) -> Message:
            if message.which == Which.NEW:
                found = [s for s in found if not s.delivered]
            found.sort(key=lambda s: (-s.stored_at, s.sender.encode(), s.letter_id))
            entries = [LetterEntry(s.sender, s.letter_id, s.stored_at, s.size,
                                   LetterState.READ if s.read else LetterState.FETCHED
                                   if s.delivered else LetterState.NEW)
                       for s in found[message.offset:]]
            fitted = fit_list(entries, len(found), self.relay.limits.max_payload)
            return LetterList(fitted, len(found))  # type: ignore[arg-type]
        return self.store.list_letters(user, False).addCallback(listed)

    def _fetch_letter(self, session: UserSession, message: FetchLetter) -> Deferred[Message]:
        user = session.user
        assert user is not None

        def fetched(record: LetterRecord) -> Deferred[Message]:
            return self.store.mark(user, record.sender, record.letter_id, DELIVERY, None).addCallback(
                lambda _: Letter(record.sender, record.letter_id, record.stored_at,
                                 record.expires_at, record.body))
        return self.store.fetch_letter(user, message.sender, message.letter_id).addCallbacks(
            fetched, _no_letter)

    def _delete_letter(self, session: UserSession, message: DeleteLetter) -> Deferred[Message]:
        user = session.user
        assert user is not None

        def deleted(was_there: bool) -> Message:
            if not was_there:
                raise _Refusal(Reason.NO_LETTER)
            return LetterDeleted(message.sender, message.letter_id)
        return self.store.delete_letter(user, message.sender, message.letter_id).addCallbacks(
            deleted, _no_letter)

    def _post_receipt(self, session: UserSession, message: PostReceipt) -> Deferred[Message]:
        user = session.user
        assert user is not None
        try:
            receipt = check_posted_receipt(message.receipt, message.sender, message.letter_id, user)
        except LetterError as e:
            self.log.info("mailbox: receipt from {user} refused: {code}", user=user, code=e.code)
            raise _Refusal(Reason.BAD_RECEIPT) from None

        def stored(_: int) -> Message:
            self._notify(message.sender, ReceiptMessage(user, message.letter_id, message.receipt))
            return ReceiptStored(message.sender, message.letter_id, receipt.kind)
        return self.store.mark(user, message.sender, message.letter_id, receipt.kind,
                               message.receipt).addCallbacks(stored, _no_letter)

    def _sent_status(self, session: UserSession, message: SentStatus) -> Deferred[Message]:
        user = session.user
        assert user is not None

        def listed(found: list[Any]) -> Message:
            found.sort(key=lambda s: (-s.stored_at, s.recipient.encode(), s.letter_id))
            # delivered_at and read_at are the times the receipts were
            # stored (the store keeps them so), 0 while there is none.
            entries = [StatusEntry(
                s.recipient, s.letter_id, s.stored_at, s.expires_at, s.delivered_at or 0,
                s.read_at or 0, s.delivery_receipt or b"", s.read_receipt or b"")
                for s in found[message.offset:]]
            fitted = fit_list(entries, len(found), self.relay.limits.max_payload)
            return StatusList(fitted, len(found))  # type: ignore[arg-type]
        return self.store.sent_status(user, None).addCallback(listed)

    def _list_users(self, session: UserSession, message: ListUsers) -> Deferred[Message] | Message:
        router = self.relay.router
        if router is not None:  # online on any process
            return router.online().addCallback(lambda names: self._user_list(message, set(names)))
        return self._user_list(message, self.relay.sessions)

    def _user_list(self, message: ListUsers, online: Any) -> Message:
        names = sorted((e.name for e in self.relay.directory.entries() if not e.revoked),
                       key=lambda name: name.encode())
        entries = [UserEntry(name, 1 if name in online else 0) for name in names[message.offset:]]
        fitted = fit_list(entries, len(names), self.relay.limits.max_payload)
        return UserList(fitted, len(names))  # type: ignore[arg-type]


def _no_letter(failure: Failure) -> Failure:
    failure.trap(NoSuchLetter)
    raise _Refusal(Reason.NO_LETTER)


def _subject(session: UserSession, message: Message) -> str:
    """COMMAND_FAILED's subject: the name the message carried (14.6)."""
    for field in ("user", "sender", "recipient"):
        value = getattr(message, field, None)
        if isinstance(value, str):
            return value
    return session.user or ""
