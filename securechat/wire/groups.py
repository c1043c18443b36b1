# -*- test-case-name: tests.test_group_messages -*-
"""
The groups' relay messages: inner messages of the client-server context
(docs/protocol.rst, 15.2), declared field by field like
L{securechat.wire.mailbox}'s.  Client-to-relay types are 0x70-0x7f,
relay-to-client 0x80-0x8f.

The relay parses a change (L{securechat.crypto.groupstate}) to check and
apply it; it never parses a group message's C{body} (section 16).

L{GROUP_FROM_CLIENT} and L{GROUP_FROM_SERVER} are the mailbox registries
extended with these messages: the relay and a client that handles groups
use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from securechat.errors import RemoteProtocolError
from securechat.wire.declared import Declared, ListOf
from securechat.wire.mailbox import MAILBOX_FROM_CLIENT, MAILBOX_FROM_SERVER

#: What a refused command's C{group_id} is when the change did not parse.
NO_GROUP = bytes(16)


def _check_choice(value: int, allowed: range, what: str) -> None:
    if value not in allowed:
        raise RemoteProtocolError("bad-value", f"{what} is {value}")


# -- client to relay --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangeGroup(Declared):
    """
    GROUP_CHANGE: a signed change (15.1), the creation included.
    Answered by L{GroupChanged} (the same change, accepted) or
    L{GroupRefused}.
    """

    TYPE: ClassVar[int] = 0x70
    FIELDS: ClassVar[tuple[str, ...]] = ("bytes32",)
    change: bytes


@dataclass(frozen=True, slots=True)
class GroupPost(Declared):
    """
    GROUP_POST: a group message C{body} (section 16; the relay does not
    parse it) for every other member.  Answered by L{GroupPosted} once it
    is stored, or L{GroupRefused}.
    """

    TYPE: ClassVar[int] = 0x71
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "bytes32")
    group_id: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class GroupAck(Declared):
    """
    GROUP_ACK: we hold every message of the group up to C{seq}.  No
    answer when accepted; L{GroupRefused} when we are not a member.
    """

    TYPE: ClassVar[int] = 0x72
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "u64")
    group_id: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class ListGroups(Declared):
    """LIST_GROUPS: the groups we are in.  Answered by L{GroupList}."""

    TYPE: ClassVar[int] = 0x73


@dataclass(frozen=True, slots=True)
class GetGroupLog(Declared):
    """
    GROUP_LOG: the group's changes after epoch C{after_epoch} (0: from
    the creation).  Answered by L{GroupLogPage} or L{GroupRefused}.
    """

    TYPE: ClassVar[int] = 0x74
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "u64")
    group_id: bytes
    after_epoch: int


# -- relay to client --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupChanged(Declared):
    """
    GROUP_CHANGED: a change the relay accepted, as signed by its actor;
    sent to every member after it and to the member it took out.
    """

    TYPE: ClassVar[int] = 0x80
    FIELDS: ClassVar[tuple[str, ...]] = ("bytes32",)
    change: bytes


@dataclass(frozen=True, slots=True)
class GroupRefused(Declared):
    """
    GROUP_REFUSED: our command of type C{command} about C{group_id} (16
    zero bytes when a change did not parse) was refused for C{reason}.
    """

    TYPE: ClassVar[int] = 0x81
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "u8", "u8")
    group_id: bytes
    command: int
    reason: int


@dataclass(frozen=True, slots=True)
class GroupPosted(Declared):
    """
    GROUP_POSTED: our post is stored as the group's message C{seq}, at
    C{stored_at} (the relay's clock).
    """

    TYPE: ClassVar[int] = 0x82
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "u64", "u64")
    group_id: bytes
    seq: int
    stored_at: int


@dataclass(frozen=True, slots=True)
class GroupMessage(Declared):
    """
    GROUP_MESSAGE: the group's message C{seq}, posted by C{sender}, stored
    at C{stored_at}; C{body} as the sender posted it.
    """

    TYPE: ClassVar[int] = 0x83
    FIELDS: ClassVar[tuple[str, ...]] = ("id", "u64", "name", "u64", "bytes32")
    group_id: bytes
    seq: int
    sender: str
    stored_at: int
    body: bytes


@dataclass(frozen=True, slots=True)
class GroupEntry(Declared):
    """One line of L{GroupList}."""

    FIELDS: ClassVar[tuple[str, ...]] = ("id", "text8", "u8", "u64", "u32")
    group_id: bytes
    name: str
    role: int
    epoch: int
    members: int

    def check_parsed(self) -> None:
        _check_choice(self.role, range(1, 4), "group role")


@dataclass(frozen=True, slots=True)
class GroupList(Declared):
    """
    GROUP_LIST: the groups we are in, by id; the answer to LIST_GROUPS,
    and sent after WELCOME to a user in at least one group.
    """

    TYPE: ClassVar[int] = 0x84
    FIELDS: ClassVar[tuple[ListOf]] = (ListOf(GroupEntry),)
    groups: tuple[GroupEntry, ...]


@dataclass(frozen=True, slots=True)
class LogEntry(Declared):
    """One change of L{GroupLogPage}, as its actor signed it."""

    FIELDS: ClassVar[tuple[str, ...]] = ("bytes32",)
    change: bytes


@dataclass(frozen=True, slots=True)
class GroupLogPage(Declared):
    """
    GROUP_LOG_PAGE: changes of the group in epoch order, starting with
    the one after the requested epoch; C{more} 1 when more follow (ask
    again after the last one's epoch).
    """

    TYPE: ClassVar[int] = 0x85
    FIELDS: ClassVar[tuple[str | ListOf, ...]] = ("id", ListOf(LogEntry), "u8")
    group_id: bytes
    changes: tuple[LogEntry, ...]
    more: int

    def check_parsed(self) -> None:
        _check_choice(self.more, range(2), "GROUP_LOG_PAGE more")


GROUP_CLIENT_MESSAGES = (ChangeGroup, GroupPost, GroupAck, ListGroups, GetGroupLog)
GROUP_SERVER_MESSAGES = (GroupChanged, GroupRefused, GroupPosted, GroupMessage, GroupList,
                         GroupLogPage)

#: The mailbox registries with the groups added.
GROUP_FROM_CLIENT = MAILBOX_FROM_CLIENT.extend(GROUP_CLIENT_MESSAGES)
GROUP_FROM_SERVER = MAILBOX_FROM_SERVER.extend(GROUP_SERVER_MESSAGES)
