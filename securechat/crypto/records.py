# -*- test-case-name: tests.test_records -*-
"""
The record channel: AEAD records with explicit 64-bit counters.

One direction of a connection is a L{RecordSealer} on one side and a
L{RecordOpener} on the other, both made from the same traffic secret.  A
record frame is::

    uint32 length | uint8 type = 0x17 | uint64 counter | ciphertext || tag

and the first 13 bytes (length, type, counter) are the associated data.  The
nonce is the traffic IV XOR the counter (left-padded to 12 bytes), as in TLS
1.3.  The opener accepts only the very next counter: a smaller one is a
replay, a larger one means a record was dropped or reordered.

Every C{rekey_interval} records both sides replace the traffic secret with
L{next_traffic_secret} of it and forget the old one.  With an interval of 1
(end-to-end chats) every record has its own key, and a key captured later
cannot open earlier records.

An AEAD object holds about 2 KiB of native state (key schedule, cipher
contexts): two per connection would be most of an idle user's memory on the
relay.  So a direction only keeps one while it is busy.  It starts I{cold}:
each record is processed with a context made for it and dropped.  The
L{WARM_AFTER}th record since the direction went cold keeps its context for
the records that follow, and L{_Direction.release} (called when the
connection goes quiet) makes the direction cold again.  An idle user (a
login, then keepalives) thus holds none, and a busy one never builds a
context per record.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag

from securechat.crypto.schedule import next_traffic_secret, traffic_keys
from securechat.crypto.suites import AEAD, Suite
from securechat.errors import LocalProtocolError, RemoteProtocolError

RECORD = 0x17
HEADER = struct.Struct(">IBQ")
HEADER_LENGTH = HEADER.size  # 13
#: The largest counter a record may carry; a channel that reaches it closes.
COUNTER_LIMIT = 2**64 - 1
#: The record (counted since the direction went cold) from which a direction
#: keeps its AEAD context.
WARM_AFTER = 3


class _Direction:
    """
    The state shared by a sealer and an opener: suite, secret, key, IV and
    counter, the ratchet, and the AEAD context while the direction is busy.
    """

    __slots__ = ("suite", "counter", "rekey_interval", "_secret", "_key", "_aead", "_iv",
                 "_cold_uses")

    def __init__(self, suite: Suite, secret: bytes, rekey_interval: int) -> None:
        if rekey_interval < 1:
            raise ValueError("rekey_interval must be at least 1")
        self.suite = suite
        self.counter = 0
        self.rekey_interval = rekey_interval
        self._secret = secret
        self._key: bytes
        self._iv: int
        self._aead: AEAD | None = None
        self._cold_uses = 0
        self._install()

    def _install(self) -> None:
        key, iv = traffic_keys(self.suite, self._secret)
        self._key = key
        self._aead = None
        self._iv = int.from_bytes(iv, "big")

    def _context(self) -> AEAD:
        """
        An AEAD context for the current key, kept if the direction is busy.
        """
        aead = self.suite.factory(self._key)
        self._cold_uses += 1
        if self._cold_uses >= WARM_AFTER:
            self._aead = aead
        return aead

    @property
    def warm(self) -> bool:
        """
        Whether the direction keeps an AEAD context.
        """
        return self._aead is not None

    def release(self) -> None:
        """
        Drop the AEAD context (the connection went quiet): the direction is
        cold until it is busy again.  Keys, counter and ratchet are unchanged.
        """
        self._aead = None
        self._cold_uses = 0

    def _ratchet(self) -> None:
        self._secret = next_traffic_secret(self._secret)
        self._install()


class RecordSealer(_Direction):
    """
    Seals plaintexts into record frames for one direction.
    """

    __slots__ = ()

    def seal(self, plaintext: bytes) -> bytes:
        """
        Return the whole record frame for C{plaintext}.

        @raise LocalProtocolError: the counter limit is reached; the
            connection must be closed.
        """
        out: list[bytes] = []
        self.seal_into(plaintext, out)
        return b"".join(out)

    def seal_into(self, plaintext: bytes, out: list[bytes]) -> None:
        """
        Append the record frame for C{plaintext} to C{out}, as its header and
        its ciphertext (so the ciphertext is not copied to join them).

        @raise LocalProtocolError: as L{seal}.
        """
        counter = self.counter
        if counter >= COUNTER_LIMIT:
            raise LocalProtocolError("record-limit", "send counter exhausted")
        header = HEADER.pack(9 + len(plaintext) + self.suite.tag_length, RECORD, counter)
        out.append(header)
        aead = self._aead
        if aead is None:
            aead = self._context()
        out.append(aead.encrypt((self._iv ^ counter).to_bytes(12, "big"), plaintext, header))
        self.counter = counter = counter + 1
        if counter % self.rekey_interval == 0:
            self._ratchet()


class RecordOpener(_Direction):
    """
    Opens record frames for one direction, in strict counter order.
    """

    __slots__ = ()

    def open(self, frame: bytes) -> bytes:
        """
        Check and decrypt one whole record frame (header included).

        @raise RemoteProtocolError: C{record-replayed}, C{record-gap},
            C{record-limit}, C{truncated} or C{bad-record-mac}.
        """
        if len(frame) < HEADER_LENGTH + self.suite.tag_length:
            raise RemoteProtocolError("truncated", "record shorter than header and tag")
        counter = HEADER.unpack_from(frame)[2]
        if counter != self.counter:
            if counter < self.counter:
                raise RemoteProtocolError(
                    "record-replayed", f"record counter {counter}, expected {self.counter}"
                )
            raise RemoteProtocolError(
                "record-gap", f"record counter {counter}, expected {self.counter}"
            )
        if counter >= COUNTER_LIMIT:
            raise RemoteProtocolError("record-limit", "peer exhausted its counter")
        header = frame[:HEADER_LENGTH]
        aead = self._aead
        if aead is None:
            aead = self._context()
        try:
            plaintext = aead.decrypt(
                (self._iv ^ counter).to_bytes(12, "big"), memoryview(frame)[HEADER_LENGTH:], header)
        except InvalidTag:
            raise RemoteProtocolError("bad-record-mac", f"record {counter} failed authentication") from None
        self.counter = counter = counter + 1
        if counter % self.rekey_interval == 0:
            self._ratchet()
        return plaintext
