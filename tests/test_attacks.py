"""
Attacks on the relay, in memory, each failing closed: the attacked
connection closes with a specific error, the relay's state is unchanged,
nothing reaches another user, and a canary chat keeps working.
(Deeper per-layer failure tests live in test_handshake, test_records,
test_relay and test_client_core; these drive the real relay protocol.)
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from twisted.python.monkey import MonkeyPatcher
from twisted.trial import unittest

from securechat.crypto import handshake, keys, records
from securechat.crypto.schedule import finished_mac
from securechat.errors import Alert as AlertCode
from securechat.errors import LocalProtocolError
from securechat.server.directory import UserEntry
from securechat.server.limits import Limits
from securechat.wire.framing import encode_frame
from securechat.wire.messages import (
    Alert,
    Auth,
    Hello,
    Ping,
    UserIdentity,
    encode_frame_message,
    encode_inner,
)
from securechat.wire.relay import (
    CLIENT_MESSAGES,
    FROM_SERVER,
    ChatAccept,
    ChatRequest,
    ListOnline,
    OnlineList,
    Relay,
    Welcome,
)
from tests.attack_tools import MITM, Canary, RawClient, assert_fail_closed, connect_raw, connect_through
from tests.relay_harness import Harness, user_key

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
HANDSHAKE_FAILED = encode_frame_message(Alert(AlertCode.HANDSHAKE_FAILED, ""))


class AttackCase(unittest.TestCase):
    limits = Limits()

    def setUp(self) -> None:
        self.h = Harness(self.limits)
        self.canary = Canary(self.h)
        self.online = set(self.h.relay.sessions)

    def raw(self, host: str = "10.6.6.6"):  # type: ignore[no-untyped-def]
        raw, server, link = connect_raw(self.h, host)
        return raw, server

    def logged_in(self, name: str = "alice"):  # type: ignore[no-untyped-def]
        raw, server = self.raw()
        raw.login(name)
        self.h.pump()
        self.assertTrue(any(isinstance(m, Welcome) for m in
                            [e.message for e in raw.events if hasattr(e, "message")]))
        # everyone else must stay online; the attacker's own session ends
        self.online = set(self.h.relay.sessions) - {name}
        return raw, server

    def send(self, raw: RawClient, data: bytes, one_byte_at_a_time: bool = False) -> None:
        if one_byte_at_a_time:
            for i in range(len(data)):
                raw.write(data[i:i + 1])
                self.h.pump()
        else:
            raw.write(data)
            self.h.pump()

    def closed(self, server, code: str) -> None:  # type: ignore[no-untyped-def]
        assert_fail_closed(self, self.h, server, code, self.canary, self.online)


class FramingAttacks(AttackCase):
    """
    Length prefixes and malformed bodies, before and after authentication,
    whole and one byte at a time.
    """

    def lengths(self, maximum: int, frame_type: int, after_auth: bool, by_byte: bool) -> None:
        cases = [(0, "empty-frame"), (maximum + 1, "frame-too-large"),
                 (2**31, "frame-too-large"), (2**32 - 1, "frame-too-large")]
        for length, code in cases:
            raw, server = self.logged_in() if after_auth else self.raw()
            self.send(raw, length.to_bytes(4, "big"), by_byte)
            self.closed(server, code)
        # length 1: just a type byte, which is not a whole message
        raw, server = self.logged_in() if after_auth else self.raw()
        self.send(raw, (1).to_bytes(4, "big") + bytes([frame_type]), by_byte)
        self.closed(server, "truncated")
        # length = maximum: accepted, and the body is awaited
        raw, server = self.logged_in() if after_auth else self.raw()
        self.send(raw, maximum.to_bytes(4, "big") + bytes([frame_type]), by_byte)
        self.assertIsNone(server.error)
        self.assertFalse(server.transport.disconnecting)
        self.canary.check(self)

    def test_lengthsBeforeAuthentication(self) -> None:
        """
        Lengths 0, 1, max, max+1, 2^31 and 2^32-1 before authentication:
        the oversized ones refused from the four length bytes alone.
        """
        self.lengths(self.limits.max_handshake_frame, 0x01, after_auth=False, by_byte=False)

    def test_lengthsAfterAuthentication(self) -> None:
        """
        The same after authentication, against the larger maximum.
        """
        self.lengths(self.limits.max_frame, 0x17, after_auth=True, by_byte=False)

    def test_lengthsOneByteAtATime(self) -> None:
        """
        The length suite again with every byte delivered on its own.
        """
        self.lengths(self.limits.max_handshake_frame, 0x01, after_auth=False, by_byte=True)
        self.lengths(self.limits.max_frame, 0x17, after_auth=True, by_byte=True)

    def test_helloCutAndPadded(self) -> None:
        """
        A HELLO one byte short, or with a byte too many, fails as truncated
        or trailing; also byte by byte.
        """
        hello = encode_frame_message(Hello(1, 1, b"n" * 32, b"\x09" * 32, (1, 2)))
        body = hello[4:]
        for by_byte in (False, True):
            for variant, code in ((body[:-1], "truncated"), (body + b"\x00", "trailing-bytes")):
                raw, server = self.raw()
                self.send(raw, len(variant).to_bytes(4, "big") + variant, by_byte)
                self.closed(server, code)

    def inner(self, code: int, body: bytes, length: int | None = None) -> bytes:
        n = len(body) if length is None else length
        return bytes([code]) + n.to_bytes(4, "big") + body

    def test_relayMessagesCutPaddedAndMislengthed(self) -> None:
        """
        Every client message inside a record: cut by one byte, one byte
        too long, and with its inner length off by one either way, zero or
        all ones; each fails closed with the codec's specific error, whole
        and one byte at a time.
        """
        examples = {cls: cls(*[{"name": "bob", "bytes32": b"payload"}[k] for k in cls.FIELDS])
                    for cls in CLIENT_MESSAGES}
        for cls, message in examples.items():
            body = message.encode_body()
            variants = [(self.inner(cls.TYPE, body + b"\x00"), "trailing-bytes"),
                        (self.inner(cls.TYPE, body, len(body) + 1), "truncated"),
                        (self.inner(cls.TYPE, body, 0xFFFFFFFF), "truncated")]
            if body:
                variants += [(self.inner(cls.TYPE, body[:-1]), "truncated"),
                             (self.inner(cls.TYPE, body, len(body) - 1), "truncated"),
                             (self.inner(cls.TYPE, body, 0), "truncated")]
            for by_byte in (False, True):
                for plaintext, code in variants:
                    raw, server = self.logged_in()
                    self.send(raw, raw.seal(plaintext), by_byte)
                    self.closed(server, code)

    def test_emptyRecord(self) -> None:
        """
        A record carrying no message at all fails with C{empty-record}.
        """
        raw, server = self.logged_in()
        self.send(raw, raw.seal(b""))
        self.closed(server, "empty-record")

    def test_unknownInnerType(self) -> None:
        """
        An inner type the relay does not know fails with C{unknown-type}.
        """
        raw, server = self.logged_in()
        self.send(raw, raw.seal(self.inner(0x7E, b"")))
        self.closed(server, "unknown-type")


class StateMachineAttacks(AttackCase):
    """
    Messages in the wrong state.
    """

    def test_everyFrameTypeBeforeHello(self) -> None:
        """
        In WAIT_HELLO: a HELLO_REPLY or a record is unexpected, an unknown
        type is unknown, an alert ends the connection.
        """
        for frame, code in (
            (encode_frame(0x02, b"\x00" * 68), "unexpected-message"),
            (encode_frame(0x17, b"\x00" * 30), "unexpected-message"),
            (encode_frame(0x55, b""), "unknown-type"),
            (encode_frame_message(Alert(AlertCode.INTERNAL_ERROR, "x")), "peer-alert"),
        ):
            raw, server = self.raw()
            self.send(raw, frame)
            self.closed(server, code)

    def start(self):  # type: ignore[no-untyped-def]
        raw, server = self.raw()
        raw.connection = handshake.Connection(handshake.Config(
            handshake.CLIENT_SERVER, handshake.Role.INITIATOR, user_key("alice"),
            UserIdentity("alice"), registry=FROM_SERVER))
        raw.connection.initiate()
        raw.write(raw.connection.data_to_send())
        # receive the reply and the relay's AUTH, but do not answer yet
        conn = raw.connection
        raw.connection = None
        self.h.pump()
        events = conn.receive_data(raw.received)
        self.assertEqual(len(events), 1)
        return raw, server, conn

    def transcript_hash(self, conn, *more: bytes) -> bytes:  # type: ignore[no-untyped-def]
        """
        The hash the initiator's AUTH covers: its transcript (HELLO,
        HELLO_REPLY and the relay's AUTH body, appended on acceptance)
        followed by C{more}.
        """
        return conn._transcript_hash(conn._pending_auth.encode_body(), *more)

    def test_everyFrameTypeInEveryState(self) -> None:
        """
        Each frame type in each of the relay's states (waiting for HELLO,
        for AUTH, established) is either the one expected there or fails
        closed with its specific error.
        """
        hello = encode_frame_message(Hello(1, 1, b"n" * 32, b"\x09" * 32, (1,)))
        reply = encode_frame(0x02, b"\x00" * 68)
        alert = encode_frame_message(Alert(AlertCode.INTERNAL_ERROR, "x"))
        garbage_record = encode_frame(0x17, b"\x00" * 40)
        unknown = encode_frame(0x55, b"")
        expected = {
            "wait-auth": {"hello": "unexpected-message", "reply": "unexpected-message",
                          "alert": "unauthenticated-alert", "record": "bad-handshake-record",
                          "unknown": "unknown-type"},
            "established": {"hello": "unexpected-message", "reply": "unexpected-message",
                            "alert": "unauthenticated-alert", "record": "bad-record-mac",
                            "unknown": "unknown-type"},
        }
        frames = {"hello": hello, "reply": reply, "alert": alert, "record": garbage_record,
                  "unknown": unknown}
        for state, outcomes in expected.items():
            for name, code in outcomes.items():
                if state == "wait-auth":
                    raw, server, conn = self.start()
                else:
                    raw, server = self.logged_in()
                self.send(raw, frames[name])
                self.assertEqual(server.error.code if server.error else None, code, (state, name))
                self.closed(server, code)

    def test_secondHelloInHandshake(self) -> None:
        """
        A second HELLO after the first is an unexpected message.
        """
        raw, server, conn = self.start()
        self.send(raw, encode_frame_message(Hello(1, 1, b"n" * 32, b"\x09" * 32, (1,))))
        self.closed(server, "unexpected-message")

    def test_relayMessageBeforeAuthentication(self) -> None:
        """
        A relay command sealed under the handshake key instead of AUTH is
        an unexpected message.
        """
        raw, server, conn = self.start()
        assert conn._sealer is not None
        self.send(raw, conn._sealer.seal(encode_inner([ListOnline()])))
        self.closed(server, "unexpected-message")

    def test_skippedSignature(self) -> None:
        """
        An AUTH whose signature is empty (but whose Finished covers that)
        fails with C{bad-signature}.
        """
        raw, server, conn = self.start()
        identity = UserIdentity("alice")
        partial = Auth(identity, keys.ED25519, b"", b"")
        fin = finished_mac(conn._hs_send, self.transcript_hash(
            conn, partial.identity_bytes(), partial.signature_bytes()))
        auth = Auth(identity, keys.ED25519, b"", fin)
        self.send(raw, conn._sealer.seal(encode_inner([auth])))
        self.closed(server, "bad-signature")

    def test_skippedFinished(self) -> None:
        """
        An AUTH with a valid signature and an all-zero Finished fails with
        C{bad-finished}.
        """
        raw, server, conn = self.start()
        identity = UserIdentity("alice")
        from securechat.crypto.schedule import signature_content
        content = signature_content(1, b"initiator", self.transcript_hash(conn, identity.encode()))
        scheme, signature = keys.sign(user_key("alice"), content)
        auth = Auth(identity, scheme, signature, b"\x00" * 32)
        self.send(raw, conn._sealer.seal(encode_inner([auth])))
        self.closed(server, "bad-finished")

    def test_duplicatedAuth(self) -> None:
        """
        The AUTH record sent twice: the copy arrives where application
        records are expected and fails with C{bad-record-mac}; the session
        it belonged to is not kept.
        """
        raw, server, conn = self.start()
        conn.accept_peer(SERVER_PUBLIC())
        auth = conn.data_to_send()
        self.send(raw, auth + auth)
        self.assertEqual(server.error.code, "bad-record-mac")
        self.assertNotIn("alice", self.h.relay.sessions)
        self.canary.check(self)

    def test_plaintextAfterEncryption(self) -> None:
        """
        After the handshake a plaintext HELLO is an unexpected message and
        a plaintext alert is not believed (C{unauthenticated-alert}).
        """
        for frame, code in (
                (encode_frame_message(Hello(1, 1, b"n" * 32, b"\x09" * 32, (1,))),
                 "unexpected-message"),
                (encode_frame_message(Alert(AlertCode.SHUTTING_DOWN, "")), "unauthenticated-alert")):
            raw, server = self.logged_in()
            self.send(raw, frame)
            self.closed(server, code)

    def test_lastHandshakeMessageAndApplicationFrameTogether(self) -> None:
        """
        The AUTH record and a first command in one write both work.
        """
        raw, server, conn = self.start()
        conn.accept_peer(SERVER_PUBLIC())
        conn.send(ListOnline())
        raw.connection = conn
        self.send(raw, conn.data_to_send())
        messages = [e.message for e in raw.events if hasattr(e, "message")]
        self.assertEqual(messages[0], Welcome("alice", self.limits.max_payload))
        self.assertEqual(messages[1], OnlineList(("alice", "carol", "dave"), 3))


def SERVER_PUBLIC():  # type: ignore[no-untyped-def]
    from tests.relay_harness import SERVER_KEY
    return SERVER_KEY.public_key()


class HandshakeInputAttacks(AttackCase):
    """
    Bad key shares and bad signatures.
    """

    def test_lowOrderKeyShares(self) -> None:
        """
        Low-order and non-canonical encodings of low-order X25519 points in
        the HELLO fail with the uniform HANDSHAKE_FAILED.
        """
        for point in ("00" * 32, "01" + "00" * 31, "ecff" + "ff" * 29 + "7f",
                      "edff" + "ff" * 29 + "7f", "eeff" + "ff" * 29 + "7f",
                      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"):
            raw, server = self.raw()
            self.send(raw, encode_frame_message(Hello(1, 1, b"n" * 32, bytes.fromhex(point), (1,))))
            self.closed(server, "bad-key-share")
            self.assertEqual(raw.received, HANDSHAKE_FAILED)

    def test_nonCanonicalValidPointReduced(self) -> None:
        """
        A non-canonical encoding of a valid point (9 + p) is reduced as RFC
        7748 requires, not refused: the relay answers with its HELLO_REPLY.
        """
        p = 2**255 - 19
        share = (9 + p).to_bytes(32, "little")
        raw, server = self.raw()
        self.send(raw, encode_frame_message(Hello(1, 1, b"n" * 32, share, (1,))))
        self.assertIsNone(server.error)
        self.assertEqual(raw.frames()[0][4], 0x02)

    def test_malformedEcdsaSignatures(self) -> None:
        """
        High-S, BER long-form lengths, a superfluous leading zero, r = 0,
        s = 0, r = n and trailing bytes are all refused, as non-canonical or
        invalid.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        message = b"transcript"
        scheme, good = keys.sign(key, message)
        keys.verify(key.public_key(), scheme, good, message)
        r, s = decode_dss_signature(good)

        def der_int(v: int, pad: bool = False) -> bytes:
            b = v.to_bytes((v.bit_length() + 8) // 8 or 1, "big")
            if pad:
                b = b"\x00" + b
            return b"\x02" + bytes([len(b)]) + b
        body = der_int(r) + der_int(s)
        bad = {
            "high-S": encode_dss_signature(r, P256_ORDER - s),
            "long-form length": b"\x30\x81" + bytes([len(body)]) + body,
            "leading zero": b"\x30" + bytes([len(body) + 1]) + der_int(r, pad=True) + der_int(s),
            "r = 0": encode_dss_signature(0, s),
            "s = 0": encode_dss_signature(r, 0),
            "r = n": encode_dss_signature(P256_ORDER, s),
            "trailing": good + b"\x00",
        }
        for name, signature in bad.items():
            e = self.assertRaises(keys.SignatureError, keys.verify, key.public_key(), scheme,
                                  signature, message)
            self.assertIn(e.reason, ("non-canonical", "invalid"), name)

    def test_highSThroughHandshake(self) -> None:
        """
        A registered P-256 user whose client sends a high-S signature is
        refused with C{bad-signature}.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        self.h.directory.add(UserEntry("frank", key.public_key()))
        original = keys.sign

        def high_s(private, message):  # type: ignore[no-untyped-def]
            scheme, sig = original(private, message)
            if private is not key:
                return scheme, sig  # the relay's own signature stays honest
            r, s = decode_dss_signature(sig)
            return scheme, encode_dss_signature(r, P256_ORDER - s)
        raw, server = self.raw()
        MonkeyPatcher((keys, "sign", high_s)).runWithPatches(self._login_as, raw, "frank", key)
        self.closed(server, "bad-signature")

    def _login_as(self, raw: RawClient, name: str, key) -> None:  # type: ignore[no-untyped-def]
        raw.login(name, key)
        self.h.pump()

    def test_pkcs1v15WherePssExpected(self) -> None:
        """
        A PKCS#1 v1.5 RSA signature is refused where PSS is expected, under
        the PSS scheme (invalid) and under its own (scheme mismatch), and
        through a handshake at the relay.
        """
        key = rsa.generate_private_key(65537, 2048)
        message = b"transcript"
        v15 = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        e = self.assertRaises(keys.SignatureError, keys.verify, key.public_key(), keys.RSA_PSS_SHA256,
                              v15, message)
        self.assertEqual(e.reason, "invalid")
        e = self.assertRaises(keys.SignatureError, keys.verify, key.public_key(), 0x0401, v15, message)
        self.assertEqual(e.reason, "scheme-mismatch")
        self.h.directory.add(UserEntry("grace", key.public_key()))

        original = keys.sign

        def pkcs1(private, content):  # type: ignore[no-untyped-def]
            if private is not key:
                return original(private, content)  # the relay's own signature stays honest
            return keys.RSA_PSS_SHA256, private.sign(content, padding.PKCS1v15(), hashes.SHA256())
        raw, server = self.raw()
        MonkeyPatcher((keys, "sign", pkcs1)).runWithPatches(self._login_as, raw, "grace", key)
        self.closed(server, "bad-signature")

    def test_rsaSizesAtRegistration(self) -> None:
        """
        RSA keys below 2048 or above 4096 bits cannot be registered.
        """
        small = rsa.generate_private_key(65537, 1024).public_key()
        large = rsa.generate_private_key(65537, 4160).public_key()
        self.assertIn("too weak", str(self.assertRaises(keys.KeyFormatError, keys.check_public_key, small)))
        self.assertIn("too large", str(self.assertRaises(keys.KeyFormatError, keys.check_public_key, large)))


class HandshakeLogicAttacks(AttackCase):
    """
    Replays, reflection and uniform failures.
    """

    def recorded_login(self) -> list[bytes]:
        """
        Frames an honest client sent during a real login, seen by a MITM.
        """
        seen: list[bytes] = []

        def record(direction: str, frame: bytes) -> list[bytes]:
            if direction == "up":
                seen.append(frame)
            return [frame]
        client, _ = connect_through(self.h, "alice", MITM(record))
        self.h.pump()
        self.assertTrue(client.logged_in)
        return seen

    def test_replayOnNewConnection(self) -> None:
        """
        An honest client's recorded HELLO and AUTH replayed on a new
        connection fail with C{bad-handshake-record}.
        """
        hello, auth = self.recorded_login()[:2]
        self.online = set(self.h.relay.sessions)
        raw, server = self.raw()
        self.send(raw, hello)
        self.send(raw, auth)
        self.closed(server, "bad-handshake-record")

    def test_replayAfterRestart(self) -> None:
        """
        The same replay against a restarted relay (same key and
        certificate, fresh state) fails the same way.
        """
        hello, auth = self.recorded_login()[:2]
        restarted = Harness(self.limits)
        self.h = restarted
        self.canary = Canary(restarted)
        self.online = set(restarted.relay.sessions)
        raw, server = self.raw()
        self.send(raw, hello + auth)
        self.closed(server, "bad-handshake-record")

    def test_serverFlightReflected(self) -> None:
        """
        The relay's own HELLO_REPLY and AUTH sent back to it are an
        unexpected message.
        """
        raw, server = self.raw()
        raw.login("alice")
        assert raw.connection is not None
        raw.connection = None  # stop answering
        self.h.pump()
        raw2, server2 = self.raw()
        self.send(raw2, raw.received)
        self.closed(server2, "unexpected-message")

    def test_authRewrittenInTransit(self) -> None:
        """
        A man in the middle who swaps in another AUTH record (he cannot
        build a valid one: it is encrypted) makes the handshake fail.
        """
        def rewrite(direction: str, frame: bytes) -> list[bytes]:
            if direction == "up" and frame[4] == 0x17 and int.from_bytes(frame[5:13], "big") == 0:
                return [frame[:13] + bytes(len(frame) - 13)]
            return [frame]
        client, server = connect_through(self.h, "alice", MITM(rewrite))
        self.h.pump()
        self.assertFalse(client.logged_in)
        self.closed(server, "bad-handshake-record")

    def test_uniformFailures(self) -> None:
        """
        An unknown user, a revoked user and a bad signature end with the
        same authenticated HANDSHAKE_FAILED alert without a reason, in a
        record of the same length; a bad point and a bad Finished MAC (no
        key the client could open a record with) with byte-identical
        plaintext alerts.
        """
        sealed = []
        self.h.directory.add(UserEntry("rupert", user_key("rupert").public_key(), revoked=True))
        for name, key in (("mallory", user_key("mallory")), ("rupert", user_key("rupert")),
                          ("alice", user_key("eve"))):
            raw, server = self.raw()
            raw.login(name, key)
            self.h.pump()
            [failed] = [e for e in raw.events if hasattr(e, "error")]
            self.assertEqual(failed.error.code, "peer-alert")
            self.assertEqual(failed.error.peer_alert, AlertCode.HANDSHAKE_FAILED)
            self.assertEqual(failed.error.detail, "peer closed the connection: HANDSHAKE_FAILED")
            sealed.append(raw.frames()[-1])
        self.assertEqual({(len(f), f[4]) for f in sealed}, {(len(sealed[0]), 0x17)})
        endings = []
        # bad point
        raw, server = self.raw()
        self.send(raw, encode_frame_message(Hello(1, 1, b"n" * 32, bytes(32), (1,))))
        endings.append(raw.frames()[-1])
        # bad Finished
        raw, server, conn = StateMachineAttacks.start(self)  # type: ignore[arg-type]
        from securechat.crypto.schedule import signature_content
        identity = UserIdentity("alice")
        content = signature_content(1, b"initiator", conn._transcript_hash(identity.encode()))
        scheme, sig = keys.sign(user_key("alice"), content)
        self.send(raw, conn._sealer.seal(encode_inner([Auth(identity, scheme, sig, b"\x01" * 32)])))
        endings.append(raw.frames()[-1])
        self.assertEqual(endings, [HANDSHAKE_FAILED] * 2)
        self.canary.check(self)


class RecordAttacks(AttackCase):
    """
    Tampering with records after login.
    """

    def record(self, raw: RawClient) -> bytes:
        return raw.seal(encode_inner([ListOnline()]))

    def test_bitFlips(self) -> None:
        """
        Flipping a bit in the header, the counter, the ciphertext or the tag
        (a sample of each) fails closed, and nothing is answered.
        """
        for bit in (0, 33, 37, 40, 47, 60, 103, 104, 150, -1, -60, -128):
            raw, server = self.logged_in()
            good = bytearray(self.record(raw))
            index = bit if bit >= 0 else len(good) * 8 + bit
            good[index // 8] ^= 1 << (index % 8)
            self.send(raw, bytes(good))
            self.assertIsNotNone(server.error, bit)
            # the type byte 0x17 -> 0x15 reads as a plaintext ALERT after
            # the handshake: not believed
            self.assertIn(server.error.code, {"bad-record-mac", "record-gap", "record-replayed",
                                              "frame-too-large", "truncated", "unexpected-message",
                                              "unknown-type", "unauthenticated-alert",
                                              "trailing-bytes", "bad-value"}, bit)
            self.assertNotIn(OnlineList, [type(e.message) for e in raw.events if hasattr(e, "message")][1:])
            self.canary.check(self)

    def test_truncatedTag(self) -> None:
        """
        A record whose tag is cut short (length adjusted) fails with
        C{bad-record-mac}.
        """
        raw, server = self.logged_in()
        record = self.record(raw)[:-1]
        record = (len(record) - 4).to_bytes(4, "big") + record[4:]
        self.send(raw, record)
        self.closed(server, "bad-record-mac")

    def test_duplicatedSwappedDropped(self) -> None:
        """
        A record sent twice is a replay; two swapped, or one dropped, is a
        gap.
        """
        for arrange, code in ((lambda a, b: a + a, "record-replayed"),
                              (lambda a, b: b + a, "record-gap"),
                              (lambda a, b: b, "record-gap")):
            raw, server = self.logged_in()
            first, second = self.record(raw), self.record(raw)
            self.send(raw, arrange(first, second))
            self.closed(server, code)

    def test_counterAtLimit(self) -> None:
        """
        Section 6: a counter of 2^64 - 1 is never sent.  A client sealer at
        that counter refuses with C{record-limit} (a L{LocalProtocolError},
        no nonce reused); the relay, with its receiving counter brought to
        2^64 - 2, accepts the record at 2^64 - 2 and refuses one claiming
        2^64 - 1 with C{record-limit}, before any decryption.
        """
        raw, server = self.logged_in()
        sealer = raw.connection._sealer  # type: ignore[union-attr]
        sealer.counter = records.COUNTER_LIMIT
        e = self.assertRaises(LocalProtocolError, sealer.seal, b"x")
        self.assertEqual(e.code, "record-limit")
        opener = server.connection._opener
        sealer.counter = opener.counter = records.COUNTER_LIMIT - 1
        self.send(raw, sealer.seal(encode_inner([ListOnline()])))
        self.assertIsNone(server.error)
        self.assertEqual(opener.counter, records.COUNTER_LIMIT)
        # What a sender past the limit would send: the right counter, any body.
        frame = records.HEADER.pack(9 + 16 + 9, records.RECORD, records.COUNTER_LIMIT) + b"\x00" * 25
        self.send(raw, frame)
        self.closed(server, "record-limit")

    def test_keepaliveFlood(self) -> None:
        """
        33 consecutive records of nothing but PING are cut with
        C{limit-exceeded}; 32 are fine.
        """
        raw, server = self.logged_in()
        for _ in range(32):
            self.send(raw, raw.seal(encode_inner([Ping(b"")])))
        self.assertIsNone(server.error)
        self.send(raw, raw.seal(encode_inner([Ping(b"")])))
        self.closed(server, "limit-exceeded")

    def test_longIdleSessionSurvives(self) -> None:
        """
        The relay's own keepalives, answered, never trip that limit: a
        session idle for a hundred keepalive periods stays.
        """
        h = Harness(Limits(idle_timeout=10))
        client = h.login("alice")
        h.network.advance(1000)
        self.assertFalse(client.ended)
        self.assertIn("alice", h.relay.sessions)


class RelayAttacks(AttackCase):
    """
    Abusing the relay's commands.
    """

    limits = Limits(rate=1e9, burst=10**9)

    def test_cannotClaimAnotherSender(self) -> None:
        """
        RELAY names only the recipient; the relay stamps the sender, so
        alice cannot make dave receive something "from carol", and relaying
        to someone she is not chatting with fails.
        """
        alice = self.h.login("alice")
        alice.send(Relay("dave", b"I am carol"))
        self.h.pump()
        self.assertEqual(self.canary.dave.take(), [])
        self.assertEqual(alice.take()[0].reason, 13)  # NO_CHAT
        self.canary.check(self)

    def test_tenThousandRequests(self) -> None:
        """
        10,000 chat requests from one user leave at most
        C{max_outgoing_requests} pending; the rest are declined, and the
        relay's request table stays bounded.
        """
        attacker = self.h.login("alice")
        targets = [self.h.login(n) for n in ("bob", "eve", "frank", "grace", "heidi", "ivan", "judy")]
        names = ["bob", "eve", "frank", "grace", "heidi", "ivan", "judy", "nobody", "alice"]
        for i in range(0, 10_000, 500):
            attacker.send(*[ChatRequest(names[(i + j) % len(names)]) for j in range(500)])
            self.h.pump()
            self.assertLessEqual(len(self.h.relay._requests), self.limits.max_outgoing_requests)
        self.assertLessEqual(len(self.h.relay.sessions["alice"].outgoing),
                             self.limits.max_outgoing_requests)
        self.canary.check(self)
        self.assertTrue(all(t.logged_in and not t.ended for t in targets))


class ExhaustionAttacks(AttackCase):
    """
    Resource exhaustion, with the canary chatting throughout.
    """

    def test_twoHundredHalfOpen(self) -> None:
        """
        200 connections that never finish the handshake (10 per address)
        are held within the caps, then all cut at the handshake deadline;
        the canary keeps chatting and the gate empties.
        """
        servers = [self.raw(host=f"10.9.{i // 10}.{i % 10}")[1] for i in range(200)]
        self.assertEqual(self.h.relay.gate.total, 200)
        self.canary.check(self)
        self.h.network.advance(self.limits.handshake_timeout + 1)
        self.assertTrue(all(s.error is not None and s.error.code == "timeout" for s in servers))
        self.assertEqual(self.h.relay.gate.total, 0)
        self.canary.check(self)

    def test_handshakeFloodFromOneAddress(self) -> None:
        """
        One address gets C{max_unauthenticated_per_host} connections in the
        handshake; the next is refused with LIMIT_EXCEEDED, others still
        get in.
        """
        per_host = self.limits.max_unauthenticated_per_host
        for _ in range(per_host):
            self.raw(host="10.66.0.1")
        raw, server = self.raw(host="10.66.0.1")
        self.assertEqual(raw.frames()[0][5], AlertCode.LIMIT_EXCEEDED)
        other, other_server = self.raw(host="10.66.0.2")
        self.assertEqual(other.received, b"")
        self.assertIsNone(other_server.error)
        self.canary.check(self)

    def test_globalCap(self) -> None:
        """
        Past C{max_unauthenticated} connections in all, new ones are refused.
        """
        limit = self.limits.max_unauthenticated
        for i in range(limit):
            self.raw(host=f"10.70.{i // 200}.{i % 200}")
        raw, server = self.raw(host="10.71.0.1")
        self.assertEqual(raw.frames()[0][5], AlertCode.LIMIT_EXCEEDED)
        self.canary.check(self)

    def test_slowloris(self) -> None:
        """
        One byte every three seconds does not keep a handshake alive past
        its deadline.
        """
        raw, server = self.raw()
        hello = encode_frame_message(Hello(1, 1, b"n" * 32, b"\x09" * 32, (1,)))
        for i in range(5):
            raw.write(hello[i:i + 1])
            self.h.network.advance(3)
        self.closed(server, "timeout")

    def test_thousandPartialMaximumFrames(self) -> None:
        """
        1,000 connections each sending a maximum-size handshake frame but
        its last byte: at most C{max_unauthenticated} are admitted, each
        buffering at most one frame, so the relay holds at most
        max_unauthenticated x (max_handshake_frame + 4) bytes of input.
        """
        maximum = self.limits.max_handshake_frame
        partial = maximum.to_bytes(4, "big") + b"\x01" + bytes(maximum - 2)
        admitted = []
        for i in range(1000):
            raw, server = self.raw(host=f"10.80.{i // 250}.{i % 250}")
            if hasattr(server, "connection"):
                raw.write(partial)
                admitted.append(server)
        self.h.pump()
        held = sum(s.connection._decoder.buffered for s in admitted)
        self.assertLessEqual(len(admitted), self.limits.max_unauthenticated)
        self.assertLessEqual(held, self.limits.max_unauthenticated * (maximum + 4))
        self.canary.check(self)

    def test_rateFloodWithCanary(self) -> None:
        """
        A user flooding far above its rate is cut off with LIMIT_EXCEEDED
        while the canary chats on.
        """
        raw, server = self.logged_in()
        self.send(raw, raw.seal(encode_inner([ListOnline()] * (self.limits.burst * 2 + 10))))
        self.closed(server, "limit-exceeded")

    def test_unreadRecipientWithCanary(self) -> None:
        """
        A recipient that never reads while its peer floods is disconnected
        after the stall timeout; memory stays bounded and the canary chats
        on meanwhile.
        """
        limits = Limits(queue_soft_limit=32 * 1024, queue_hard_limit=128 * 1024, stall_timeout=5,
                        rate=1e9, burst=10**9)
        h = Harness(limits)
        canary = Canary(h)
        alice, bob = h.login("alice"), h.login("bob")
        alice.send(ChatRequest("bob"))
        h.pump()
        bob.send(ChatAccept("alice"))
        h.pump()
        h.links["bob"].client_transport.reading = False
        for _ in range(300):
            alice.send(Relay("bob", b"z" * 1000))
            h.pump()
            if "bob" in h.relay.sessions:
                self.assertLessEqual(h.relay.sessions["bob"].queue.bytes,
                                     limits.queue_hard_limit)
        canary.check(self)
        h.network.advance(6)
        self.assertNotIn("bob", h.relay.sessions)
        canary.check(self)

