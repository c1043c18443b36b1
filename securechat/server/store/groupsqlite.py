# -*- test-case-name: tests.test_group_store.SQLiteGroupStoreTests -*-
"""
The group store on SQLite: the tables of schema step 4
(L{securechat.server.store.engine}) in the mailbox's database, through the
same L{Database} (one connection, writes serialised).  Every transaction
is a plain function C{f(txn, ...)} below, run by
L{Database.runInteraction}; they read no clock (the time is an argument).
The mailbox store owns the database and closes it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from securechat.crypto.groupstate import GroupState
from securechat.server.store.engine import Database
from securechat.server.store.groupinterface import (
    ChangeConflict, GroupRecord, GroupSummary, IGroupStore, NoSuchGroup, StoredGroupMessage)
from securechat.server.store.interface import DAY, StoreError


def load_group_txn(txn: Any, group_id: bytes) -> GroupRecord | None:
    txn.execute("SELECT name, epoch, head, last_seq, deleted FROM groups WHERE group_id = ?",
                (group_id,))
    row = txn.fetchone()
    if row is None:
        return None
    txn.execute("SELECT user, role, acked FROM group_members WHERE group_id = ?", (group_id,))
    members = txn.fetchall()
    state = GroupState(group_id, row[0], row[1], bytes(row[2]),
                       {m[0]: m[1] for m in members}, bool(row[4]))
    return GroupRecord(state, row[3], {m[0]: m[2] for m in members})


def commit_change_txn(txn: Any, change: bytes, state: GroupState) -> None:
    gid = state.group_id
    txn.execute("SELECT epoch, last_seq, deleted FROM groups WHERE group_id = ?", (gid,))
    row = txn.fetchone()
    if row is None and state.epoch == 1:
        txn.execute("INSERT INTO groups (group_id, name, epoch, head) VALUES (?, ?, ?, ?)",
                    (gid, state.name, state.epoch, state.head))
        last_seq = 0
    elif row is None or row[2] or row[0] + 1 != state.epoch:
        raise ChangeConflict(f"the log of {gid.hex()} does not end at epoch {state.epoch - 1}")
    else:
        last_seq = row[1]
    if state.deleted:
        txn.execute("UPDATE groups SET epoch = ?, head = ?, deleted = 1 WHERE group_id = ?",
                    (state.epoch, state.head, gid))
        for table in ("group_changes", "group_members", "group_messages"):
            txn.execute(f"DELETE FROM {table} WHERE group_id = ?", (gid,))
        return
    txn.execute("UPDATE groups SET name = ?, epoch = ?, head = ? WHERE group_id = ?",
                (state.name, state.epoch, state.head, gid))
    txn.execute("INSERT INTO group_changes (group_id, epoch, change) VALUES (?, ?, ?)",
                (gid, state.epoch, change))
    txn.execute("SELECT user, role FROM group_members WHERE group_id = ?", (gid,))
    before = dict(txn.fetchall())
    for user in before:
        if user not in state.members:
            txn.execute("DELETE FROM group_members WHERE group_id = ? AND user = ?", (gid, user))
    for user, role in state.members.items():
        if user not in before:
            txn.execute("INSERT INTO group_members (group_id, user, role, acked)"
                        " VALUES (?, ?, ?, ?)", (gid, user, int(role), last_seq))
        elif before[user] != role:
            txn.execute("UPDATE group_members SET role = ? WHERE group_id = ? AND user = ?",
                        (int(role), gid, user))


def groups_of_txn(txn: Any, user: str) -> list[GroupSummary]:
    txn.execute("SELECT g.group_id, g.name, m.role, g.epoch,"
                " (SELECT COUNT(*) FROM group_members c WHERE c.group_id = g.group_id),"
                " m.acked, g.last_seq FROM group_members m JOIN groups g USING (group_id)"
                " WHERE m.user = ? ORDER BY g.group_id", (user,))
    return [GroupSummary(bytes(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in txn.fetchall()]


def group_count_txn(txn: Any, user: str) -> int:
    txn.execute("SELECT COUNT(*) FROM group_members WHERE user = ?", (user,))
    return int(txn.fetchone()[0])


def change_log_txn(txn: Any, group_id: bytes, after_epoch: int, limit: int) -> list[bytes]:
    txn.execute("SELECT change FROM group_changes WHERE group_id = ? AND epoch > ?"
                " ORDER BY epoch LIMIT ?", (group_id, after_epoch, limit))
    return [bytes(r[0]) for r in txn.fetchall()]


def store_message_txn(txn: Any, group_id: bytes, sender: str, body: bytes,
                      now: int) -> StoredGroupMessage:
    txn.execute("UPDATE groups SET last_seq = last_seq + 1 WHERE group_id = ? AND deleted = 0",
                (group_id,))
    if txn.rowcount != 1:
        raise NoSuchGroup(f"no group {group_id.hex()}")
    txn.execute("SELECT last_seq FROM groups WHERE group_id = ?", (group_id,))
    seq = int(txn.fetchone()[0])
    txn.execute("INSERT INTO group_messages (group_id, seq, sender, stored_at, body)"
                " VALUES (?, ?, ?, ?, ?)", (group_id, seq, sender, now, body))
    return StoredGroupMessage(group_id, seq, sender, now, body)


def messages_after_txn(txn: Any, group_id: bytes, after_seq: int,
                       limit: int) -> list[StoredGroupMessage]:
    txn.execute("SELECT seq, sender, stored_at, body FROM group_messages"
                " WHERE group_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (group_id, after_seq, limit))
    return [StoredGroupMessage(group_id, r[0], r[1], r[2], bytes(r[3])) for r in txn.fetchall()]


def ack_txn(txn: Any, group_id: bytes, user: str, seq: int) -> int:
    txn.execute("UPDATE group_members SET acked = MAX(acked, MIN(?, (SELECT last_seq FROM groups"
                " WHERE group_id = ?))) WHERE group_id = ? AND user = ?",
                (seq, group_id, group_id, user))
    if txn.rowcount != 1:
        raise NoSuchGroup(f"{user} is not a member of {group_id.hex()}")
    txn.execute("DELETE FROM group_messages WHERE group_id = ? AND seq <="
                " (SELECT MIN(acked) FROM group_members WHERE group_id = ?)", (group_id, group_id))
    txn.execute("SELECT acked FROM group_members WHERE group_id = ? AND user = ?",
                (group_id, user))
    return int(txn.fetchone()[0])


def expire_txn(txn: Any, before: int) -> int:
    txn.execute("DELETE FROM group_messages WHERE stored_at <= ?", (before,))
    return int(txn.rowcount)


@implementer(IGroupStore)
class SQLiteGroupStore:
    """L{IGroupStore} on the mailbox's L{Database}."""

    def __init__(self, db: Database, clock: IReactorTime, expiry_seconds: int = 30 * DAY) -> None:
        self.db = db
        self.clock = clock
        self.expiry_seconds = expiry_seconds
        self._closed = False

    def _run(self, description: str, f: Any, *args: Any) -> Deferred[Any]:
        if self._closed:
            return fail(StoreError("the group store is closed"))
        return self.db.runInteraction(description, f, *args)

    def load_group(self, group_id: bytes) -> Deferred[GroupRecord | None]:
        return self._run("load-group", load_group_txn, group_id)

    def commit_change(self, change: bytes, state: GroupState) -> Deferred[None]:
        return self._run("commit-group-change", commit_change_txn, change, state)

    def group_count(self, user: str) -> Deferred[int]:
        return self._run("group-count", group_count_txn, user)

    def groups_of(self, user: str) -> Deferred[list[GroupSummary]]:
        return self._run("groups-of", groups_of_txn, user)

    def change_log(self, group_id: bytes, after_epoch: int, limit: int) -> Deferred[list[bytes]]:
        return self._run("group-log", change_log_txn, group_id, after_epoch, limit)

    def store_message(self, group_id: bytes, sender: str, body: bytes
                      ) -> Deferred[StoredGroupMessage]:
        return self._run("store-group-message", store_message_txn, group_id, sender, body,
                         int(self.clock.seconds()))

    def messages_after(self, group_id: bytes, after_seq: int, limit: int
                       ) -> Deferred[list[StoredGroupMessage]]:
        return self._run("group-messages", messages_after_txn, group_id, after_seq, limit)

    def ack(self, group_id: bytes, user: str, seq: int) -> Deferred[int]:
        return self._run("group-ack", ack_txn, group_id, user, seq)

    def expire(self, now: int) -> Deferred[int]:
        return self._run("expire-group-messages", expire_txn, now - self.expiry_seconds)

    def close(self) -> Deferred[None]:
        self._closed = True
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d
