# -*- test-case-name: tests.test_group_relay -*-
"""
The relay's side of groups (docs/protocol.rst 15.2, 15.3): L{Groups}
answers the group messages of a logged-in user on the store
(L{securechat.server.store.IGroupStore}) and fans group messages out to
the members' queues.

Rules it keeps:

  - B{Off the hot path.}  Group messages arrive decoded, through
    L{securechat.server.relay.Relay.handle}; RELAY bodies never come here,
    and a group message's body is never parsed.
  - B{Answers in order}, in the session's answer order shared with the
    mailbox (L{securechat.server.mailbox.Mailbox.in_order}); GROUP_POSTs
    run together, every other command waits for those before it.
  - B{Changes checked twice over}: parsed, sent by their actor, signed by
    the actor's registered key, then the membership rules
    (L{securechat.crypto.groupstate.apply_change}) and the relay's limits.
    The next change is checked against the last one accepted even before
    it is committed (so two racing changes cannot both pass); a commit
    that fails forgets the group's cached state.
  - B{Acknowledged after commit}: GROUP_CHANGED and GROUP_POSTED go out
    once the store's Deferred fires.
  - B{Fan-out}: one encoding of each GROUP_MESSAGE, pushed to each online
    member's queue.  A group message never pauses its sender; a member
    whose queue goes over the hard limit is dropped at once, one over the
    soft limit starts its stall timer (L{UserSession.start_stall_timer}).
  - B{In order, from the store}: after login each group's stored messages
    go out page by page (waiting for the queue to drain between pages),
    and live messages for that group are held back (they are in the store)
    until the backlog is out; a member removed is sent nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from securechat.crypto.groupstate import (
    Action, GroupError, GroupState, affected, apply_change, parse_change, verify_change)
from securechat.server.limits import TokenBucket
from securechat.server.store.groupinterface import (
    ChangeConflict, GroupRecord, IGroupStore, NoSuchGroup, StoredGroupMessage)
from securechat.server.store.interface import StoreUnavailable
from securechat.wire.groups import (
    NO_GROUP, ChangeGroup, GetGroupLog, GroupAck, GroupChanged, GroupEntry, GroupList,
    GroupLogPage, GroupMessage, GroupPost, GroupPosted, GroupRefused, ListGroups, LogEntry)
from securechat.wire.messages import INNER_HEADER, Message
from securechat.wire.relay import Reason

if TYPE_CHECKING:
    from securechat.server.relay import Relay
    from securechat.server.session import UserSession

#: The reason for each L{GroupError} code.
_REASONS = {
    "bad-change": Reason.BAD_CHANGE, "stale-change": Reason.STALE_CHANGE,
    "not-member": Reason.NOT_MEMBER, "not-allowed": Reason.NOT_ALLOWED,
    "unknown-group": Reason.UNKNOWN_GROUP, "group-exists": Reason.GROUP_EXISTS,
}
#: Stored messages fetched at a time for a member's backlog.
BACKLOG_PAGE = 64
#: Changes fetched at a time for a GROUP_LOG_PAGE (then cut to fit).
LOG_PAGE = 100


class _Refused(Exception):
    """A group command refused with GROUP_REFUSED(reason)."""

    def __init__(self, reason: Reason, why: str = "") -> None:
        super().__init__(why or reason.name)
        self.reason = reason


@dataclass
class _Live:
    """A group the relay has loaded: its committed state and last seq."""

    state: GroupState
    last_seq: int
    #: The last change accepted, not yet committed: the next change's base.
    pending: GroupState | None = None

    @property
    def base(self) -> GroupState:
        return self.pending or self.state


class Groups:
    """The group commands of the relay's logged-in users, on C{store}."""

    log = Logger()

    def __init__(self, relay: Relay, store: IGroupStore) -> None:
        self.relay = relay
        self.store = store
        self.limits = relay.limits
        self.metrics = relay.metrics
        self._cache: dict[bytes, _Live] = {}
        self._loading: dict[bytes, list[Deferred[_Live | None]]] = {}
        #: Each user's group message rate (all its groups, across connections).
        self._rates: dict[str, TokenBucket] = {}
        #: Per session, the groups delivered live, each with the last seq
        #: sent; a group not in it is still being caught up from the store.
        self._live: dict[UserSession, dict[bytes, int]] = {}
        #: Sessions whose backlogs (one per group) wait for their queue to drain.
        self.waiting: dict[UserSession, list[Callable[[], None]]] = {}

    def handlers(self) -> dict[type, Callable[[UserSession, Any], None]]:
        """The relay's handler for each group message type."""
        mailbox = self.relay.mailbox
        mailbox.together = mailbox.together + (GroupPost,)
        commands: dict[type, Callable[[UserSession, Any], Any]] = {
            ChangeGroup: self._change, GroupPost: self._post, GroupAck: self._ack,
            ListGroups: self._list, GetGroupLog: self._group_log,
        }
        return {cls: mailbox.in_order(self._refusing(command)) for cls, command in commands.items()}

    def _refusing(self, command: Callable[[UserSession, Any], Any]
                  ) -> Callable[[UserSession, Any], Deferred[Any]]:
        """
        C{command} with a L{_Refused} turned into its GROUP_REFUSED, and a
        store that cannot be reached into GROUP_REFUSED(TRY_AGAIN).
        """
        def run(session: UserSession, message: Any) -> Deferred[Any]:
            def refused(failure: Failure) -> Any:
                if failure.check(StoreUnavailable):
                    # (14.7: nothing done; the client may send it again.)
                    reason, why = Reason.TRY_AGAIN, "(the store is unavailable)"
                    self.metrics.store_unavailable.inc()
                else:
                    failure.trap(_Refused)
                    reason, why = failure.value.reason, str(failure.value)
                self.metrics.group_refusals.labels(reason.name.lower()).inc()
                self.log.info("groups: {command} from {user} refused: {reason} {why}",
                              command=type(message).__name__, user=session.user,
                              reason=reason.name, why=why)
                group_id = getattr(message, "group_id", None) or _change_group(message)
                return GroupRefused(group_id, message.TYPE, reason)
            d: Deferred[Any] = Deferred()
            d.addCallback(lambda _: command(session, message)).addErrback(refused)
            d.callback(None)
            return d
        return run

    # -- sessions -----------------------------------------------------------

    def logged_in(self, session: UserSession) -> None:
        """After WELCOME: GROUP_LIST if the user is in a group, then each backlog."""
        user = session.user
        assert user is not None
        self._live[session] = {}

        def listed(summaries: list[Any]) -> None:
            if not summaries or not session.active:
                return
            session.deliver(self._group_list(summaries))
            for summary in summaries:
                self._catch_up(session, summary.group_id, summary.acked)
        d = self.store.groups_of(user).addCallback(listed)
        d.addErrback(self.relay.mailbox.store_failed, session, "listing groups")

    def session_ended(self, session: UserSession) -> None:
        self._live.pop(session, None)
        self.waiting.pop(session, None)

    def drained(self, session: UserSession) -> None:
        """C{session}'s queue drained: a backlog waiting for it goes on."""
        if session.queue is not None and session.queue.bytes <= self.limits.queue_soft_limit // 2:
            for resume in self.waiting.pop(session, ()):
                resume()

    def _group_list(self, summaries: list[Any]) -> GroupList:
        entries, size = [], 2
        for s in summaries:
            entry = GroupEntry(s.group_id, s.name, s.role, s.epoch, s.members)
            size += len(entry.encode_body())
            if size > self.limits.max_payload:
                break
            entries.append(entry)
        return GroupList(tuple(entries))

    def _catch_up(self, session: UserSession, group_id: bytes, after: int) -> None:
        """
        Send C{session} the group's stored messages after C{after} (not its
        own), a page at a time, pausing whenever its queue goes over the
        soft limit until it drained; then deliver the group live.
        """
        user = session.user

        def page(found: list[StoredGroupMessage]) -> None:
            live = self._live.get(session)
            queue = session.queue
            if live is None or queue is None or not session.active:
                return
            last, stopped = after, False
            for message in found:
                if queue.bytes > self.limits.queue_soft_limit:
                    stopped = True
                    break
                last = message.seq
                if message.sender != user:
                    queue.push_encoded(*_encoded(message))
                    self.metrics.group_copies.inc()
            cached = self._cache.get(group_id)
            # An empty page: nothing more is stored now; what is committed
            # after this read comes live.
            if stopped or len(found) == BACKLOG_PAGE or (
                    found and cached is not None and cached.last_seq > last):
                self._when_drained(session, lambda: self._catch_up(session, group_id, last))
            elif cached is None or user in cached.state.members:
                live[group_id] = last
        d = self.store.messages_after(group_id, after, BACKLOG_PAGE).addCallback(page)
        d.addErrback(self.relay.mailbox.store_failed, session, "sending stored group messages")

    def _when_drained(self, session: UserSession, resume: Callable[[], None]) -> None:
        queue = session.queue
        if queue is None or queue.bytes <= self.limits.queue_soft_limit // 2:
            resume()
        else:
            self.waiting.setdefault(session, []).append(resume)

    # -- the cache ----------------------------------------------------------

    def _load(self, group_id: bytes) -> Deferred[_Live | None]:
        live = self._cache.get(group_id)
        if live is not None:
            return succeed(live)
        waiters = self._loading.get(group_id)
        d: Deferred[_Live | None] = Deferred()
        if waiters is not None:
            waiters.append(d)
            return d
        self._loading[group_id] = [d]

        def loaded(record: GroupRecord | None) -> None:
            waiters = self._loading.pop(group_id)
            # A creation accepted meanwhile is in the cache already.
            live = self._cache.get(group_id)
            if live is None and record is not None:
                live = self._cache[group_id] = _Live(record.state, record.last_seq)
            for waiter in waiters:
                waiter.callback(live)

        def failed(failure: Failure) -> None:
            for waiter in self._loading.pop(group_id):
                waiter.errback(failure)
        self.store.load_group(group_id).addCallbacks(loaded, failed)
        return d

    def _member_of(self, session: UserSession, group_id: bytes) -> Deferred[_Live]:
        """The group, if C{session}'s user is a member, else NOT_MEMBER."""
        def check(live: _Live | None) -> _Live:
            if live is None or live.state.deleted or session.user not in live.state.members:
                raise _Refused(Reason.NOT_MEMBER)
            return live
        return self._load(group_id).addCallback(check)

    # -- GROUP_CHANGE -------------------------------------------------------

    def _change(self, session: UserSession, message: ChangeGroup) -> Deferred[Message] | Message:
        user, entry = session.user, session.entry
        assert user is not None and entry is not None
        try:
            change = parse_change(message.change)
        except GroupError as e:
            raise _Refused(Reason.BAD_CHANGE, str(e)) from None
        if change.actor != user:
            raise _Refused(Reason.NOT_ALLOWED, f"a change made by {change.actor}")
        try:
            verify_change(change, entry.public_key)
        except GroupError as e:
            raise _Refused(Reason.BAD_CHANGE, str(e)) from None
        gid = change.group_id
        # Only a creation or an add can take someone past the group limit;
        # its count is read first, the rules checked after (in their order).
        counted = (change.target if change.action == Action.ADD else user
                   if change.action == Action.CREATE else None)
        count: Deferred[int] = (succeed(0) if counted is None
                                else self.store.group_count(counted))

        def rules(found: int) -> Deferred[Message]:
            return self._load(gid).addCallback(accept, found)

        def accept(live: _Live | None, found: int) -> Deferred[Message]:
            base = None if live is None else live.base
            try:
                state = apply_change(base, change)
            except GroupError as e:
                raise _Refused(_REASONS[e.code], str(e)) from None
            if change.action == Action.ADD:
                assert base is not None
                target = self.relay.directory.lookup(change.target)
                if target is None or target.revoked:
                    raise _Refused(Reason.UNKNOWN_USER)
                if len(base.members) >= self.limits.max_group_members:
                    raise _Refused(Reason.GROUP_FULL)
            if counted is not None and found >= self.limits.max_groups_per_user:
                raise _Refused(Reason.TOO_MANY_GROUPS, f"{counted} is in {found} groups")
            if live is None:
                live = self._cache[gid] = _Live(state, 0)
            live.pending = state
            return self.store.commit_change(message.change, state).addCallbacks(
                committed, failed, callbackArgs=(live, base, state))

        def committed(_: None, live: _Live, base: GroupState | None,
                      state: GroupState) -> Message:
            live.state = state
            if live.pending is state:
                live.pending = None
            self.metrics.group_changes.inc()
            self.log.info("groups: {user} made change {epoch} ({action}) of a group",
                          user=user, epoch=state.epoch, action=Action(change.action).name.lower())
            self._changed(session, change.action, base, state, affected(change), message.change,
                          live.last_seq)
            return GroupChanged(message.change)

        def failed(failure: Failure) -> Failure:
            # The cached state may be ahead of the store: load it again.
            self._cache.pop(gid, None)
            if failure.check(ChangeConflict):
                raise _Refused(Reason.GROUP_EXISTS if change.action == Action.CREATE
                               else Reason.STALE_CHANGE, str(failure.value))
            return failure
        return count.addCallback(rules)

    def _changed(self, session: UserSession, action: int, base: GroupState | None,
                 state: GroupState, gone: str | None, change: bytes, last_seq: int) -> None:
        """Tell the others of a committed change; start or stop live delivery."""
        told = set(state.members)
        if action == Action.DELETE and base is not None:
            told |= set(base.members)
        if gone is not None:
            told.add(gone)
        notice = GroupChanged(change)
        sessions = self.relay.sessions
        router = self.relay.router
        for member in sorted(told):
            target = sessions.get(member)
            if target is None:
                if router is not None:
                    router.notify(member, notice)
                continue
            if target is not session:
                target.deliver(notice)
            live = self._live.get(target)
            if live is None:
                continue
            if member in state.members and not state.deleted:
                live.setdefault(state.group_id, last_seq)
            else:
                live.pop(state.group_id, None)

    # -- GROUP_POST and fan-out ---------------------------------------------

    def _post(self, session: UserSession, message: GroupPost) -> Deferred[Message]:
        user = session.user
        assert user is not None

        def post(live: _Live) -> Deferred[Message]:
            if len(message.body) > self.limits.group_message_limit:
                raise _Refused(Reason.GROUP_MESSAGE_TOO_LARGE, f"{len(message.body)} bytes")
            bucket = self._rates.get(user)
            if bucket is None:
                bucket = self._rates[user] = TokenBucket(
                    self.relay.clock, self.limits.group_rate, self.limits.group_burst)
            if bucket.refill() < 1:
                raise _Refused(Reason.GROUP_RATE)
            bucket.tokens -= 1

            def stored(stored: StoredGroupMessage) -> Message:
                live.last_seq = max(live.last_seq, stored.seq)
                self.metrics.group_posts.inc()
                self._fan_out(live, stored)
                return GroupPosted(stored.group_id, stored.seq, stored.stored_at)

            return self.store.store_message(message.group_id, user, message.body).addCallbacks(
                stored, _not_member)
        return self._member_of(session, message.group_id).addCallback(post)

    def _fan_out(self, live: _Live, stored: StoredGroupMessage) -> None:
        """One encoding of the GROUP_MESSAGE, queued for each other member online."""
        encoded = _encoded(stored)
        gid, seq, sender = stored.group_id, stored.seq, stored.sender
        sessions, positions = self.relay.sessions, self._live
        copies, elsewhere = 0, []
        for member in live.state.members:
            if member == sender:
                continue
            target = sessions.get(member)
            if target is None:
                elsewhere.append(member)
                continue
            delivered = positions.get(target)
            if delivered is None or delivered.get(gid, seq) >= seq:
                continue  # catching up from the store, or sent already
            delivered[gid] = seq
            self._push(target, encoded)
            copies += 1
        self.metrics.group_copies.inc(copies)
        if elsewhere and self.relay.router is not None:  # once per process with members
            self.relay.router.fan_out(elsewhere, encoded[1])

    def _push(self, target: UserSession, encoded: tuple[bytes, bytes]) -> None:
        """
        Queue one GROUP_MESSAGE for C{target}, which is dropped if that takes
        its queue over the hard limit; over the soft limit its stall timer
        starts.  The sender is never paused.
        """
        queue = target.queue
        if queue is None or not target.active:
            return
        queue.push_encoded(*encoded)
        if queue.bytes > self.limits.queue_hard_limit:
            self.relay.drop_slow_reader(
                target, f"outbound queue over {self.limits.queue_hard_limit} bytes (group)")
        elif queue.bytes > self.limits.queue_soft_limit:
            target.start_stall_timer()

    # -- GROUP_ACK, LIST_GROUPS, GROUP_LOG ----------------------------------

    def _ack(self, session: UserSession, message: GroupAck) -> Deferred[None]:
        user = session.user
        assert user is not None

        def ack(live: _Live) -> Deferred[None]:
            return self.store.ack(message.group_id, user, message.seq).addCallbacks(
                lambda _: None, _not_member)
        return self._member_of(session, message.group_id).addCallback(ack)

    def _list(self, session: UserSession, message: ListGroups) -> Deferred[Message]:
        assert session.user is not None
        return self.store.groups_of(session.user).addCallback(self._group_list)

    def _group_log(self, session: UserSession, message: GetGroupLog) -> Deferred[Message]:
        gid = message.group_id

        def fetch(live: _Live) -> Deferred[Message]:
            return self.store.change_log(gid, message.after_epoch, LOG_PAGE + 1).addCallback(page)

        def page(changes: list[bytes]) -> Message:
            size, entries = 16 + 2 + 1, []
            for change in changes[:LOG_PAGE]:
                size += 4 + len(change)
                if size > self.limits.max_payload:
                    break
                entries.append(LogEntry(change))
            return GroupLogPage(gid, tuple(entries), 1 if len(entries) < len(changes) else 0)
        return self._member_of(session, gid).addCallback(fetch)


def _not_member(failure: Failure) -> Any:
    """The group was deleted, or the user removed, meanwhile: NOT_MEMBER."""
    failure.trap(NoSuchGroup)
    raise _Refused(Reason.NOT_MEMBER)


def _encoded(stored: StoredGroupMessage) -> tuple[bytes, bytes]:
    """A GROUP_MESSAGE's inner header and body, encoded once."""
    body = GroupMessage(stored.group_id, stored.seq, stored.sender, stored.stored_at,
                        stored.body).encode_body()
    return INNER_HEADER.pack(GroupMessage.TYPE, len(body)), body


def _change_group(message: Any) -> bytes:
    """The group id of a GROUP_CHANGE's change, or 16 zero bytes if it does not parse."""
    try:
        return parse_change(getattr(message, "change", b"")).group_id
    except GroupError:
        return NO_GROUP
