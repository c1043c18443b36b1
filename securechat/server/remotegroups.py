# -*- test-case-name: tests.test_router -*-
"""
Groups across relay processes: what a process does with a group message
or a group change that another process committed (on the store they share:
PostgreSQL, C{--store}), the receiving half of the router's group fan-out.

  - B{A group message} arrives once per process, with the members online
    there (clusterwire's GROUP record).  Each is checked against the
    group's membership as this process knows it (loaded from the store if
    it is not cached), and queued exactly as a local fan-out queues it:
    not for its sender, not for a member still catching up from the store
    or sent it already, and with the same queue limits
    (L{securechat.server.groups.Groups._push}).  The group's cached last
    seq moves on, so a member catching up reads what was committed
    elsewhere before going live.
  - B{A group change} arrives as a GROUP_CHANGED notice for each member
    here: this process forgets its cached state of the group (it is stale),
    loads it again, and starts or stops the member's live delivery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from securechat.crypto.groupstate import GroupError, parse_change
from securechat.wire.groups import GroupChanged, GroupMessage
from securechat.wire.messages import INNER_HEADER

if TYPE_CHECKING:
    from securechat.server.groups import Groups, _Live
    from securechat.server.session import UserSession

log = Logger()


def deliver(groups: Groups, members: tuple[str, ...], message: GroupMessage, body: bytes) -> None:
    """A GROUP_MESSAGE committed elsewhere, for C{members} here."""
    encoded = (INNER_HEADER.pack(GroupMessage.TYPE, len(body)), body)
    gid, seq, sessions = message.group_id, message.seq, groups.relay.sessions

    def loaded(live: _Live | None) -> None:
        if live is None or live.state.deleted:
            return
        live.last_seq = max(live.last_seq, seq)
        copies = 0
        for member in members:
            if member == message.sender or member not in live.state.members:
                continue
            target = sessions.get(member)
            if target is None:
                continue
            delivered = groups._live.get(target)
            if delivered is None or delivered.get(gid, seq) >= seq:
                continue
            delivered[gid] = seq
            groups._push(target, encoded)
            copies += 1
        groups.metrics.group_copies.inc(copies)
    groups._load(gid).addCallbacks(loaded, _failed)


def changed(groups: Groups, target: UserSession, notice: GroupChanged) -> None:
    """A change committed elsewhere: reload the group, (re)start or stop C{target}'s delivery."""
    try:
        gid = parse_change(notice.change).group_id
    except GroupError:
        return
    groups._cache.pop(gid, None)

    def loaded(live: _Live | None) -> None:
        positions = groups._live.get(target)
        if positions is None:
            return
        if live is not None and not live.state.deleted and target.user in live.state.members:
            positions.setdefault(gid, live.last_seq)
        else:
            positions.pop(gid, None)
    groups._load(gid).addCallbacks(loaded, _failed)


def _failed(failure: Failure) -> Any:
    log.failure("cluster: loading a group for a message from another process failed", failure)
    return None
