# -*- test-case-name: tests.test_client_groups -*-
"""
The client's end-to-end group layer (docs/protocol.rst, section 16), sans
IO: L{GroupKeys} keeps our sending chain and the other members' chains per
group, decides when to make a new chain, and turns what arrives into view
events.  It sends nothing itself: each call returns a L{GroupOutput} whose
C{effects} the caller carries out, in order, and whose C{events} it shows:

  - L{SendKey}: seal C{content} in a letter of content type 2 to
    C{recipient} and post it (the mailbox, section 14), then call
    L{GroupKeys.key_handed_over} with its C{owed_id} once the sealed letter
    is kept in the letters file (the mailbox posts it again from there);
    until then the distribution is kept as owed, and L{GroupKeys.owed_keys}
    (called after each login) hands it out again;
  - L{PostBody}: send GROUP_POST(group_id, body) (section 15).

Inputs, all from the caller:

  - L{GroupKeys.created}, L{GroupKeys.joined}, L{GroupKeys.changed}: the
    group's I{verified} changes (section 15), in epoch order, or the
    members at the epoch this client joined;
  - L{GroupKeys.send}: the user's line for a group;
  - L{GroupKeys.key_arrived}: the content of an opened letter of content
    type 2 (14.4 has checked the sender's signature) and its sender;
  - L{GroupKeys.message_arrived}: a GROUP_MESSAGE's fields.

Rules it keeps (16.4, 16.5):

  - before our first message, and before the next one after a member was
    removed or left, or when the chain is exhausted, it makes a new chain
    at the head epoch and hands it to every other member at that epoch
    (never to one who left); a member who is added gets our chain at its
    current counter only;
  - our chain is stored at its next counter before the sealed body is
    handed out to be posted;
  - a message is shown as text only once its sender was a member at its
    epoch, its signature verified and it decrypted; a message whose chain
    has not come is shown as waiting for the sender's key and opened when
    it comes; gaps, late messages and every refusal are shown as such;
  - a distribution or message for a group or an epoch the log has not
    reached yet waits (at most L{MAX_PENDING}; the oldest message is then
    given up, and shown) until the log reaches it;
  - when we are removed, leave, or the group is deleted, every chain of the
    group is forgotten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Union

from securechat.client.groupmembers import Action, Membership, MembershipChange
from securechat.client.groupstore import GroupKeyStore
from securechat.crypto.senderkeys import (
    GroupKeyError,
    GroupMessage,
    Random,
    SenderChain,
    check_envelope,
    parse_distribution,
    parse_group_message,
)
from securechat.crypto.senderstate import Held, Opened, Released, SenderKeyState

#: The most distributions and messages kept waiting for the group's log.
MAX_PENDING = 1000


# -- what the caller does -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SendKey:
    """
    Seal C{content} in a letter of content type 2 to C{recipient}, and post
    it; then L{GroupKeys.key_handed_over}(C{owed_id}).
    """

    group_id: bytes
    recipient: str
    content: bytes
    owed_id: int = 0


@dataclass(frozen=True, slots=True)
class PostBody:
    """Send GROUP_POST(group_id, body)."""

    group_id: bytes
    body: bytes


Effect = Union[SendKey, PostBody]


# -- what the view shows ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GroupText:
    """A message that opened: C{late} when it arrived out of order."""

    group_id: bytes
    sender: str
    seq: int
    stored_at: int
    sent_at: int
    text: str
    late: bool = False
    kind: str = "message"


@dataclass(frozen=True, slots=True)
class WaitingForKey:
    """A message held until C{sender}'s key comes ("waiting for bob's key")."""

    group_id: bytes
    sender: str
    seq: int
    stored_at: int
    kind: str = "waiting"


@dataclass(frozen=True, slots=True)
class GroupGap:
    """C{count} messages of C{sender} (from counter C{first}) have not arrived."""

    group_id: bytes
    sender: str
    first: int
    count: int
    kind: str = "gap"


@dataclass(frozen=True, slots=True)
class GroupFailure:
    """
    A message (C{seq} > 0) or a distribution (C{seq} 0) refused, with its
    code (16.6); nothing of it is shown as text.
    """

    group_id: bytes
    sender: str
    seq: int
    stored_at: int
    code: str
    detail: str
    kind: str = "failed"


Event = Union[GroupText, WaitingForKey, GroupGap, GroupFailure]


@dataclass(slots=True)
class GroupOutput:
    """What one call asks of the caller: effects to carry out, events to show."""

    effects: list[Effect] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def extend(self, other: GroupOutput) -> None:
        self.effects.extend(other.effects)
        self.events.extend(other.events)


