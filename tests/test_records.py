"""
Tests for L{securechat.crypto.records}: sealing, strict counters, tampering,
key updates and the counter limit.
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.crypto import records
from securechat.crypto.records import HEADER_LENGTH, RecordOpener, RecordSealer
from securechat.crypto.suites import AES_256_GCM, CHACHA20_POLY1305, SUITES
from securechat.errors import LocalProtocolError, RemoteProtocolError

SECRET = bytes(range(32))


def pair(suite=AES_256_GCM, interval=2**20):  # type: ignore[no-untyped-def]
    return RecordSealer(suite, SECRET, interval), RecordOpener(suite, SECRET, interval)


class RecordTests(unittest.TestCase):
    """
    Tests for L{RecordSealer} and L{RecordOpener}.
    """

    def test_roundTripEachSuite(self) -> None:
        """
        Records sealed with each suite open to the same plaintext, in order.
        """
        for suite in SUITES.values():
            sealer, opener = pair(suite)
            for i in range(3):
                self.assertEqual(opener.open(sealer.seal(b"message %d" % i)), b"message %d" % i)

    def test_layout(self) -> None:
        """
        A record frame is length, type 0x17, counter, then ciphertext and a
        16-byte tag; the length counts everything after itself.
        """
        sealer, _ = pair()
        sealer.seal(b"x")
        frame = sealer.seal(b"hello")
        self.assertEqual(frame[4], 0x17)
        self.assertEqual(int.from_bytes(frame[5:13], "big"), 1)
        self.assertEqual(int.from_bytes(frame[:4], "big"), len(frame) - 4)
        self.assertEqual(len(frame), HEADER_LENGTH + 5 + 16)

    def test_replayed(self) -> None:
        """
        A record delivered twice is C{record-replayed}.
        """
        sealer, opener = pair()
        frame = sealer.seal(b"a")
        opener.open(frame)
        self.assertEqual(self.assertRaises(RemoteProtocolError, opener.open, frame).code, "record-replayed")

    def test_reordered(self) -> None:
        """
        Records delivered out of order: the later one is C{record-gap}.
        """
        sealer, opener = pair()
        sealer.seal(b"a")
        second = sealer.seal(b"b")
        self.assertEqual(self.assertRaises(RemoteProtocolError, opener.open, second).code, "record-gap")

    def test_dropped(self) -> None:
        """
        A record that never arrives makes the next one C{record-gap}.
        """
        sealer, opener = pair()
        opener.open(sealer.seal(b"a"))
        sealer.seal(b"lost")
        third = sealer.seal(b"c")
        self.assertEqual(self.assertRaises(RemoteProtocolError, opener.open, third).code, "record-gap")

    def test_everyBitFlipped(self) -> None:
        """
        Flipping any single bit of the header, counter, ciphertext or tag
        makes the record fail, with a specific error, and never decrypt.
        """
        sealer, _ = pair()
        frame = sealer.seal(b"attack at dawn")
        for bit in range(len(frame) * 8):
            _, opener = pair()
            bad = bytearray(frame)
            bad[bit // 8] ^= 1 << (bit % 8)
            e = self.assertRaises(RemoteProtocolError, opener.open, bytes(bad))
            if 5 <= bit // 8 < 13:
                self.assertIn(e.code, {"record-gap", "record-replayed"})
            else:
                self.assertEqual(e.code, "bad-record-mac")
            self.assertEqual(opener.counter, 0)

    def test_truncatedTag(self) -> None:
        """
        A record with its tag cut short does not open.
        """
        sealer, opener = pair()
        frame = sealer.seal(b"abc")
        e = self.assertRaises(RemoteProtocolError, opener.open, frame[:-1])
        self.assertEqual(e.code, "bad-record-mac")
        e = self.assertRaises(RemoteProtocolError, opener.open, frame[:HEADER_LENGTH + 3])
        self.assertEqual(e.code, "truncated")

    def test_directionsDoNotMix(self) -> None:
        """
        A record sealed under another secret (the other direction) does not
        open.
        """
        sealer = RecordSealer(AES_256_GCM, b"\x01" * 32, 16)
        opener = RecordOpener(AES_256_GCM, SECRET, 16)
        self.assertEqual(
            self.assertRaises(RemoteProtocolError, opener.open, sealer.seal(b"x")).code,
            "bad-record-mac",
        )

    def test_keyUpdate(self) -> None:
        """
        Both sides ratchet the secret every C{rekey_interval} records and
        keep working across the boundary; the AEAD key really changes.
        """
        sealer, opener = pair(CHACHA20_POLY1305, interval=2)
        frames = [sealer.seal(b"same") for _ in range(5)]
        # Same plaintext at counters 0 and 2: different keys, so the
        # ciphertexts differ beyond what the nonce alone would explain.
        for f in frames:
            self.assertEqual(opener.open(f), b"same")
        other_sealer, _ = pair(CHACHA20_POLY1305, interval=2**20)
        unratcheted = [other_sealer.seal(b"same") for _ in range(3)]
        self.assertEqual(frames[0], unratcheted[0])
        self.assertNotEqual(frames[2], unratcheted[2])

    def test_perRecordRatchetForgetsOldKeys(self) -> None:
        """
        With an interval of 1 a captured later state cannot open an earlier
        record: an opener built from the current secret fails on record 0.
        """
        sealer, _ = pair(interval=1)
        first = sealer.seal(b"secret")
        sealer.seal(b"later")
        captured = RecordOpener(AES_256_GCM, sealer._secret, 1)
        captured.counter = 0
        self.assertEqual(self.assertRaises(RemoteProtocolError, captured.open, first).code, "bad-record-mac")

    def test_sendCounterLimit(self) -> None:
        """
        A sealer at the counter limit refuses to seal instead of reusing a
        nonce.
        """
        sealer, _ = pair()
        sealer.counter = records.COUNTER_LIMIT
        e = self.assertRaises(LocalProtocolError, sealer.seal, b"x")
        self.assertEqual(e.code, "record-limit")

    def test_receiveCounterLimit(self) -> None:
        """
        A record at the counter limit is refused.
        """
        sealer, opener = pair()
        sealer.counter = opener.counter = records.COUNTER_LIMIT - 1
        opener.open(sealer.seal(b"last"))
        frame = records.HEADER.pack(30, 0x17, records.COUNTER_LIMIT) + b"\x00" * 21
        e = self.assertRaises(RemoteProtocolError, opener.open, frame)
        self.assertEqual(e.code, "record-limit")


class RecordBoundaryTests(unittest.TestCase):
    """
    The exact values of section 6 (found missing by mutation testing).
    """

    def test_headerLengthIsFrameLength(self) -> None:
        """
        The header's length field is exactly the frame's length after its
        four length bytes (1 + 8 + ciphertext and tag), for every small
        plaintext length, and the type is 0x17.
        """
        sealer, opener = pair()
        for n in range(48):
            frame = sealer.seal(b"p" * n)
            length, rtype, counter = records.HEADER.unpack_from(frame)
            self.assertEqual((length, rtype, counter), (len(frame) - 4, 0x17, n))
            self.assertEqual(len(frame), 13 + n + 16)
            self.assertEqual(opener.open(frame), b"p" * n)

    def test_emptyPlaintextRecord(self) -> None:
        """
        A record of an empty plaintext (header and tag only, 29 bytes) is
        not truncated: it opens (emptiness is the inner layer's concern);
        one byte less is C{truncated}.
        """
        sealer, opener = pair()
        frame = sealer.seal(b"")
        self.assertEqual(len(frame), 29)
        self.assertEqual(opener.open(frame), b"")
        e = self.assertRaises(RemoteProtocolError, opener.open, frame[:28])
        self.assertEqual(e.code, "truncated")

    def test_counterLimitIsTheSpecValue(self) -> None:
        """
        Section 6: the counter limit is 2^64 - 1, reached by counting: the
        record at 2^64 - 2 is sealed and opened, the next seal (counter
        now 2^64 - 1, computed, not the module's constant object) refuses
        with C{record-limit}.
        """
        sealer, opener = pair()
        sealer.counter = opener.counter = 2**64 - 2
        self.assertEqual(opener.open(sealer.seal(b"last")), b"last")
        self.assertEqual(sealer.counter, int("18446744073709551615"))
        e = self.assertRaises(LocalProtocolError, sealer.seal, b"one too many")
        self.assertEqual(e.code, "record-limit")

    def test_rekeyIntervalAtLeastOne(self) -> None:
        """
        A direction refuses a key-update interval below 1 (0 would never
        advance and divide by zero); 1 is allowed.
        """
        self.assertRaises(ValueError, RecordSealer, AES_256_GCM, SECRET, 0)
        self.assertRaises(ValueError, RecordOpener, AES_256_GCM, SECRET, 0)
        self.assertEqual(RecordSealer(AES_256_GCM, SECRET, 1).rekey_interval, 1)


class ContextTests(unittest.TestCase):
    """
    A direction keeps an AEAD context only while it is busy.
    """

    def test_coldUntilBusy(self) -> None:
        """
        A new direction is cold; the L{records.WARM_AFTER}th record keeps
        its context, and every record opens meanwhile.
        """
        sealer, opener = pair()
        for i in range(records.WARM_AFTER):
            self.assertEqual((sealer.warm, opener.warm), (False, False))
            self.assertEqual(opener.open(sealer.seal(b"%d" % i)), b"%d" % i)
        self.assertEqual((sealer.warm, opener.warm), (True, True))

    def test_releaseKeepsKeysAndCounters(self) -> None:
        """
        L{release} makes a warm direction cold without losing its place:
        the records that follow open, in order, and it warms again.
        """
        for suite in SUITES.values():
            sealer, opener = pair(suite)
            for i in range(5):
                opener.open(sealer.seal(b"before %d" % i))
            sealer.release()
            opener.release()
            self.assertEqual((sealer.warm, opener.warm, sealer.counter, opener.counter),
                             (False, False, 5, 5))
            for i in range(records.WARM_AFTER + 4):
                # cold again for exactly as long as a new direction
                self.assertEqual((sealer.warm, opener.warm), (i >= records.WARM_AFTER,) * 2, i)
                self.assertEqual(opener.open(sealer.seal(b"after %d" % i)), b"after %d" % i)
            self.assertEqual((sealer.warm, opener.warm), (True, True))

    def test_releaseOnOneSide(self) -> None:
        """
        Only one side releasing changes nothing on the wire: the other side
        opens what it seals, and the frames equal an unreleased sealer's.
        """
        sealer, opener = pair(interval=3)
        reference, _ = pair(interval=3)
        for i in range(10):
            if i % 4 == 0:
                sealer.release()
            frame = sealer.seal(b"m%d" % i)
            self.assertEqual(frame, reference.seal(b"m%d" % i))
            self.assertEqual(opener.open(frame), b"m%d" % i)

    def test_ratchetDropsTheKeptContext(self) -> None:
        """
        A kept context is for one key: after the ratchet the next record is
        sealed under the new key (an opener still on the old key fails).
        """
        sealer, opener = pair(interval=records.WARM_AFTER + 1)
        for i in range(records.WARM_AFTER + 1):
            opener.open(sealer.seal(b"x"))
        self.assertFalse(sealer.warm)  # the ratchet just replaced the key
        stale = RecordOpener(AES_256_GCM, SECRET, 2**20)
        stale.counter = sealer.counter
        frame = sealer.seal(b"new key")
        self.assertEqual(self.assertRaises(RemoteProtocolError, stale.open, frame).code, "bad-record-mac")
        self.assertEqual(opener.open(frame), b"new key")

    def test_busyDirectionWarmsAgainAfterRatchet(self) -> None:
        """
        A busy direction keeps a context again right after each ratchet:
        with a ratchet every 2 records, from the L{records.WARM_AFTER}th
        record on, a context is kept after every record that does not end
        a key's span.
        """
        sealer, opener = pair(interval=2)
        for i in range(12):
            opener.open(sealer.seal(b"x"))
            if i >= records.WARM_AFTER - 1:
                self.assertEqual(sealer.warm, sealer.counter % 2 == 1, i)
