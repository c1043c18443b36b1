"""
Tests for L{securechat.wire.groups}: the groups' relay messages
(docs/protocol.rst, 15.2) and their reasons (15.4).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader
from securechat.wire.groups import (
    GROUP_CLIENT_MESSAGES, GROUP_FROM_CLIENT, GROUP_FROM_SERVER, GROUP_SERVER_MESSAGES,
    ChangeGroup, GetGroupLog, GroupAck, GroupChanged, GroupEntry, GroupList, GroupLogPage,
    GroupMessage, GroupPost, GroupPosted, GroupRefused, ListGroups, LogEntry)
from securechat.wire.mailbox import (
    MAILBOX_CLIENT_MESSAGES, MAILBOX_FROM_CLIENT, MAILBOX_FROM_SERVER, MAILBOX_SERVER_MESSAGES)
from securechat.wire.relay import CLIENT_MESSAGES, SERVER_MESSAGES, Reason

_id = st.binary(min_size=16, max_size=16)
_u64 = st.integers(0, 2**64 - 1)
_name = st.from_regex(r"[a-z][a-z0-9._-]{0,31}", fullmatch=True)
_entry = st.builds(GroupEntry, _id, st.text(max_size=20).filter(lambda t: len(t.encode()) < 256),
                   st.integers(1, 3), _u64, st.integers(0, 2**32 - 1))
_MESSAGES = st.one_of(
    st.builds(ChangeGroup, st.binary(max_size=800)),
    st.builds(GroupPost, _id, st.binary(max_size=2000)),
    st.builds(GroupAck, _id, _u64),
    st.just(ListGroups()),
    st.builds(GetGroupLog, _id, _u64),
    st.builds(GroupChanged, st.binary(max_size=800)),
    st.builds(GroupRefused, _id, st.integers(0x70, 0x74), st.integers(23, 32)),
    st.builds(GroupPosted, _id, _u64, _u64),
    st.builds(GroupMessage, _id, _u64, _name, _u64, st.binary(max_size=2000)),
    st.builds(GroupList, st.lists(_entry, max_size=5).map(tuple)),
    st.builds(GroupLogPage, _id, st.lists(st.builds(LogEntry, st.binary(max_size=300)),
                                          max_size=5).map(tuple), st.integers(0, 1)),
)


def _roundtrip(message: Any) -> Any:
    registry = GROUP_FROM_CLIENT if message.TYPE < 0x80 else GROUP_FROM_SERVER
    return registry.parse(message.TYPE, message.encode_body())


class GroupMessageTests(unittest.TestCase):
    """Layouts, registries and reasons of 15.2 and 15.4."""

    @settings(max_examples=200, deadline=None)
    @given(_MESSAGES)
    def test_roundTrip(self, message: Any) -> None:
        """Every group message parses back to itself from its encoding."""
        self.assertEqual(_roundtrip(message), message)

    def test_layout(self) -> None:
        """GROUP_MESSAGE is id, u64 seq, text8 sender, u64 stored_at, bytes32 body."""
        body = GroupMessage(b"\x01" * 16, 2, "bob", 3, b"xy").encode_body()
        self.assertEqual(body.hex(), "01" * 16 + "0000000000000002" + "03626f62"
                         + "0000000000000003" + "00000002" + "7879")

    def test_registries(self) -> None:
        """
        The group registries hold the chat, mailbox and group messages of
        their direction and none of the other's; the mailbox registries
        are unchanged.
        """
        for cls in CLIENT_MESSAGES + MAILBOX_CLIENT_MESSAGES + GROUP_CLIENT_MESSAGES:
            self.assertIn(cls.TYPE, GROUP_FROM_CLIENT)
            self.assertNotIn(cls.TYPE, GROUP_FROM_SERVER)
        for cls in SERVER_MESSAGES + MAILBOX_SERVER_MESSAGES + GROUP_SERVER_MESSAGES:
            self.assertIn(cls.TYPE, GROUP_FROM_SERVER)
        self.assertEqual({c.TYPE for c in GROUP_CLIENT_MESSAGES}, set(range(0x70, 0x75)))
        self.assertEqual({c.TYPE for c in GROUP_SERVER_MESSAGES}, set(range(0x80, 0x86)))
        self.assertNotIn(GroupPost.TYPE, MAILBOX_FROM_CLIENT)
        self.assertNotIn(GroupMessage.TYPE, MAILBOX_FROM_SERVER)

    def test_reasons(self) -> None:
        """
        The group reasons follow the mailbox ones (23 to 32), in the order
        of 15.4 (TRY_AGAIN, 33, is the store's: 14.7).
        """
        self.assertEqual(
            [(r.name, r.value) for r in Reason if 23 <= r.value <= 32],
            [("NOT_MEMBER", 23), ("NOT_ALLOWED", 24), ("STALE_CHANGE", 25), ("BAD_CHANGE", 26),
             ("UNKNOWN_GROUP", 27), ("GROUP_EXISTS", 28), ("GROUP_FULL", 29),
             ("TOO_MANY_GROUPS", 30), ("GROUP_RATE", 31), ("GROUP_MESSAGE_TOO_LARGE", 32)])

    def test_badRole(self) -> None:
        """A GROUP_LIST entry with a role outside 1-3 is bad-value."""
        body = GroupList((GroupEntry(b"\x00" * 16, "t", 4, 1, 1),)).encode_body()
        e = self.assertRaises(RemoteProtocolError, GROUP_FROM_SERVER.parse, GroupList.TYPE, body)
        self.assertEqual(e.code, "bad-value")
        self.assertIn("group role is 4", e.detail)

    def test_badMore(self) -> None:
        """GROUP_LOG_PAGE's more is 0 or 1."""
        body = GroupLogPage(b"\x00" * 16, (), 2).encode_body()
        e = self.assertRaises(RemoteProtocolError, GROUP_FROM_SERVER.parse, GroupLogPage.TYPE,
                              body)
        self.assertIn("more is 2", e.detail)

    def test_shortGroupId(self) -> None:
        """A group id is 16 bytes exactly: shorter is truncated."""
        e = self.assertRaises(RemoteProtocolError, GROUP_FROM_CLIENT.parse, GroupAck.TYPE,
                              b"\x00" * 10)
        self.assertEqual(e.code, "truncated")

    def test_senderName(self) -> None:
        """GROUP_MESSAGE's sender is a user name: anything else is bad-value."""
        body = GroupMessage(b"\x01" * 16, 2, "Bob", 3, b"").encode_body()
        e = self.assertRaises(RemoteProtocolError, GroupMessage.parse_body, Reader(body, "x"))
        self.assertEqual(e.code, "bad-value")
