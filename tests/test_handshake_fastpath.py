"""
The handshake's fast path (L{securechat.crypto.handshake.Connection.receive_data}:
in WAIT_HELLO or WAIT_AUTH, a read that is exactly one whole frame, with
nothing held, goes straight to the frame's step) against the general path
(the frame decoder, then the same step), on docs/protocol.rst's vector
handshakes, byte for byte, and on what each failure makes of their frames:
the same events, the same bytes written, the same state and error from
each; and the responder's whole handshake by both paths, against the
document's bytes.
"""

from __future__ import annotations

import pathlib
import struct
from typing import Any, Callable

from twisted.trial import unittest

from securechat.crypto.events import HandshakeComplete, PeerIdentityReceived
from securechat.crypto.handshake import Connection
from securechat.errors import Alert as AlertCode
from securechat.wire.framing import encode_frame
from securechat.wire.messages import Alert, encode_frame_message
from tests.test_fastpath import SPLITS, WHOLE, CountingDecoder, outcome
from tests.vectors import _connections, connections, inputs_of, parse

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.rst"
VECTORS = parse(DOC.read_text())
NAMES = ("client-server", "end-to-end")


def waiting_hello(name: str) -> Connection:
    """The vector's responder, before the HELLO."""
    return connections(inputs_of(VECTORS[name]))[1]


def waiting_auth(name: str) -> Connection:
    """The vector's responder after the document's HELLO (it has answered)."""
    responder = waiting_hello(name)
    responder.receive_data(VECTORS[name]["hello"])
    responder.data_to_send()
    return responder


