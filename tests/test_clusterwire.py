"""
Tests for what relay processes publish to each other
(L{securechat.server.clusterwire}): every record round-trips, and anything
else, cut short, too long, or of another version, is refused with
L{ClusterWireError} and nothing else.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from securechat.server import clusterwire as wire


def message(*records: bytes, process: str = "relay-1") -> bytes:
    return wire.header(process) + b"".join(records)


class RoundTripTests(unittest.TestCase):
    def test_everyRecord(self) -> None:
        data = message(
            wire.relay("alice", "bob", b"\x00ciphertext"),
            wire.event(wire.EVENT_ENDED, "alice", "bob", 8),
            wire.notice("bob", 0x67, b"body"),
            wire.kick("alice"),
            wire.group(["bob", "carol"], b"group body"),
        )
        process, records = wire.decode(data)
        self.assertEqual(process, "relay-1")
        self.assertEqual(records, [
            wire.RelayRecord("alice", "bob", b"\x00ciphertext"),
            wire.EventRecord(wire.EVENT_ENDED, "alice", "bob", 8),
            wire.NoticeRecord("bob", 0x67, b"body"),
            wire.KickRecord("alice"),
            wire.GroupRecord(("bob", "carol"), b"group body"),
        ])

    def test_vector(self) -> None:
        """The documented layout, byte for byte (module docstring)."""
        self.assertEqual(message(wire.event(wire.EVENT_REQUEST, "al", "bo"), process="p"),
                         b"\x01" b"\x01p" b"\x02\x00\x00\x00\x08" b"\x01" b"\x02al" b"\x02bo"
                         b"\x00")

    def test_emptyBatch(self) -> None:
        self.assertEqual(wire.decode(message()), ("relay-1", []))


class RefusalTests(unittest.TestCase):
    def refused(self, data: bytes, why: str) -> None:
        with self.assertRaises(wire.ClusterWireError) as e:
            wire.decode(data)
        self.assertIn(why, str(e.exception))

    def test_truncatedAnywhere(self) -> None:
        """Every proper prefix that cuts a record short is refused."""
        data = message(wire.relay("alice", "bob", b"payload"), wire.kick("carol"))
        whole = len(message(wire.relay("alice", "bob", b"payload")))
        for n in range(len(data)):
            if n in (len(message()), whole):
                continue  # ends between records: a shorter batch
            with self.assertRaises(wire.ClusterWireError):
                wire.decode(data[:n])

    def test_version(self) -> None:
        self.refused(b"\x02" + message()[1:], "version 2")

    def test_tooLarge(self) -> None:
        self.refused(message(wire.relay("alice", "bob", b"x" * wire.MAX_MESSAGE)), "the most is")

    def test_badUserName(self) -> None:
        self.refused(message(wire._record(wire.KICK, b"\x05Alice")), "not a user name")

    def test_badProcessId(self) -> None:
        self.refused(b"\x01\x03a b", "not a process id")

    def test_unknownKind(self) -> None:
        self.refused(message(wire._record(9, b"")), "unknown record kind 9")

    def test_unknownEvent(self) -> None:
        self.refused(message(wire._record(wire.EVENT, b"\x63\x01a\x01b\x00")), "unknown event 99")

    def test_trailingBytesInRecord(self) -> None:
        self.refused(message(wire._record(wire.KICK, b"\x01ax")), "trailing")

    def test_groupForNobody(self) -> None:
        self.refused(message(wire._record(wire.GROUP, b"\x00\x00body")), "no member")

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_anyBytes(self, data: bytes) -> None:
        """Whatever arrives decodes or raises ClusterWireError; nothing else."""
        try:
            wire.decode(data)
        except wire.ClusterWireError:
            pass
