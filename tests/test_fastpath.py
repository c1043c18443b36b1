"""
The record fast path of an established connection
(L{securechat.crypto.handshake.Connection.receive_data}: a read that is
exactly one whole record, with nothing held, goes straight to the record
layer) against the general path (the frame decoder, then the same record
layer), on the same records: docs/protocol.rst's vector records, byte for
byte, and what each failure makes of them.  Both paths must report the
same events, write the same bytes and fail with the same error.  And the
sending side's one call for a queued record
(L{securechat.crypto.handshake.Connection.send_inner_now}) against the two
it stands for.
"""

from __future__ import annotations

import pathlib
import struct
from typing import Any, Callable

from twisted.trial import unittest

from securechat.crypto.events import ConnectionFailed, MessageReceived, RawMessages
from securechat.crypto.handshake import Connection
from securechat.wire.framing import FrameDecoder
from securechat.errors import LocalProtocolError
from securechat.wire.messages import Alert, Ping, Pong, encode_frame_message, encode_inner
from tests.vectors import handshake, inputs_of, parse

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.rst"
VECTORS = parse(DOC.read_text())

#: How each path is fed one read: whole (the fast path when it is one
#: record), or split so that the decoder must hold a partial frame.
WHOLE = "whole"
SPLITS: dict[str, Callable[[bytes], list[bytes]]] = {
    WHOLE: lambda data: [data],
    "header split": lambda data: [data[:3], data[3:]],
    "last byte apart": lambda data: [data[:-1], data[-1:]],
    "byte by byte": lambda data: [data[i:i + 1] for i in range(len(data))],
}


def outcome(connection: Connection, reads: list[bytes]) -> tuple[list[Any], bytes, str]:
    """
    What C{connection} makes of C{reads}: its events (comparable), the
    bytes it would write, and its state.
    """
    events: list[Any] = []
    for data in reads:
        for event in connection.receive_data(data):
            if isinstance(event, ConnectionFailed):
                events.append(("failed", event.error.code, str(event.error)))
            elif isinstance(event, RawMessages):
                events.append(("raw", [(t, bytes(b)) for t, b in event.items]))
            else:
                events.append(event)
    return events, connection.data_to_send(), connection.state.value


class CountingDecoder(FrameDecoder):
    """
    A connection's frame decoder, taken over as it is, counting the reads
    fed to it (the fast path feeds none).
    """

    __slots__ = ("fed",)

    def __init__(self, decoder: FrameDecoder) -> None:
        super().__init__(decoder.max_length)
        self._data, self._pos = decoder._data, decoder._pos
        self.fed = 0

    def feed(self, data: bytes) -> None:
        self.fed += 1
        super().feed(data)


