# -*- test-case-name: tests.test_group_store.MemoryGroupStoreTests -*-
"""
An in-memory L{IGroupStore} for protocol tests: the same rules as the
SQLite one, nothing on disk.  Every Deferred it returns has already fired.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from securechat.crypto.groupstate import GroupState
from securechat.server.store.groupinterface import (
    ChangeConflict, GroupRecord, GroupSummary, IGroupStore, NoSuchGroup, StoredGroupMessage)
from securechat.server.store.interface import DAY, StoreError


@dataclass
class _Group:
    state: GroupState
    last_seq: int = 0
    acked: dict[str, int] = field(default_factory=dict)
    log: dict[int, bytes] = field(default_factory=dict)
    messages: dict[int, StoredGroupMessage] = field(default_factory=dict)


@implementer(IGroupStore)
class MemoryGroupStore:
    """
    Everything in dictionaries, keyed as the SQLite tables are; C{shared}
    (L{IGroupStore.shared}) when a test gives one store to several relays.
    """

    def __init__(self, clock: IReactorTime, expiry_seconds: int = 30 * DAY,
                 shared: bool = False) -> None:
        self.shared = shared
        self.clock = clock
        self.expiry_seconds = expiry_seconds
        self._groups: dict[bytes, _Group] = {}
        self._closed = False

    def _now(self) -> int:
        return int(self.clock.seconds())

    def _live(self, group_id: bytes) -> _Group:
        if self._closed:
            raise StoreError("the group store is closed")
        group = self._groups.get(group_id)
        if group is None or group.state.deleted:
            raise NoSuchGroup(f"no group {group_id.hex()}")
        return group

    def load_group(self, group_id: bytes) -> Deferred[GroupRecord | None]:
        group = self._groups.get(group_id)
        if group is None:
            return succeed(None)
        return succeed(GroupRecord(group.state, group.last_seq, dict(group.acked)))

    def commit_change(self, change: bytes, state: GroupState) -> Deferred[None]:
        group = self._groups.get(state.group_id)
        if group is None:
            if state.epoch != 1:
                return fail(ChangeConflict(f"no group {state.group_id.hex()} to change"))
            group = self._groups[state.group_id] = _Group(state)
        elif state.epoch in group.log or group.state.deleted or state.epoch != group.state.epoch + 1:
            return fail(ChangeConflict(f"the log of {state.group_id.hex()} already holds "
                                       f"epoch {state.epoch}"))
        if state.deleted:
            group.state = GroupState(state.group_id, state.name, state.epoch, state.head, {}, True)
            group.acked, group.log, group.messages = {}, {}, {}
            return succeed(None)
        group.state = state
        group.log[state.epoch] = change
        group.acked = {user: group.acked.get(user, group.last_seq) for user in state.members}
        return succeed(None)

    def group_count(self, user: str) -> Deferred[int]:
        return succeed(sum(1 for g in self._groups.values() if user in g.acked))

    def groups_of(self, user: str) -> Deferred[list[GroupSummary]]:
        return succeed([
            GroupSummary(gid, g.state.name, g.state.members[user], g.state.epoch,
                         len(g.state.members), g.acked[user], g.last_seq)
            for gid, g in sorted(self._groups.items()) if user in g.acked])

    def change_log(self, group_id: bytes, after_epoch: int, limit: int) -> Deferred[list[bytes]]:
        group = self._groups.get(group_id)
        if group is None:
            return succeed([])
        return succeed([group.log[e] for e in sorted(group.log) if e > after_epoch][:limit])

    def store_message(self, group_id: bytes, sender: str, body: bytes
                      ) -> Deferred[StoredGroupMessage]:
        try:
            group = self._live(group_id)
        except StoreError as e:
            return fail(e)
        if sender not in group.state.members:
            return fail(NoSuchGroup(f"no group {group_id.hex()} with member {sender}"))
        group.last_seq += 1
        message = StoredGroupMessage(group_id, group.last_seq, sender, self._now(), body)
        group.messages[message.seq] = message
        return succeed(message)

    def messages_after(self, group_id: bytes, after_seq: int, limit: int
                       ) -> Deferred[list[StoredGroupMessage]]:
        group = self._groups.get(group_id)
        if group is None:
            return succeed([])
        return succeed([group.messages[s] for s in sorted(group.messages) if s > after_seq][:limit])

    def ack(self, group_id: bytes, user: str, seq: int) -> Deferred[int]:
        try:
            group = self._live(group_id)
            if user not in group.acked:
                raise NoSuchGroup(f"{user} is not a member of {group_id.hex()}")
        except StoreError as e:
            return fail(e)
        position = group.acked[user] = max(group.acked[user], min(seq, group.last_seq))
        done = min(group.acked.values())
        for s in [s for s in group.messages if s <= done]:
            del group.messages[s]
        return succeed(position)

    def expire(self, now: int) -> Deferred[int]:
        count = 0
        for group in self._groups.values():
            old = [s for s, m in group.messages.items()
                   if m.stored_at + self.expiry_seconds <= now]
            for s in old:
                del group.messages[s]
            count += len(old)
        return succeed(count)

    def close(self) -> Deferred[None]:
        self._closed = True
        return succeed(None)
