# -*- test-case-name: tests.test_group_store -*-
"""
The group store on SQL, either engine: the tables of schema step 4
(L{securechat.server.store.schema}) in the mailbox's database, through the
same database (SQLite's L{Database}, one connection, writes serialised;
or L{securechat.server.store.postgres.PostgresDatabase}, serializable
transactions).  Every transaction
is a plain function C{f(txn, ...)} below, run by
L{Database.runInteraction}; they read no clock (the time is an argument).
The mailbox store owns the database and closes it.

B{Group commit.}  As for letters, C{store_message} does not start a
transaction per call: the messages of one reactor turn, and all those that
arrive while a commit is in flight, are stored by one
C{store-group-messages} transaction, and each call's Deferred fires only
after it committed (all in the same turn, so the relay fans them out
together and each member's queue is sealed and written once for them).  A
message for a group deleted meanwhile fails alone (L{NoSuchGroup}); if the
transaction fails, every message in it fails and none is stored.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from securechat.crypto.groupstate import GroupState
from securechat.server.store.groupinterface import (
    ChangeConflict, GroupRecord, GroupSummary, IGroupStore, NoSuchGroup, StoredGroupMessage)
from securechat.server.store.interface import DAY, StoreError, StoreUnavailable
from securechat.server.store.sqlstore import SQLDatabase


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


def store_messages_txn(txn: Any, messages: list[tuple[bytes, str, bytes]],
                       now: int) -> list[StoredGroupMessage | NoSuchGroup]:
    """Store each message in turn; one for a deleted group is its error, not the batch's."""
    out: list[StoredGroupMessage | NoSuchGroup] = []
    for group_id, sender, body in messages:
        try:
            out.append(store_message_txn(txn, group_id, sender, body, now))
        except NoSuchGroup as e:
            out.append(e)
    return out


def messages_after_txn(txn: Any, group_id: bytes, after_seq: int,
                       limit: int) -> list[StoredGroupMessage]:
    txn.execute("SELECT seq, sender, stored_at, body FROM group_messages"
                " WHERE group_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (group_id, after_seq, limit))
    return [StoredGroupMessage(group_id, r[0], r[1], r[2], bytes(r[3])) for r in txn.fetchall()]


def ack_txn(txn: Any, group_id: bytes, user: str, seq: int) -> int:
    # (No two-argument MAX/MIN: the SQL runs on both engines.)
    txn.execute("SELECT last_seq FROM groups WHERE group_id = ?", (group_id,))
    row = txn.fetchone()
    upto = min(seq, int(row[0])) if row is not None else seq
    txn.execute("UPDATE group_members SET acked = CASE WHEN acked < ? THEN ? ELSE acked END"
                " WHERE group_id = ? AND user = ?", (upto, upto, group_id, user))
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
    """L{IGroupStore} on the mailbox's database; messages are group-committed."""

    log = Logger()

    def __init__(self, db: SQLDatabase, clock: IReactorTime, expiry_seconds: int = 30 * DAY) -> None:
        self.db = db
        self.clock = clock
        self.expiry_seconds = expiry_seconds
        self._closed = False
        #: Messages waiting for the next group commit, with their Deferreds.
        self._pending: list[tuple[tuple[bytes, str, bytes], Deferred[StoredGroupMessage]]] = []
        self._flush_call: IDelayedCall | None = None
        self._in_flight = False

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
        if self._closed:
            return fail(StoreError("the group store is closed"))
        d: Deferred[StoredGroupMessage] = Deferred()
        self._pending.append(((group_id, sender, body), d))
        self._schedule()
        return d

    def _schedule(self) -> None:
        if self._pending and self._flush_call is None and not self._in_flight:
            # At the end of this reactor turn: the turn's messages share it.
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._in_flight = True
        d = self.db.runInteraction("store-group-messages", store_messages_txn,
                                   [message for message, _ in batch], int(self.clock.seconds()))
        d.addBoth(self._committed, batch)

    def _committed(self, result: list[StoredGroupMessage | NoSuchGroup] | Failure,
                   batch: list[tuple[tuple[bytes, str, bytes], Deferred[StoredGroupMessage]]]
                   ) -> None:
        self._in_flight = False
        # What arrived meanwhile goes to the pool thread now, in this callback.
        if self._pending and self._flush_call is None:
            self._flush()
        if isinstance(result, Failure) and not result.check(StoreUnavailable):
            self.log.failure("storing {count} group messages failed; none was acknowledged",
                             result, count=len(batch))
        for i, (_, d) in enumerate(batch):
            outcome = result if isinstance(result, Failure) else result[i]
            if isinstance(outcome, StoredGroupMessage):
                d.callback(outcome)
            else:
                d.errback(outcome)
        self._schedule()

    def messages_after(self, group_id: bytes, after_seq: int, limit: int
                       ) -> Deferred[list[StoredGroupMessage]]:
        return self._run("group-messages", messages_after_txn, group_id, after_seq, limit)

    def ack(self, group_id: bytes, user: str, seq: int) -> Deferred[int]:
        return self._run("group-ack", ack_txn, group_id, user, seq)

    def expire(self, now: int) -> Deferred[int]:
        return self._run("expire-group-messages", expire_txn, now - self.expiry_seconds)

    def close(self) -> Deferred[None]:
        self._closed = True
        if self._flush_call is not None:
            # Commit what is waiting (its callers are answered).
            self._flush_call.cancel()
            self._flush()
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d