class FastPathTests(unittest.TestCase):
    """
    Every read below, fed whole and split, to identical connections made
    from a vector's inputs.
    """

    def pair(self, name: str) -> tuple[Connection, Connection, dict[str, bytes]]:
        return handshake(inputs_of(VECTORS[name]))

    def same_everywhere(self, name: str, side: str, data: Callable[[dict[str, bytes]], bytes],
                        before: list[str] = []) -> tuple[list[Any], bytes, str]:
        """
        C{data} (from the document's vector C{name}) fed to the vector's
        C{side} ("initiator" or "responder") by each split, after the
        document's records named in C{before}: the same outcome from each,
        returned.
        """
        results = {}
        for split_name, split in SPLITS.items():
            initiator, responder, _ = self.pair(name)
            connection = initiator if side == "initiator" else responder
            vector = VECTORS[name]
            for field in before:
                connection.receive_data(vector[field])
                connection.data_to_send()
            read = data(vector)
            decoder = connection._decoder = CountingDecoder(connection._decoder)
            results[split_name] = outcome(connection, split(read))
            sole = len(read) == 4 + int.from_bytes(read[:4], "big") and (
                len(read) <= 4 + decoder.max_length) and read[4] == 0x17
            # Which path each read took: the fast one feeds nothing.
            self.assertEqual(decoder.fed == 0, split_name == WHOLE and sole, split_name)
        first = results[WHOLE]
        for split_name, result in results.items():
            self.assertEqual(result, first, f"{name}, {side}: {split_name} differs from whole")
        return first

    def test_vectorRecords(self) -> None:
        """
        The document's records after the handshake, each vector: the
        responder's PONG (responder.record0) opened by the initiator, and
        the initiator's second PING (initiator.record1) by the responder,
        who answers it with a PONG.
        """
        for name in ("client-server", "end-to-end"):
            ping = VECTORS[name]["ping"]
            events, written, state = self.same_everywhere(
                name, "initiator", lambda v: v["responder.record0"])
            self.assertEqual((events, written, state),
                             ([MessageReceived(Pong(ping))], b"", "ESTABLISHED"))
            events, written, state = self.same_everywhere(
                name, "responder", lambda v: v["initiator.record1"])
            self.assertEqual(events, [])
            self.assertEqual(state, "ESTABLISHED")
            self.assertNotEqual(written, b"")  # the PONG
            initiator, _, _ = self.pair(name)
            self.assertTrue(initiator._decoder.sole_frame(VECTORS[name]["responder.record0"]))

    def test_applicationMessages(self) -> None:
        """
        A record of two messages (a PONG and a PING), sealed by the
        vector's initiator after its second PING: the same events and the
        same answer written by every path.
        """
        def record(vector: dict[str, bytes]) -> bytes:
            initiator, _, _ = self.pair("client-server")
            initiator.send(Pong(b"x"), Ping(b"y"))
            return initiator.data_to_send()
        events, written, state = self.same_everywhere(
            "client-server", "responder", record, before=["initiator.record1"])
        self.assertEqual((events, state), ([MessageReceived(Pong(b"x"))], "ESTABLISHED"))
        self.assertNotEqual(written, b"")  # the PONG of b"y"

    def test_tamperedRecord(self) -> None:
        """
        The document's record with one ciphertext bit flipped:
        bad-record-mac by every path, and the same alert written.
        """
        def tampered(vector: dict[str, bytes]) -> bytes:
            record = bytearray(vector["initiator.record1"])
            record[20] ^= 1
            return bytes(record)
        events, written, state = self.same_everywhere("end-to-end", "responder", tampered)
        self.assertEqual([e[:2] for e in events], [("failed", "bad-record-mac")])
        self.assertEqual(state, "FAILED")

    def test_replayedRecord(self) -> None:
        """
        The document's PING record sent again after the responder opened
        it: record-replayed by every path.
        """
        events, _, state = self.same_everywhere(
            "client-server", "responder", lambda v: v["initiator.record0"])
        self.assertEqual([e[:2] for e in events], [("failed", "record-replayed")])

    def test_skippedRecord(self) -> None:
        """
        A record after a missing one (the initiator's third, without its
        second): record-gap by every path.
        """
        def third(vector: dict[str, bytes]) -> bytes:
            initiator, _, _ = self.pair("end-to-end")
            initiator.send(Ping(b"3"))
            return initiator.data_to_send()
        events, _, _ = self.same_everywhere("end-to-end", "responder", third)
        self.assertEqual([e[:2] for e in events], [("failed", "record-gap")])

    def test_truncatedRecord(self) -> None:
        """
        A record frame too short for its header and tag (its length field
        says so): truncated by every path.
        """
        def short(vector: dict[str, bytes]) -> bytes:
            body = vector["initiator.record1"][4:20]
            return struct.pack(">I", len(body)) + body
        events, _, _ = self.same_everywhere("end-to-end", "responder", short)
        self.assertEqual([e[:2] for e in events], [("failed", "truncated")])

    def test_plaintextAlert(self) -> None:
        """
        A plaintext ALERT frame after the handshake is not a record (the
        general path takes it whole too): unauthenticated-alert by every path.
        """
        events, _, _ = self.same_everywhere(
            "end-to-end", "responder", lambda v: encode_frame_message(Alert(0, "bye")))
        self.assertEqual([e[:2] for e in events], [("failed", "unauthenticated-alert")])

    def test_oversizedFrame(self) -> None:
        """
        A length field above the frame maximum: frame-too-large by every
        path, the body never read.
        """
        def huge(vector: dict[str, bytes]) -> bytes:
            _, responder, _ = self.pair("end-to-end")
            size = responder._decoder.max_length + 1
            return struct.pack(">IB", size, 0x17) + bytes(size - 1)
        events, _, _ = self.same_everywhere("end-to-end", "responder", huge)
        self.assertEqual([e[:2] for e in events], [("failed", "frame-too-large")])

    def test_twoRecordsInOneRead(self) -> None:
        """
        The document's two initiator records after the handshake in one
        read (the general path, whole) against each on its own (the fast
        path): the same events and bytes.
        """
        vector = VECTORS["client-server"]
        _, together, _ = self.pair("client-server")
        _, apart, _ = self.pair("client-server")
        initiator, _, _ = self.pair("client-server")
        initiator.send(Pong(b"q"))
        extra = initiator.data_to_send()
        both = outcome(together, [vector["initiator.record1"] + extra])
        each = outcome(apart, [vector["initiator.record1"], extra])
        self.assertEqual(both, each)
        self.assertEqual(both[0], [MessageReceived(Pong(b"q"))])

    def test_soleFrame(self) -> None:
        """
        L{FrameDecoder.sole_frame}: true only for exactly one whole frame of
        an accepted length with nothing held, and it never changes the
        decoder.
        """
        decoder = FrameDecoder(10)
        frame = struct.pack(">IB", 3, 1) + b"ab"
        self.assertTrue(decoder.sole_frame(frame))
        self.assertFalse(decoder.sole_frame(frame + frame))  # two
        self.assertFalse(decoder.sole_frame(frame[:-1]))  # partial
        self.assertFalse(decoder.sole_frame(b"\x00\x00\x00\x00"))  # empty frame
        self.assertFalse(decoder.sole_frame(struct.pack(">IB", 11, 1) + bytes(10)))  # too large
        self.assertFalse(decoder.sole_frame(bytearray(frame)))  # type: ignore[arg-type]
        self.assertEqual(decoder.buffered, 0)
        decoder.feed(frame[:2])
        self.assertFalse(decoder.sole_frame(frame))  # something held
        self.assertEqual(decoder.buffered, 2)

    def test_sendInnerNow(self) -> None:
        """
        L{Connection.send_inner_now} gives the bytes L{Connection.send_inner}
        then L{Connection.data_to_send} would, a PONG queued before it
        first, on identical connections; and refuses what send_inner
        refuses.
        """
        plaintext = encode_inner((Pong(b"p"),))
        results = []
        for fused in (True, False):
            _, responder, _ = self.pair("client-server")
            responder.receive_data(VECTORS["client-server"]["initiator.record1"])  # PONG queued
            if fused:
                results.append(responder.send_inner_now(plaintext))
            else:
                responder.send_inner(plaintext)
                results.append(responder.data_to_send())
            self.assertEqual(responder.data_to_send(), b"")
        self.assertEqual(results[0], results[1])
        initiator, _, _ = self.pair("client-server")
        e = self.assertRaises(LocalProtocolError, initiator.send_inner_now, b"")
        self.assertEqual(e.code, "empty-record")
        initiator.close()
        e = self.assertRaises(LocalProtocolError, initiator.send_inner_now, plaintext)
        self.assertEqual(e.code, "unexpected-message")