class GroupKeys:
    """
    The group layer of one user (see the module docstring).
    """

    def __init__(self, user: str, store: GroupKeyStore, *, random: Random = os.urandom,
                 max_pending: int = MAX_PENDING) -> None:
        self.user = user
        self.store = store
        self.random = random
        self.max_pending = max_pending

    # -- membership -----------------------------------------------------------

    def _membership(self, group_id: bytes) -> Membership | None:
        record = self.store.membership(group_id)
        return None if record is None else Membership.from_record(record)

    def members(self, group_id: bytes) -> list[str]:
        """The members at the head epoch this client knows (empty if none)."""
        membership = self._membership(group_id)
        return [] if membership is None else membership.members()

    def created(self, group_id: bytes, change: MembershipChange) -> GroupOutput:
        """We learnt a group from its creation (a change of epoch 1)."""
        return self._start(group_id, Membership.created(change))

    def joined(self, group_id: bytes, epoch: int, members: list[str]) -> GroupOutput:
        """
        We learnt a group at C{epoch} with C{members} (ourselves among
        them), without its earlier history: epochs before it are unknown.
        """
        return self._start(group_id, Membership(epoch, members))

    def _start(self, group_id: bytes, membership: Membership) -> GroupOutput:
        if self.store.membership(group_id) is not None:
            raise ValueError("this group is already known")
        self.store.save_membership(group_id, membership.to_record())
        return self._release_pending(group_id)

    def changed(self, group_id: bytes, change: MembershipChange) -> GroupOutput:
        """
        The next verified change of a group we know: rotation, keys for a
        new member, forgetting the group (16.5).

        @raise GroupKeyError: C{unknown-group}.
        """
        membership = self._membership(group_id)
        if membership is None:
            raise GroupKeyError("unknown-group", "a change for a group this client does not know")
        membership.apply(change)
        out = GroupOutput()
        gone = change.target if change.action == Action.REMOVE else (change.target or change.actor)
        if change.action == Action.DELETE or (
                change.action in (Action.REMOVE, Action.LEAVE) and gone == self.user):
            self.store.forget_group(group_id)
            return out
        self.store.save_membership(group_id, membership.to_record())
        if change.action == Action.ADD and change.target != self.user:
            chain = self._own_chain(group_id, membership)
            if chain is not None:
                content = chain.distribution().encode()
                owed_id = self.store.add_owed(group_id, change.target, content)
                out.effects.append(SendKey(group_id, change.target, content, owed_id))
        out.extend(self._release_pending(group_id))
        return out

    # -- sending --------------------------------------------------------------

    def send(self, group_id: bytes, content: bytes, sent_at: int) -> GroupOutput:
        """
        Seal a text message for a group: a new chain first if we need one
        (with its distributions), then the body to post.

        @raise GroupKeyError: C{unknown-group}, C{not-member},
            C{message-too-large} (nothing is sent, no counter is used).
        """
        membership = self._membership(group_id)
        if membership is None:
            raise GroupKeyError("unknown-group", "this client does not know that group")
        if not membership.member_at(self.user, membership.head):
            raise GroupKeyError("not-member", "we are not a member of that group")
        out = GroupOutput()
        chain = self._own_chain(group_id, membership)
        owed: list[tuple[str, bytes]] = []
        if chain is None:
            record = self.store.own_chain(group_id)
            chain = SenderChain.create(group_id, self.user, membership.head,
                                       avoid=0 if record is None else int(record["chain_id"]),
                                       random=self.random)
            dist = chain.distribution().encode()
            owed = [(member, dist) for member in membership.members() if member != self.user]
        sealed = chain.seal(content, epoch=membership.head, sent_at=sent_at)
        ids = self.store.save_own_chain(group_id, chain.to_record(), owed)
        out.effects.extend(SendKey(group_id, r, c, i) for (r, c), i in zip(owed, ids))
        out.effects.append(PostBody(group_id, sealed.encode()))
        return out

    def key_handed_over(self, owed_id: int) -> None:
        """
        The letter carrying the L{SendKey} C{owed_id} is sealed and kept
        in the letters file: the distribution is no longer ours to keep.
        """
        self.store.drop_owed(owed_id)

    def owed_keys(self) -> GroupOutput:
        """
        Every distribution not yet handed over (a crash or a lost
        connection came between L{send} and the letter): the caller posts
        them again, after each login.
        """
        return GroupOutput([SendKey(g, r, c, i) for i, g, r, c in self.store.owed()])

    def _own_chain(self, group_id: bytes, membership: Membership) -> SenderChain | None:
        """
        Our chain, if we have one we may still use: not exhausted, and made
        at or after the latest removal or leave (16.5).
        """
        record = self.store.own_chain(group_id)
        if record is None:
            return None
        chain = SenderChain.from_record(record)
        if chain.exhausted or chain.epoch < membership.rekey_epoch(membership.head):
            return None
        return chain

    # -- receiving --------------------------------------------------------------

    def _state(self, group_id: bytes, sender: str) -> SenderKeyState:
        record = self.store.sender_state(group_id, sender)
        return SenderKeyState(group_id, sender) if record is None else SenderKeyState.from_record(record)

    def key_arrived(self, sender: str, content: bytes) -> GroupOutput:
        """
        A distribution from C{sender} (the content of a letter of content
        type 2 that opened): checked (16.2) and taken, releasing the
        messages held for it.
        """
        out = GroupOutput()
        try:
            dist = parse_distribution(content)
        except GroupKeyError as e:
            out.events.append(GroupFailure(b"", sender, 0, 0, e.code, str(e)))
            return out
        membership = self._membership(dist.group_id)
        if membership is None or dist.epoch > membership.head:
            self._add_pending(dist.group_id, sender, "key", 0, 0, content, out)
            return out
        if not membership.member_at(sender, max(dist.epoch, membership.base)):
            out.events.append(GroupFailure(dist.group_id, sender, 0, 0, "not-member",
                                           f"a group key from {sender}, who is not a member"))
            return out
        state = self._state(dist.group_id, sender)
        try:
            released = state.add_chain(dist)
        except GroupKeyError as e:
            out.events.append(GroupFailure(dist.group_id, sender, 0, 0, e.code, str(e)))
            return out
        self.store.save_sender_state(dist.group_id, sender, state.to_record())
        for r in released:
            out.events.extend(self._released(dist.group_id, sender, r))
        return out

    def message_arrived(self, group_id: bytes, seq: int, sender: str, stored_at: int,
                        body: bytes) -> GroupOutput:
        """A GROUP_MESSAGE: its body checked in the order of 16.4."""
        out = GroupOutput()
        try:
            message = parse_group_message(body)
            check_envelope(message, group_id, sender)
        except GroupKeyError as e:
            out.events.append(GroupFailure(group_id, sender, seq, stored_at, e.code, str(e)))
            return out
        membership = self._membership(group_id)
        if membership is None or message.header.epoch > membership.head:
            self._add_pending(group_id, sender, "message", seq, stored_at, body, out)
            return out
        out.events.extend(self._receive(membership, message, seq, stored_at))
        return out

    def _receive(self, membership: Membership, message: GroupMessage, seq: int,
                 stored_at: int) -> list[Event]:
        h = message.header
        if not membership.known(h.epoch):
            return [GroupFailure(h.group_id, h.sender, seq, stored_at, "unknown-epoch",
                                 f"epoch {h.epoch} is before this client's view of the group")]
        if not membership.member_at(h.sender, h.epoch):
            return [GroupFailure(h.group_id, h.sender, seq, stored_at, "not-member",
                                 f"{h.sender} was not a member at epoch {h.epoch}")]
        state = self._state(h.group_id, h.sender)
        try:
            result = state.receive(message, rekey_epoch=membership.rekey_epoch(h.epoch), tag=(seq, stored_at))
        except GroupKeyError as e:
            return [GroupFailure(h.group_id, h.sender, seq, stored_at, e.code, str(e))]
        self.store.save_sender_state(h.group_id, h.sender, state.to_record())
        if isinstance(result, Held):
            events: list[Event] = []
            if result.given_up is not None:
                events.append(GroupFailure(h.group_id, h.sender, result.given_up_tag[0], result.given_up_tag[1],
                                           "held-overflow", "given up waiting for the sender's key"))
            events.append(WaitingForKey(h.group_id, h.sender, seq, stored_at))
            return events
        return _opened(h.group_id, h.sender, seq, stored_at, result)

    def _released(self, group_id: bytes, sender: str, released: Released) -> list[Event]:
        seq, stored_at = released.tag
        if isinstance(released.result, GroupKeyError):
            e = released.result
            return [GroupFailure(group_id, sender, seq, stored_at, e.code, str(e))]
        return _opened(group_id, sender, seq, stored_at, released.result)

    # -- waiting for the log ----------------------------------------------------

    def _add_pending(self, group_id: bytes, sender: str, kind: str, seq: int, stored_at: int,
                     data: bytes, out: GroupOutput) -> None:
        if self.store.pending_count() >= self.max_pending:
            oldest = self.store.pending()[0]
            self.store.drop_pending(oldest[0])
            out.events.append(GroupFailure(oldest[1], oldest[2], oldest[4], oldest[5], "held-overflow",
                                           "given up waiting for the group's log"))
        self.store.add_pending(group_id, sender, kind, seq, stored_at, data)

    def _release_pending(self, group_id: bytes) -> GroupOutput:
        out = GroupOutput()
        for pending_id, _, sender, kind, seq, stored_at, data in self.store.pending(group_id):
            membership = self._membership(group_id)
            if membership is None:
                break
            if kind == "key":
                if parse_distribution(data).epoch > membership.head:
                    continue
                self.store.drop_pending(pending_id)
                out.extend(self.key_arrived(sender, data))
            else:
                message = parse_group_message(data)
                if message.header.epoch > membership.head:
                    continue
                self.store.drop_pending(pending_id)
                out.events.extend(self._receive(membership, message, seq, stored_at))
        return out


def _opened(group_id: bytes, sender: str, seq: int, stored_at: int, result: Opened) -> list[Event]:
    events: list[Event] = []
    if result.gap is not None:
        events.append(GroupGap(group_id, sender, result.gap[0], result.gap[1]))
    m = result.message
    if m.content_type != 1:
        events.append(GroupFailure(group_id, sender, seq, stored_at, "unknown-content",
                                   f"content type {m.content_type}, which this client cannot show"))
    else:
        events.append(GroupText(group_id, sender, seq, stored_at, m.header.sent_at, m.text, result.late))
    return events