class HandshakeFastPathTests(unittest.TestCase):
    """
    Each read below, fed whole and split, to identical responders.
    """

    def same_everywhere(self, make: Callable[[], Connection], read: bytes,
                        sole: bool) -> tuple[list[Any], bytes, str]:
        """
        C{read} fed by each split to a responder from C{make}: the same
        outcome from each, returned; the whole read took the fast path
        exactly when C{sole} (one whole frame the decoder accepts).
        """
        results = {}
        for split_name, split in SPLITS.items():
            connection = make()
            decoder = connection._decoder = CountingDecoder(connection._decoder)
            results[split_name] = outcome(connection, split(read))
            self.assertEqual(decoder.fed == 0, split_name == WHOLE and sole, split_name)
        first = results[WHOLE]
        for split_name, result in results.items():
            self.assertEqual(result, first, f"{split_name} differs from whole")
        return first

    def test_vectorHello(self) -> None:
        """
        The document's HELLO: the document's HELLO_REPLY and AUTH record
        written by every path.
        """
        for name in NAMES:
            vector = VECTORS[name]
            events, written, state = self.same_everywhere(
                lambda: waiting_hello(name), vector["hello"], sole=True)
            self.assertEqual((events, state), ([], "WAIT_AUTH"))
            self.assertEqual(written, vector["hello_reply"] + vector["responder.auth_record"])

    def test_vectorAuthRecord(self) -> None:
        """
        The document's AUTH record: the initiator's identity claimed, by
        every path; accepting it gives the document's handshake.
        """
        for name in NAMES:
            vector = VECTORS[name]
            events, written, state = self.same_everywhere(
                lambda: waiting_auth(name), vector["initiator.auth_record"], sole=True)
            self.assertEqual(state, "WAIT_VERIFY")
            self.assertEqual(type(events[0]).__name__, "PeerIdentityReceived")
            self.assertEqual(written, b"")

    def test_authRecordWithRecord(self) -> None:
        """
        The AUTH record and the first record in one read (not one frame:
        the general path), as the vector's responder got them: the same
        by every split.
        """
        vector = VECTORS["end-to-end"]
        events, _, state = self.same_everywhere(
            lambda: waiting_auth("end-to-end"),
            vector["initiator.auth_record"] + vector["initiator.record0"], sole=False)
        self.assertEqual(state, "WAIT_VERIFY")

    def failing(self, make: Callable[[], Connection], read: bytes, code: str,
                sole: bool = True) -> bytes:
        events, written, state = self.same_everywhere(make, read, sole)
        self.assertEqual([e[:2] for e in events], [("failed", code)])
        self.assertEqual(state, "FAILED")
        return written

    def test_helloFailures(self) -> None:
        """
        In WAIT_HELLO: a HELLO of another version, of the other context,
        with a byte too many, or offering no suite we speak; a HELLO_REPLY,
        a record or an unknown frame; a plaintext ALERT: each the same
        error by every path.
        """
        for name in NAMES:
            hello = VECTORS[name]["hello"]
            other = 2 if hello[7] == 1 else 1

            def make() -> Connection:
                return waiting_hello(name)
            self.failing(make, hello[:5] + b"\x00\x09" + hello[7:], "unsupported-version")
            self.failing(make, hello[:7] + bytes((other,)) + hello[8:], "wrong-context")
            longer = struct.pack(">I", len(hello) - 3) + hello[4:] + b"\x00"
            self.failing(make, longer, "trailing-bytes")
            self.failing(make, hello[:73] + b"\x00\x63" * hello[72], "no-common-suite")
            self.failing(make, encode_frame(0x02, hello[5:]), "unexpected-message")
            self.failing(make, encode_frame(0x17, bytes(40)), "unexpected-message")
            self.failing(make, encode_frame(0x55, b""), "unknown-type")
            alert = encode_frame_message(Alert(AlertCode.INTERNAL_ERROR, "x"))
            events, _, state = self.same_everywhere(make, alert, sole=True)
            self.assertEqual(state, "FAILED")
            self.assertEqual(len(events), 1)

    def test_helloFramingFailures(self) -> None:
        """
        A frame the decoder refuses (empty, over the handshake maximum)
        never takes the fast path: the same error by every path.
        """
        self.failing(lambda: waiting_hello("end-to-end"), b"\x00\x00\x00\x00", "empty-frame",
                     sole=False)
        huge = struct.pack(">I", 1 << 20) + b"\x01" + bytes(100)
        self.failing(lambda: waiting_hello("end-to-end"), huge, "frame-too-large", sole=False)

    def test_authFailures(self) -> None:
        """
        In WAIT_AUTH: the AUTH record with a bit flipped, a second HELLO, a
        plaintext ALERT, an unknown frame: each the same error, and the
        same alert written, by every path.
        """
        for name in NAMES:
            vector = VECTORS[name]

            def make() -> Connection:
                return waiting_auth(name)
            record = bytearray(vector["initiator.auth_record"])
            record[30] ^= 1
            written = self.failing(make, bytes(record), "bad-handshake-record")
            self.assertNotEqual(written, b"")
            self.failing(make, vector["hello"], "unexpected-message")
            alert = encode_frame_message(Alert(AlertCode.INTERNAL_ERROR, "x"))
            self.failing(make, alert, "unauthenticated-alert")
            self.failing(make, encode_frame(0x55, b""), "unknown-type")

    def test_wholeHandshake(self) -> None:
        """
        The responder's whole vector handshake, each read whole (the fast
        paths) and each split byte by byte (the general path): the
        document's bytes written at every step by both.
        """
        for name in NAMES:
            vector = VECTORS[name]
            for split_name in (WHOLE, "byte by byte"):
                split = SPLITS[split_name]
                _, responder, initiator_key, _ = _connections(inputs_of(vector))

                def feed(data: bytes) -> list[Any]:
                    events: list[Any] = []
                    for part in split(data):
                        events.extend(responder.receive_data(part))
                    return events
                self.assertEqual(feed(vector["hello"]), [])
                self.assertEqual(responder.data_to_send(),
                                 vector["hello_reply"] + vector["responder.auth_record"])
                [claim] = feed(vector["initiator.auth_record"])
                self.assertIsInstance(claim, PeerIdentityReceived)
                [done] = responder.accept_peer(initiator_key.public_key())
                self.assertIsInstance(done, HandshakeComplete)
                self.assertEqual(feed(vector["initiator.record0"]), [])
                self.assertEqual(responder.data_to_send(), vector["responder.record0"],
                                 (name, split_name))
