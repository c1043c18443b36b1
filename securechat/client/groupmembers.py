# -*- test-case-name: tests.test_client_groups -*-
"""
Who was a member of one group at which epoch, as the client's group layer
needs it to check group messages and distributions (docs/protocol.rst,
16.2 and 16.4): the membership the client took from the group's I{verified}
change log (section 15), never the relay's word.

The group layer is fed L{MembershipChange}s (one per verified change, in
epoch order) or a snapshot (the members at an epoch, when this client
joined a group whose earlier history it does not replay).  It keeps, per
user, the epochs from which and until which it was a member, and the
epochs of every removal or leave (the I{rekey epochs} of 16.4 step 7).
Epochs before the first one it knows (C{base}) are unknown.

Pure: no IO.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable


class Action(enum.IntEnum):
    """The actions of a group change (section 15)."""

    CREATE = 1
    ADD = 2
    REMOVE = 3
    LEAVE = 4
    SET_ROLE = 5
    TRANSFER_OWNER = 6
    RENAME = 7
    DELETE = 8


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """
    One verified change, as the group layer needs it: its epoch, action,
    actor and target (empty when none).
    """

    epoch: int
    action: Action
    actor: str
    target: str = ""


class Membership:
    """
    One group's membership history (see the module docstring).  C{spans}
    maps a user to its membership spans C{[first epoch, epoch it ended or
    None]}.
    """

    def __init__(self, base: int, members: Iterable[str]) -> None:
        self.base = base
        self.head = base
        self.spans: dict[str, list[list[int | None]]] = {m: [[base, None]] for m in members}
        self.rekeys: list[int] = []
        self.deleted = False

    @classmethod
    def created(cls, change: MembershipChange) -> Membership:
        """The history of a group from its creation (epoch 1, the actor alone)."""
        return cls(change.epoch, [change.actor])

    def apply(self, change: MembershipChange) -> None:
        """
        Take the next verified change.

        @raise ValueError: a change that does not extend the head (the
            caller feeds verified changes in order; this is its mistake).
        """
        if change.epoch != self.head + 1:
            raise ValueError(f"change of epoch {change.epoch} after epoch {self.head}")
        self.head = change.epoch
        if change.action == Action.ADD and not self.member_at(change.target, change.epoch):
            self.spans.setdefault(change.target, []).append([change.epoch, None])
        elif change.action in (Action.REMOVE, Action.LEAVE):
            who = change.target if change.action == Action.REMOVE else (change.target or change.actor)
            for span in self.spans.get(who, []):
                if span[1] is None:
                    span[1] = change.epoch
            self.rekeys.append(change.epoch)
        elif change.action == Action.DELETE:
            self.deleted = True

    def known(self, epoch: int) -> bool:
        """Whether this history covers C{epoch}."""
        return self.base <= epoch <= self.head

    def member_at(self, user: str, epoch: int) -> bool:
        """Whether C{user} was a member at C{epoch} (a known one)."""
        return any(start is not None and start <= epoch and (end is None or epoch < end)
                   for start, end in self.spans.get(user, []))

    def members(self) -> list[str]:
        """The members at the head epoch, sorted."""
        return sorted(u for u in self.spans if self.member_at(u, self.head))

    def rekey_epoch(self, epoch: int) -> int:
        """The latest removal or leave at or before C{epoch} (0 if none)."""
        return max((e for e in self.rekeys if e <= epoch), default=0)

    def to_record(self) -> dict[str, Any]:
        return {"base": self.base, "head": self.head, "spans": self.spans, "rekeys": self.rekeys,
                "deleted": self.deleted}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Membership:
        m = cls(int(record["base"]), [])
        m.head = int(record["head"])
        m.spans = {str(u): [[s, e] for s, e in spans] for u, spans in record["spans"].items()}
        m.rekeys = [int(e) for e in record["rekeys"]]
        m.deleted = bool(record["deleted"])
        return m
