# -*- test-case-name: tests.test_group_store -*-
"""
The group store's interface and its values (issue 15; docs/protocol.rst
15.3): each group's log of signed changes, the state they give (name,
epoch, head, members with their roles), and its stored messages with each
member's acknowledged position.

Rules every implementation keeps (C{tests.test_group_store} checks them):

  - B{The log and the state move together.}  L{IGroupStore.commit_change}
    appends a change at the next epoch and makes the stored state the one
    given, in one transaction; a change for an epoch already in the log is
    refused with L{ChangeConflict} and changes nothing.  The relay checks
    the rules (L{securechat.crypto.groupstate.apply_change}) before; the
    store trusts the state it is given.
  - B{Joining starts at the last message.}  A member added is stored with
    its acknowledged position at the group's last seq: it never receives a
    message posted before it joined.  A member removed loses its position
    (nothing of the group is kept for it).
  - B{Messages are numbered 1, 2, 3, ...} per group, in the order they
    are stored, and kept until every member acknowledged them (or they
    expire); an acknowledgement never moves a position back nor past the
    last seq.
  - B{A deleted group} keeps only its id (so it is not created again): its
    members, messages and log are gone.
  - B{Acknowledged after commit}, as the mailbox's: every Deferred fires
    once its transaction committed.

Times are whole Unix seconds from the store's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from securechat.crypto.groupstate import GroupState
from securechat.server.store.interface import StoreError


class ChangeConflict(StoreError):
    """
    The log already holds a change at that epoch (another change was
    committed first): the relay answers STALE_CHANGE.
    """


class NoSuchGroup(StoreError):
    """The group does not exist, or was deleted."""


@dataclass(frozen=True)
class GroupRecord:
    """
    A group as stored: its state, its last message's seq (0 before the
    first), and each member's acknowledged seq.
    """

    state: GroupState
    last_seq: int
    acked: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """One of a user's groups, with the user's role and position."""

    group_id: bytes
    name: str
    role: int
    epoch: int
    members: int
    acked: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class StoredGroupMessage:
    """A stored group message; C{body} is opaque to the store."""

    group_id: bytes
    seq: int
    sender: str
    stored_at: int
    body: bytes


class IGroupStore(Interface):
    """
    Groups, their logs and their messages, durably.  Every method returns
    a Deferred; a refusal is an errback with a L{StoreError}.
    """

    shared = Attribute(
        "Whether other relay processes write this store too (PostgreSQL): then"
        " nothing read from it may be answered from memory later (no group"
        " state kept between commands, no login answered without a read).")

    def load_group(group_id: bytes) -> Deferred[GroupRecord | None]:
        """
        The group, or C{None} if it was never created.  A deleted group
        has C{state.deleted} true and no members.
        """

    def commit_change(change: bytes, state: GroupState) -> Deferred[None]:
        """
        Append C{change} (as signed) to the log at C{state.epoch} and make
        the stored state C{state} (for a creation, make the group).  Fails
        with L{ChangeConflict}, storing nothing, if the log already holds a
        change at that epoch.
        """

    def group_count(user: str) -> Deferred[int]:
        """How many groups C{user} is a member of."""

    def groups_of(user: str) -> Deferred[list[GroupSummary]]:
        """C{user}'s groups, in ascending order of group id bytes."""

    def change_log(group_id: bytes, after_epoch: int, limit: int) -> Deferred[list[bytes]]:
        """
        Up to C{limit} changes after C{after_epoch}, in epoch order (empty
        for a deleted or unknown group).
        """

    def store_message(group_id: bytes, sender: str, body: bytes) -> Deferred[StoredGroupMessage]:
        """
        Store one message as the group's next seq; L{NoSuchGroup} if the
        group does not exist, was deleted, or C{sender} is not a member of
        it as committed (checked in the same transaction: several relay
        processes may share the store, and one's view may be late).
        """

    def messages_after(group_id: bytes, after_seq: int, limit: int
                       ) -> Deferred[list[StoredGroupMessage]]:
        """Up to C{limit} stored messages after C{after_seq}, in seq order."""

    def ack(group_id: bytes, user: str, seq: int) -> Deferred[int]:
        """
        Move C{user}'s acknowledged position up to C{seq} (never back,
        never past the last seq) and forget the messages every member
        acknowledged; fire with the position.  L{NoSuchGroup} if C{user}
        is not a member.
        """

    def expire(now: int) -> Deferred[int]:
        """Delete messages stored C{expiry} seconds or more before C{now}; fire with the count."""

    def close() -> Deferred[None]:
        """Refuse further calls (the mailbox store owns a shared database)."""
