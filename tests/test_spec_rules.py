"""
One named test for each rule of docs/protocol.rst that had none: each
breaks the rule's input on purpose and asserts the specific error code
(and, at a boundary, that the last allowed value still passes, so a rule
loosened or tightened by one is caught too).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from twisted.trial import unittest

from securechat.crypto.config import (
    CLIENT_SERVER,
    DEFAULT_MAX_HANDSHAKE_FRAME,
    END_TO_END,
    REKEY_INTERVAL,
    Config,
    Role,
)
from securechat.crypto.events import HandshakeComplete, MessageReceived, PeerIdentityReceived
from securechat.crypto.handshake import Connection, State
from securechat.crypto.records import RecordOpener
from securechat.crypto.schedule import next_traffic_secret
from securechat.errors import RemoteProtocolError
from securechat.server.limits import Limits
from securechat.wire.e2e import E2E_MESSAGES, Text
from securechat.wire.messages import (
    AUTH,
    MAX_CHAIN,
    MAX_SUITES,
    Auth,
    CertificateIdentity,
    Hello,
    HelloReply,
    Ping,
    UserIdentity,
    encode_frame_message,
    encode_inner,
    parse_frame,
)
from tests.attack_tools import connect_raw
from tests.relay_harness import SERVER_KEY, Harness, user_key
from tests.support import DeterministicRandom, failure, run

ALICE = user_key("alice")
BOB = user_key("bob")


def _alice(context: int = END_TO_END, **kw):  # type: ignore[no-untyped-def]
    return Connection(Config(context, Role.INITIATOR, ALICE, UserIdentity("alice"), **kw))


def _bob(**kw):  # type: ignore[no-untyped-def]
    return Connection(Config(END_TO_END, Role.RESPONDER, BOB, UserIdentity("bob"), **kw))


def _accept(identity):  # type: ignore[no-untyped-def]
    return {"alice": ALICE, "bob": BOB}[identity.name].public_key() \
        if isinstance(identity, UserIdentity) else SERVER_KEY.public_key()


class HandshakeRuleTests(unittest.TestCase):
    """
    Section 5 and 4.6 rules.
    """

    def test_helloReplyVersion(self) -> None:
        """
        Rule 5.1 (initiator, on HELLO_REPLY): C{version} must be 1; a
        reply of version 2 (or 0) fails with C{unsupported-version}.
        """
        for version in (0, 2, 0xFFFF):
            a = _alice()
            a.initiate()
            hello = parse_frame(a.data_to_send(), Hello)
            reply = HelloReply(version, b"r" * 32, b"\x09" + b"\x00" * 31, hello.suites[0])
            self.assertEqual(failure(a.receive_data(encode_frame_message(reply))),
                             "unsupported-version", version)

    def test_authAfterHandshake(self) -> None:
        """
        Rule 4.4: AUTH is allowed only in the one handshake record each
        side sends; a well-formed AUTH in an application record fails with
        C{unexpected-message}.
        """
        a, b = _alice(), _bob()
        ea, eb = run(a, b, _accept, _accept)
        self.assertIsInstance(eb[-1], HandshakeComplete)
        auth = Auth(UserIdentity("alice"), 0x0807, b"s" * 64, b"f" * 32)
        body = auth.encode_body()
        a.send_inner(bytes([AUTH]) + len(body).to_bytes(4, "big") + body)
        events = b.receive_data(a.data_to_send())
        self.assertEqual(failure(events), "unexpected-message")
        self.assertIn("AUTH", b.error.detail)  # type: ignore[union-attr]

    def test_reflectedKeyShareAtResponder(self) -> None:
        """
        Rule 5.1 step 4 at the responder: a HELLO whose key share equals
        the one the responder draws fails with C{reflected-key-share}
        (here the initiator knows the responder's random source).
        """
        random = DeterministicRandom(b"responder")
        b = _bob(random=random)
        drawn = DeterministicRandom(b"responder")(64)[32:]  # nonce first, then the key
        share = X25519PrivateKey.from_private_bytes(drawn).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        hello = Hello(1, END_TO_END, b"n" * 32, share, (1,))
        self.assertEqual(failure(b.receive_data(encode_frame_message(hello))),
                         "reflected-key-share")
        self.assertEqual(b.data_to_send()[4:5], b"\x15")  # an ALERT, no HELLO_REPLY

    def test_suiteCount(self) -> None:
        """
        Rule 4.1: a HELLO offers 1 to 32 suites; 33 (or 0) fails with
        C{bad-value}, 32 is accepted.
        """
        self.assertEqual(MAX_SUITES, 32)
        for count, expected in ((33, "bad-value"), (0, "bad-value"), (255, "bad-value"),
                                (32, None)):
            suites = tuple([0x7777] * (count - 1) + [1]) if count else ()
            hello = Hello(1, END_TO_END, b"n" * 32, b"\x09" + b"\x00" * 31, suites)
            b = _bob()
            self.assertEqual(failure(b.receive_data(encode_frame_message(hello))), expected, count)
            if expected is None:
                self.assertEqual(b.state, State.WAIT_AUTH)

    def test_certificateCount(self) -> None:
        """
        Rule 4.6: a certificate identity carries 1 to 8 certificates; a
        relay's AUTH with 0 or 9 fails at the client with C{bad-value}
        (through the real handshake, inside the encrypted AUTH), and 8
        reach the certificate check.
        """
        self.assertEqual(MAX_CHAIN, 8)
        for count, expected in ((0, "bad-value"), (9, "bad-value"), (8, None), (1, None)):
            identity = CertificateIdentity(tuple(b"cert %d" % i for i in range(count)), b"crl")
            client = _alice(CLIENT_SERVER)
            relay = Connection(Config(CLIENT_SERVER, Role.RESPONDER, SERVER_KEY, identity))
            client.initiate()
            relay.receive_data(client.data_to_send())
            events = client.receive_data(relay.data_to_send())
            self.assertEqual(failure(events), expected, count)
            if expected is None:
                self.assertEqual(events, [PeerIdentityReceived(identity)])

    def test_preLoginFrameLimit(self) -> None:
        """
        Section 3: until the handshake completes, the frame maximum is 16384
        bytes by default, at the library and at the relay: a length of 16385
        is C{frame-too-large} from the four length bytes alone, 16384 is
        accepted and its body awaited.
        """
        self.assertEqual(DEFAULT_MAX_HANDSHAKE_FRAME, 16384)
        self.assertEqual(Limits().max_handshake_frame, 16384)
        self.assertEqual(failure(_bob().receive_data((16385).to_bytes(4, "big"))),
                         "frame-too-large")
        b = _bob()
        self.assertEqual(b.receive_data((16384).to_bytes(4, "big") + b"\x01"), [])
        self.assertEqual(b.state, State.WAIT_HELLO)
        # The relay, with its default limits, the same.
        h = Harness()
        raw, server, _ = connect_raw(h, "10.9.9.9")
        raw.write((16385).to_bytes(4, "big"))
        h.pump()
        self.assertEqual(server.error.code, "frame-too-large")
        raw, server, _ = connect_raw(h, "10.9.9.8")
        raw.write((16384).to_bytes(4, "big") + b"\x01")
        h.pump()
        self.assertIsNone(server.error)

    def test_wrongIdentityKindClientServer(self) -> None:
        """
        Rule 4.6, client-server context: a relay that proves itself with a
        user identity, or a client that sends a certificate identity, fails
        with C{wrong-identity-kind}.
        """
        client = _alice(CLIENT_SERVER)
        relay = Connection(Config(CLIENT_SERVER, Role.RESPONDER, SERVER_KEY, UserIdentity("relay")))
        client.initiate()
        relay.receive_data(client.data_to_send())
        self.assertEqual(failure(client.receive_data(relay.data_to_send())),
                         "wrong-identity-kind")

        identity = CertificateIdentity((b"cert",), b"crl")
        impostor = Connection(Config(CLIENT_SERVER, Role.INITIATOR, ALICE, identity))
        relay = Connection(Config(CLIENT_SERVER, Role.RESPONDER, SERVER_KEY, identity))
        ei, er = run(impostor, relay, lambda i: SERVER_KEY.public_key(), _accept)
        self.assertEqual(failure(er), "wrong-identity-kind")

    def test_wrongIdentityKindEndToEnd(self) -> None:
        """
        Rule 4.6, end-to-end context: both sides must send a user identity;
        a certificate identity from either fails with
        C{wrong-identity-kind}.
        """
        identity = CertificateIdentity((b"cert",), b"crl")
        a = Connection(Config(END_TO_END, Role.INITIATOR, ALICE, identity))
        ea, eb = run(a, _bob(), _accept, lambda i: ALICE.public_key())
        self.assertEqual(failure(eb), "wrong-identity-kind")

        b = Connection(Config(END_TO_END, Role.RESPONDER, BOB, identity))
        ea, eb = run(_alice(), b, lambda i: BOB.public_key(), _accept)
        self.assertEqual(failure(ea), "wrong-identity-kind")


class KeyUpdateTests(unittest.TestCase):
    """
    Section 6, "Key update", in the client-server context.
    """

    def test_clientServerKeyUpdateEvery2To20Records(self) -> None:
        """
        In the client-server context both sides replace a direction's
        traffic secret with next(secret) after every 2^20 records: with the
        counters injected just below 2^20, records 2^20-2 and 2^20-1 are
        sealed under the old secret and record 2^20 under next(old) only,
        and the receiver opens all three.
        """
        self.assertEqual(REKEY_INTERVAL[CLIENT_SERVER], 2**20)
        a = _alice(CLIENT_SERVER, registry=E2E_MESSAGES)
        relay = Connection(Config(CLIENT_SERVER, Role.RESPONDER, SERVER_KEY,
                                  CertificateIdentity((b"cert",), b"crl"), registry=E2E_MESSAGES))
        ea, er = run(a, relay, _accept, _accept)
        self.assertIsInstance(er[-1], HandshakeComplete)
        sealer, opener = a._sealer, relay._opener
        assert sealer is not None and opener is not None and a.suite is not None
        start = 2**20 - 2
        sealer.counter = opener.counter = start
        old = sealer._secret
        records = []
        for i in range(3):
            a.send(Text(i, f"line {i}"))
            records.append(a.data_to_send())
        self.assertEqual([relay.receive_data(r) for r in records],
                         [[MessageReceived(Text(i, f"line {i}"))] for i in range(3)])

        def opens(secret: bytes, counter: int, record: bytes) -> bool:
            probe = RecordOpener(a.suite, secret, 2**20)  # type: ignore[arg-type]
            probe.counter = counter
            try:
                probe.open(record)
            except RemoteProtocolError as e:
                self.assertEqual(e.code, "bad-record-mac")
                return False
            return True

        new = next_traffic_secret(old)
        self.assertEqual([opens(old, start + i, r) for i, r in enumerate(records)],
                         [True, True, False])
        self.assertEqual([opens(new, start + i, r) for i, r in enumerate(records)],
                         [False, False, True])


class TableTests(unittest.TestCase):
    """
    The code points and sizes the specification fixes (sections 6 and 12.2):
    an implementation that agrees only with itself would pass every
    round-trip test and still not interoperate.
    """

    def test_suiteTable(self) -> None:
        """
        Section 6: suite 0x0001 is AES-256-GCM and 0x0002
        ChaCha20-Poly1305, each with a 32-byte key, a 12-byte nonce and a
        16-byte tag, offered in that order by default; each suite's AEAD
        is the named algorithm (its output equals the library's).
        """
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

        from securechat.crypto.suites import DEFAULT_OFFER, SUITES
        self.assertEqual(sorted(SUITES), [0x0001, 0x0002])
        self.assertEqual(DEFAULT_OFFER, (0x0001, 0x0002))
        key, nonce = bytes(range(32)), bytes(12)
        for code, name, algorithm in ((1, "AES-256-GCM", AESGCM),
                                      (2, "CHACHA20-POLY1305", ChaCha20Poly1305)):
            suite = SUITES[code]
            self.assertEqual((suite.code, suite.name, suite.key_length, suite.nonce_length,
                              suite.tag_length), (code, name, 32, 12, 16))
            self.assertEqual(suite.factory(key).encrypt(nonce, b"x", b"ad"),
                             algorithm(key).encrypt(nonce, b"x", b"ad"))

    def test_endToEndMessageLayout(self) -> None:
        """
        Section 12.2: TEXT is type 0x50 (u64 sent_at, text16), END 0x51
        (u64 sent), READY 0x52 (empty), byte for byte; TEXT's limit is
        16384 bytes.
        """
        from securechat.wire.e2e import MAX_TEXT, End, Ready
        from securechat.wire.messages import encode_inner
        self.assertEqual(encode_inner([Text(0x0102030405060708, "hi")]),
                         b"\x50" + (12).to_bytes(4, "big") + bytes(range(1, 9)) + b"\x00\x02hi")
        self.assertEqual(encode_inner([End(300)]), b"\x51" + (8).to_bytes(4, "big")
                         + (300).to_bytes(8, "big"))
        self.assertEqual(encode_inner([Ready()]), b"\x52" + bytes(4))
        self.assertEqual(MAX_TEXT, 16384)

    def test_valuesAreImmutable(self) -> None:
        """
        Messages, suites and directory entries are frozen values: a decoded
        message or a looked-up user cannot be changed in place afterwards.
        """
        import dataclasses

        from securechat.crypto.suites import AES_256_GCM
        from securechat.server.directory import UserEntry
        from securechat.wire.e2e import End
        for value, field in ((Text(1, "a"), "text"), (End(1), "sent"), (AES_256_GCM, "code"),
                             (UserEntry("alice", ALICE.public_key()), "revoked")):
            self.assertRaises(dataclasses.FrozenInstanceError, setattr, value, field, 2)

    def test_memoryDirectoryProvidesInterface(self) -> None:
        """
        The in-memory user directory declares and implements the interface
        the relay is written against.
        """
        from zope.interface.verify import verifyObject

        from securechat.server.directory import IUserDirectory, MemoryDirectory
        self.assertTrue(verifyObject(IUserDirectory, MemoryDirectory()))


class FingerprintTests(unittest.TestCase):
    """
    Section 12.1: the fingerprint users compare out of band.
    """

    def test_fingerprintFormat(self) -> None:
        """
        A fingerprint is "SHA256:" and the unpadded base64 of the SHA-256 of
        the key's DER SubjectPublicKeyInfo.
        """
        import base64
        import hashlib

        from securechat.crypto import keys
        key = ALICE.public_key()
        digest = hashlib.sha256(keys.public_key_der(key)).digest()
        self.assertEqual(keys.fingerprint(key),
                         "SHA256:" + base64.b64encode(digest).decode().rstrip("="))
        self.assertEqual(len(keys.fingerprint(key)), 7 + 43)


class MessageCodecTests(unittest.TestCase):
    """
    Sections 4.3, 4.4 and 4.6: details of the core codecs.
    """

    def test_innerHeaderCutShort(self) -> None:
        """
        Three bytes after a whole inner message (less than a 5-byte header)
        are C{truncated}; a header announcing 5 bytes of which 2 remain is
        C{truncated} with both numbers.
        """
        from securechat.errors import RemoteProtocolError as Remote
        from securechat.wire.messages import split_inner
        whole = encode_inner([Ping(b"")])
        e = self.assertRaises(Remote, split_inner, whole + b"\x20\x00\x00")
        self.assertEqual((e.code, e.detail), ("truncated", "inner message header cut short"))
        e = self.assertRaises(Remote, split_inner, b"\x20\x00\x00\x00\x0a" + b"x" * 7)
        self.assertEqual(e.code, "truncated")
        self.assertIn("inner message of 10 bytes, 7 left", e.detail)
        # A header with an empty body, last in the record, is whole.
        from securechat.wire.e2e import Ready
        self.assertEqual(split_inner(encode_inner([Ready()])), [(0x52, b"")])

    def test_unknownIdentityKinds(self) -> None:
        """
        Identity kinds other than 1 and 2 (0 and 3 here) are C{bad-value}.
        """
        from securechat.errors import RemoteProtocolError as Remote
        from securechat.wire.codec import Reader
        from securechat.wire.messages import parse_identity
        for kind in (0, 3):
            data = bytes([kind, 1]) + (1).to_bytes(2, "big") + b"x" + (1).to_bytes(2, "big") + b"y"
            e = self.assertRaises(Remote, parse_identity, Reader(data, "AUTH"))
            self.assertEqual(e.code, "bad-value")
            self.assertIn(f"unknown identity kind {kind}", e.detail)

    def test_frameLengthField(self) -> None:
        """
        Section 3: a frame's length counts the type byte and the payload,
        for payloads of odd and even length alike.
        """
        from securechat.wire.messages import Alert
        for reason in ("", "x", "xy", "xyz"):
            frame = encode_frame_message(Alert(1, reason))
            self.assertEqual(int.from_bytes(frame[:4], "big"), len(frame) - 4)

    def test_alertReasonCutTo255(self) -> None:
        """
        An ALERT's reason is a text8: a longer one is cut to 255 bytes.
        """
        from securechat.wire.messages import Alert
        self.assertEqual(len(Alert(1, "x" * 300).encode_body()), 1 + 1 + 255)

    def test_coreMessagesFrozen(self) -> None:
        """
        HELLO, HELLO_REPLY, AUTH, PING, PONG and ALERT values cannot be
        altered in place.
        """
        import dataclasses
        from securechat.wire.messages import Alert, Pong
        values = [Hello(1, 2, b"n" * 32, b"k" * 32, (1,)), HelloReply(1, b"n" * 32, b"k" * 32, 1),
                  Auth(UserIdentity("a"), 1, b"s", b"f" * 32), Ping(b""), Pong(b""), Alert(1, "")]
        for value in values:
            field = dataclasses.fields(value)[0].name
            self.assertRaises(dataclasses.FrozenInstanceError, setattr, value, field, None)
