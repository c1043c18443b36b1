"""
Tests for L{securechat.crypto.handshake} in the end-to-end context (two users
with registered keys): the full handshake for every suite and key type, and
one named test for each way it must fail.

The client-server context is tested in L{tests.test_x509} (with real
certificate chains and CRLs), L{tests.test_spec_rules} (identity kinds,
certificate counts, key update), L{tests.test_vectors} and, through the
relay, L{tests.test_attacks}.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.python.monkey import MonkeyPatcher
from twisted.trial import unittest

from securechat.crypto import authstep
from securechat.crypto.config import CLIENT_SERVER, END_TO_END, Config, Role
from securechat.crypto.events import (
    ConnectionClosed,
    ConnectionFailed,
    HandshakeComplete,
    MessageReceived,
    PeerIdentityReceived,
)
from securechat.crypto.handshake import Connection, State
from securechat.crypto.suites import AES_256_GCM, CHACHA20_POLY1305
from securechat.errors import Alert as AlertCode
from securechat.errors import LocalProtocolError, PeerAlert, UnauthenticatedAlert
from securechat.wire.framing import encode_frame
from securechat.wire.messages import (
    Alert,
    Hello,
    HelloReply,
    Ping,
    Pong,
    UserIdentity,
    encode_frame_message,
    parse_frame,
)
from tests.support import DeterministicRandom, failure, run

ALICE = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
BOB = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
MALLORY = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x03" * 32)
_RSA = rsa.generate_private_key(65537, 2048)
_P256 = ec.generate_private_key(ec.SECP256R1())


def alice(**kw):  # type: ignore[no-untyped-def]
    kw.setdefault("private_key", ALICE)
    return Connection(Config(END_TO_END, Role.INITIATOR, identity=UserIdentity("alice"), **kw))


def bob(**kw):  # type: ignore[no-untyped-def]
    kw.setdefault("private_key", BOB)
    return Connection(Config(END_TO_END, Role.RESPONDER, identity=UserIdentity("bob"), **kw))


def directory(**users):  # type: ignore[no-untyped-def]
    """
    A resolver over a name -> private key map, answering like a server's
    user directory.
    """
    def resolver(identity):  # type: ignore[no-untyped-def]
        key = users.get(identity.name)
        if key is None:
            return ("unknown-user", f"no user {identity.name}")
        return key.public_key()
    return resolver


KNOWN = directory(alice=ALICE, bob=BOB)


def established(test: unittest.TestCase, **kw):  # type: ignore[no-untyped-def]
    a, b = alice(), bob()
    ea, eb = run(a, b, KNOWN, KNOWN, **kw)
    test.assertIsInstance(ea[-1], HandshakeComplete)
    test.assertIsInstance(eb[-1], HandshakeComplete)
    return a, b


class FullHandshakeTests(unittest.TestCase):
    """
    Successful handshakes.
    """

    def test_eachSuiteAndKeyType(self) -> None:
        """
        A handshake completes for each AEAD suite and each user key type, the
        peers learn each other's names, and messages flow both ways.
        """
        for suite in (AES_256_GCM, CHACHA20_POLY1305):
            for key in (ALICE, _P256, _RSA):
                a = alice(private_key=key, suites=(suite.code,))
                b = bob()
                ea, eb = run(a, b, KNOWN, directory(alice=key))
                self.assertEqual(ea[-1], HandshakeComplete(UserIdentity("bob"), suite))
                self.assertEqual(eb[-1], HandshakeComplete(UserIdentity("alice"), suite))
                a.send(Ping(b"from alice"))
                b.receive_data(a.data_to_send())
                self.assertEqual(a.receive_data(b.data_to_send()), [MessageReceived(Pong(b"from alice"))])

    def test_initiatorPreferenceWins(self) -> None:
        """
        The responder picks the first suite in the initiator's offer that it
        supports.
        """
        for offer in ((CHACHA20_POLY1305, AES_256_GCM), (AES_256_GCM, CHACHA20_POLY1305)):
            a = alice(suites=tuple(s.code for s in offer))
            b = bob(suites=(AES_256_GCM.code, CHACHA20_POLY1305.code))
            ea, eb = run(a, b, KNOWN, KNOWN)
            self.assertEqual((ea[-1].suite, eb[-1].suite), (offer[0], offer[0]))

    def test_defaultOfferPrefersAESGCM(self) -> None:
        """
        With nothing configured, the initiator offers AES-256-GCM first
        (docs/protocol.rst, section 6), and the connection uses it.
        """
        ea, _ = run(alice(), bob(), KNOWN, KNOWN)
        self.assertEqual(ea[-1].suite, AES_256_GCM)

    def test_oneByteAtATime(self) -> None:
        """
        The handshake completes when every byte arrives on its own.
        """
        established(self, chunk=1)

    def test_authAndApplicationInOneWrite(self) -> None:
        """
        The initiator's AUTH record and its first application record in the
        same write are both processed (the second once the peer is accepted).
        """
        a, b = alice(), bob()
        a.initiate()
        b.receive_data(a.data_to_send())
        [claimed] = a.receive_data(b.data_to_send())
        self.assertEqual(claimed, PeerIdentityReceived(UserIdentity("bob")))
        a.accept_peer(BOB.public_key())
        a.send(Ping(b"early"))
        [peer] = b.receive_data(a.data_to_send())
        done = b.accept_peer(ALICE.public_key())
        self.assertIsInstance(done[0], HandshakeComplete)
        self.assertEqual(a.receive_data(b.data_to_send()), [MessageReceived(Pong(b"early"))])

    def test_severalMessagesInOneRecord(self) -> None:
        """
        C{send} with several messages seals them into one record, and they
        arrive in order.
        """
        a, b = established(self)
        before = a._sealer.counter
        a.send(Ping(b"1"), Ping(b"2"), Pong(b"3"))
        self.assertEqual(a._sealer.counter, before + 1)
        self.assertEqual(b.receive_data(a.data_to_send()), [MessageReceived(Pong(b"3"))])
        self.assertEqual(
            a.receive_data(b.data_to_send()),
            [MessageReceived(Pong(b"1")), MessageReceived(Pong(b"2"))],
        )

    def test_ephemeralSecretsDropped(self) -> None:
        """
        Once established, neither side keeps its ephemeral X25519 key, the
        handshake secret or the transcript.
        """
        for conn in established(self):
            self.assertIsNone(conn._ephemeral)
            self.assertIsNone(conn._hs_secret)
            self.assertIsNone(conn._hs_send)
            self.assertIsNone(conn._transcript)

    def test_cleanClose(self) -> None:
        """
        C{close()} sends an encrypted CLOSE_NOTIFY that the peer reports as
        L{ConnectionClosed}.
        """
        a, b = established(self)
        a.close()
        self.assertEqual(b.receive_data(a.data_to_send()), [ConnectionClosed()])
        self.assertEqual(b.state, State.CLOSED)

    def test_applicationMessageBeforeEstablished(self) -> None:
        """
        Sending before the handshake completes is our own mistake, refused.
        """
        a = alice()
        a.initiate()
        e = self.assertRaises(LocalProtocolError, a.send, Ping())
        self.assertEqual(e.code, "unexpected-message")


class FailureTests(unittest.TestCase):
    """
    Every handshake failure, each with its specific error code on the side
    that detects it.
    """

    def test_badResponderSignature(self) -> None:
        """
        A responder whose signature does not match the key the initiator
        expects fails with C{bad-signature}.  The initiator's refusal
        reaches the responder in the clear (it has no key of the initiator
        yet), so the responder cannot believe it: C{unauthenticated-alert}
        (docs/protocol.rst, 8.3).
        """
        a, b = alice(), bob(private_key=MALLORY)
        ea, eb = run(a, b, KNOWN, KNOWN)
        self.assertEqual(failure(ea), "bad-signature")
        self.assertIsInstance(eb[-1], ConnectionFailed)
        self.assertIsInstance(eb[-1].error, UnauthenticatedAlert)
        self.assertEqual(eb[-1].error.peer_alert, AlertCode.HANDSHAKE_FAILED)

    def test_badInitiatorSignature(self) -> None:
        """
        An initiator signing with a key other than its registered one fails
        with C{bad-signature} at the responder.
        """
        a, b = alice(private_key=MALLORY), bob()
        ea, eb = run(a, b, KNOWN, KNOWN)
        self.assertEqual(failure(eb), "bad-signature")
        self.assertEqual(ea[-1].error.peer_alert, AlertCode.HANDSHAKE_FAILED)

    def test_identityMisbinding(self) -> None:
        """
        Mallory cannot claim to be alice: signing as "alice" with her own
        key fails at the responder, which checks alice's registered key.
        """
        m = Connection(Config(END_TO_END, Role.INITIATOR, MALLORY, UserIdentity("alice")))
        _, eb = run(m, bob(), directory(bob=BOB), directory(alice=ALICE, mallory=MALLORY))
        self.assertEqual(failure(eb), "bad-signature")

    def test_unknownUser(self) -> None:
        """
        A rejected identity fails with the code the resolver gave.
        """
        _, eb = run(alice(), bob(), KNOWN, directory(bob=BOB))
        self.assertEqual(failure(eb), "unknown-user")

    def test_badFinished(self) -> None:
        """
        A responder whose Finished MAC is wrong fails with C{bad-finished}.
        """
        a, b = alice(), bob()
        a.initiate()
        patcher = MonkeyPatcher((authstep, "finished_mac", lambda secret, th: b"\x00" * 32))
        patcher.runWithPatches(b.receive_data, a.data_to_send())
        events = a.receive_data(b.data_to_send())
        self.assertEqual(failure(events), "bad-finished")

    def test_signatureFromAnotherRoleRefused(self) -> None:
        """
        A signature made with the initiator's label is refused where the
        responder's is expected (domain separation of roles).
        """
        original = authstep.signature_content
        patcher = MonkeyPatcher((
            authstep, "signature_content",
            lambda ctx, role, th: original(ctx, b"initiator", th)))
        a, b = alice(), bob()
        a.initiate()
        patcher.runWithPatches(b.receive_data, a.data_to_send())
        [identity] = a.receive_data(b.data_to_send())
        self.assertEqual(failure(a.accept_peer(BOB.public_key())), "bad-signature")

    def test_signatureFromAnotherContextRefused(self) -> None:
        """
        A signature made for the client-server context is refused in the
        end-to-end context (domain separation of contexts).
        """
        original = authstep.signature_content
        patcher = MonkeyPatcher((
            authstep, "signature_content",
            lambda ctx, role, th: original(CLIENT_SERVER, role, th)))
        a, b = alice(), bob()
        a.initiate()
        patcher.runWithPatches(b.receive_data, a.data_to_send())
        a.receive_data(b.data_to_send())
        self.assertEqual(failure(a.accept_peer(BOB.public_key())), "bad-signature")

    def test_keysAndMacsFromAnotherContextRefused(self) -> None:
        """
        Handshake keys and Finished MACs computed for the client-server
        context are refused in the end-to-end context: a responder that
        derives its keys under the other context name produces a record the
        initiator cannot open.
        """
        from securechat.crypto.schedule import handshake_secret
        shared = b"\x42" * 32
        self.assertNotEqual(handshake_secret(CLIENT_SERVER, shared), handshake_secret(END_TO_END, shared))
        original = authstep.handshake_secret
        patcher = MonkeyPatcher((
            authstep, "handshake_secret", lambda ctx, shared: original(CLIENT_SERVER, shared)))
        a, b = alice(), bob()
        a.initiate()
        patcher.runWithPatches(b.receive_data, a.data_to_send())
        self.assertEqual(failure(a.receive_data(b.data_to_send())), "bad-handshake-record")

    def test_offerAlteredInTransit(self) -> None:
        """
        A man in the middle who reorders the suite offer (to force the
        second choice) breaks the transcript: the initiator fails with
        C{bad-handshake-record}.
        """
        a, b = alice(), bob()
        a.initiate()
        hello = parse_frame(a.data_to_send(), Hello)
        forged = Hello(hello.version, hello.context, hello.nonce, hello.key_share,
                       tuple(reversed(hello.suites)))
        b.receive_data(encode_frame_message(forged))
        self.assertEqual(b.suite, CHACHA20_POLY1305)
        self.assertEqual(failure(a.receive_data(b.data_to_send())), "bad-handshake-record")

    def test_suiteNotOffered(self) -> None:
        """
        A reply choosing a suite the initiator did not offer fails with
        C{suite-not-offered}.
        """
        a, b = alice(suites=(AES_256_GCM.code,)), bob()
        a.initiate()
        b.receive_data(a.data_to_send())
        out = b.data_to_send()
        reply = parse_frame(out[:4 + int.from_bytes(out[:4], "big")], HelloReply)
        forged = HelloReply(reply.version, reply.nonce, reply.key_share, CHACHA20_POLY1305.code)
        self.assertEqual(failure(a.receive_data(encode_frame_message(forged))), "suite-not-offered")

    def test_noCommonSuite(self) -> None:
        """
        An offer with no suite the responder supports fails with
        C{no-common-suite}.
        """
        a, b = alice(suites=(CHACHA20_POLY1305.code,)), bob(suites=(AES_256_GCM.code,))
        _, eb = run(a, b, KNOWN, KNOWN)
        self.assertEqual(failure(eb), "no-common-suite")

    def test_unknownSuitesIgnored(self) -> None:
        """
        Suite code points the responder does not know are skipped, not fatal.
        """
        a, b = alice(suites=(0x7777, AES_256_GCM.code)), bob()
        a.initiate()
        hello = parse_frame(a.data_to_send(), Hello)
        b.receive_data(encode_frame_message(hello))
        self.assertEqual(b.suite, AES_256_GCM)

    def test_wrongContext(self) -> None:
        """
        An end-to-end HELLO sent to a client-server responder fails with
        C{wrong-context}.
        """
        a = alice()
        server = Connection(Config(CLIENT_SERVER, Role.RESPONDER, BOB, UserIdentity("bob")))
        a.initiate()
        self.assertEqual(failure(server.receive_data(a.data_to_send())), "wrong-context")

    def test_unsupportedVersion(self) -> None:
        """
        A HELLO of another protocol version fails with C{unsupported-version}.
        """
        hello = Hello(2, END_TO_END, b"n" * 32, b"\x09" * 32, (1,))
        self.assertEqual(failure(bob().receive_data(encode_frame_message(hello))), "unsupported-version")

    def test_allZeroKeyShare(self) -> None:
        """
        An all-zero X25519 key share fails with C{bad-key-share}.
        """
        hello = Hello(1, END_TO_END, b"n" * 32, b"\x00" * 32, (1,))
        self.assertEqual(failure(bob().receive_data(encode_frame_message(hello))), "bad-key-share")

    def test_lowOrderKeyShares(self) -> None:
        """
        Each low-order X25519 point (RFC 7748 / Wycheproof) fails with
        C{bad-key-share}, in the HELLO and in the reply.
        """
        low_order = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ]
        for point in map(bytes.fromhex, low_order):
            hello = Hello(1, END_TO_END, b"n" * 32, point, (1,))
            self.assertEqual(failure(bob().receive_data(encode_frame_message(hello))), "bad-key-share")
            a = alice()
            a.initiate()
            reply = HelloReply(1, b"r" * 32, point, 1)
            self.assertEqual(failure(a.receive_data(encode_frame_message(reply))), "bad-key-share")

    def test_reflectedKeyShare(self) -> None:
        """
        A reply that echoes the initiator's own key share fails with
        C{reflected-key-share}.
        """
        a = alice()
        a.initiate()
        hello = parse_frame(a.data_to_send(), Hello)
        reply = HelloReply(1, hello.nonce, hello.key_share, 1)
        self.assertEqual(failure(a.receive_data(encode_frame_message(reply))), "reflected-key-share")

    def test_reflectedHello(self) -> None:
        """
        The initiator's own HELLO reflected back to it is an unexpected
        message.
        """
        a = alice()
        a.initiate()
        self.assertEqual(failure(a.receive_data(a.data_to_send())), "unexpected-message")

    def test_reflectedAuth(self) -> None:
        """
        The responder's own AUTH record reflected back to it does not open
        under the initiator's handshake key.
        """
        a, b = alice(), bob()
        a.initiate()
        b.receive_data(a.data_to_send())
        out = b.data_to_send()
        reply_length = int.from_bytes(out[:4], "big") + 4
        self.assertEqual(failure(b.receive_data(out[reply_length:])), "bad-handshake-record")

    def test_helloReplayedInSameConnection(self) -> None:
        """
        A second HELLO on a connection is an unexpected message.
        """
        a, b = alice(), bob()
        a.initiate()
        hello = a.data_to_send()
        b.receive_data(hello)
        self.assertEqual(failure(b.receive_data(hello)), "unexpected-message")

    def test_handshakeReplayedOnNewConnection(self) -> None:
        """
        A recorded initiator flight (HELLO, then AUTH) replayed to a fresh
        responder fails: the responder's fresh key share changes the keys.
        """
        a, b = alice(), bob()
        a.initiate()
        hello = a.data_to_send()
        b.receive_data(hello)
        a.receive_data(b.data_to_send())
        a.accept_peer(BOB.public_key())
        auth = a.data_to_send()
        fresh = bob()
        fresh.receive_data(hello)
        self.assertEqual(failure(fresh.receive_data(auth)), "bad-handshake-record")

    def test_recordBeforeHello(self) -> None:
        """
        A record before any key exists is an unexpected message.
        """
        frame = encode_frame(0x17, b"\x00" * 30)
        self.assertEqual(failure(bob().receive_data(frame)), "unexpected-message")

    def test_replyToResponder(self) -> None:
        """
        A HELLO_REPLY sent to a responder is an unexpected message.
        """
        reply = HelloReply(1, b"r" * 32, b"\x09" * 32, 1)
        self.assertEqual(failure(bob().receive_data(encode_frame_message(reply))), "unexpected-message")

    def test_unknownFrameType(self) -> None:
        """
        A frame of a type no state accepts is C{unknown-type}.
        """
        self.assertEqual(failure(bob().receive_data(encode_frame(0x55, b"x"))), "unknown-type")

    def test_truncatedHello(self) -> None:
        """
        A HELLO one byte short (with a correct frame length) is C{truncated}.
        """
        a = alice()
        a.initiate()
        body = a.data_to_send()[4:-1]
        frame = len(body).to_bytes(4, "big") + body
        self.assertEqual(failure(bob().receive_data(frame)), "truncated")

    def test_helloTrailingByte(self) -> None:
        """
        A HELLO with a byte too many is C{trailing-bytes}.
        """
        a = alice()
        a.initiate()
        body = a.data_to_send()[4:] + b"\x00"
        frame = len(body).to_bytes(4, "big") + body
        self.assertEqual(failure(bob().receive_data(frame)), "trailing-bytes")

    def test_oversizedBeforeAuthentication(self) -> None:
        """
        Before the handshake completes, frames above the (smaller) handshake
        maximum are refused from the length field alone.
        """
        b = bob(max_handshake_frame=1000)
        self.assertEqual(failure(b.receive_data((1001).to_bytes(4, "big"))), "frame-too-large")

    def test_oversizedAfterAuthentication(self) -> None:
        """
        After the handshake, the larger maximum applies, still checked from
        the length field alone.
        """
        a, b = established(self)
        self.assertEqual(b._decoder.max_length, 64 * 1024)
        self.assertEqual(failure(b.receive_data((64 * 1024 + 1).to_bytes(4, "big"))), "frame-too-large")

    def test_heldInputBounded(self) -> None:
        """
        While the peer's identity is being checked, held input is bounded.
        """
        a, b = alice(), bob(max_held=100)
        a.initiate()
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())
        a.accept_peer(BOB.public_key())
        b.receive_data(a.data_to_send())
        self.assertEqual(b.state, State.WAIT_VERIFY)
        self.assertEqual(failure(b.receive_data(b"\x00" * 101)), "limit-exceeded")

    def test_failedStaysFailed(self) -> None:
        """
        After a failure, more input produces nothing and sending is refused.
        """
        b = bob()
        b.receive_data(encode_frame(0x55, b""))
        self.assertEqual(b.receive_data(b"anything"), [])
        self.assertEqual(b.state, State.FAILED)


class UniformAlertTests(unittest.TestCase):
    """
    The peer cannot tell apart the reasons a handshake failed.
    """

    def test_sameAlertBytes(self) -> None:
        """
        Unknown user, revoked user and bad signature at the responder send
        exactly the same bytes (same randomness, same initiator): one record
        under C{ap_r} holding a HANDSHAKE_FAILED alert without a reason,
        which the initiator opens and believes.  Bad key share and bad
        Finished MAC, where the peer holds no key to open a record with,
        send the same plaintext HANDSHAKE_FAILED alert.
        """
        expected = encode_frame_message(Alert(AlertCode.HANDSHAKE_FAILED, ""))
        sent = []
        for decide in (lambda b, claim: b.reject_peer("unknown-user", "no such user"),
                       lambda b, claim: b.reject_peer("revoked-user", "revoked"),
                       lambda b, claim: b.accept_peer(BOB.public_key())):
            a = alice(random=DeterministicRandom(b"a"))
            b = bob(random=DeterministicRandom(b"b"))
            a.initiate()
            b.receive_data(a.data_to_send())
            a.receive_data(b.data_to_send())
            a.accept_peer(BOB.public_key())
            b.data_to_send()
            [claim] = b.receive_data(a.data_to_send())
            decide(b, claim)
            sent.append(b.data_to_send())
            [event] = a.receive_data(sent[-1])
            self.assertIsInstance(event.error, PeerAlert)
            self.assertEqual(event.error.peer_alert, AlertCode.HANDSHAKE_FAILED)
            self.assertEqual(event.error.detail, "peer closed the connection: HANDSHAKE_FAILED")
        self.assertEqual(sent[0][4:13], b"\x17" + bytes(8))  # a record, counter 0
        self.assertEqual(sent, [sent[0]] * 3)
        # bad key share
        b = bob()
        b.receive_data(encode_frame_message(Hello(1, END_TO_END, b"n" * 32, b"\x00" * 32, (1,))))
        self.assertEqual(b.data_to_send(), expected)
        # bad Finished, at the initiator
        a, b = alice(), bob()
        a.initiate()
        MonkeyPatcher((authstep, "finished_mac", lambda s, t: b"\x00" * 32)).runWithPatches(
            b.receive_data, a.data_to_send())
        a.receive_data(b.data_to_send())
        self.assertEqual(a.data_to_send(), expected)


class RecordLayerTests(unittest.TestCase):
    """
    Record failures on an established connection.
    """

    def test_recordReplayed(self) -> None:
        """
        A record replayed by the network fails with C{record-replayed}.
        """
        a, b = established(self)
        a.send(Ping(b"1"))
        record = a.data_to_send()
        b.receive_data(record)
        self.assertEqual(failure(b.receive_data(record)), "record-replayed")

    def test_recordsReordered(self) -> None:
        """
        Two records swapped by the network fail with C{record-gap}.
        """
        a, b = established(self)
        a.send(Ping(b"1"))
        first = a.data_to_send()
        a.send(Ping(b"2"))
        second = a.data_to_send()
        self.assertEqual(failure(b.receive_data(second + first)), "record-gap")

    def test_recordDropped(self) -> None:
        """
        A record dropped by the network makes the next fail with
        C{record-gap}.
        """
        a, b = established(self)
        a.send(Ping(b"1"))
        a.data_to_send()
        a.send(Ping(b"2"))
        self.assertEqual(failure(b.receive_data(a.data_to_send())), "record-gap")

    def test_flippedBitsOnConnection(self) -> None:
        """
        Any flipped bit in an application record fails the connection and
        delivers nothing; the peer is told BAD_RECORD (or DECODE_ERROR /
        FRAME_TOO_LARGE when the length itself was hit).
        """
        a, b = established(self)
        a.send(Ping(b"payload"))
        record = a.data_to_send()
        self.assertEqual(b.receive_data(record), [])
        for bit in range(len(record) * 8):
            a2, b2 = established(self)
            a2.send(Ping(b"payload"))
            good = a2.data_to_send()
            bad = bytearray(good)
            bad[bit // 8] ^= 1 << (bit % 8)
            events = b2.receive_data(bytes(bad))
            self.assertFalse(any(isinstance(e, MessageReceived) for e in events))
            if bit // 8 < 4:
                # the length grew (frame incomplete, or too large) or shrank
                self.assertIn(failure(events), {None, "frame-too-large", "truncated", "bad-record-mac"})
            else:
                # (a flipped type byte may make it a plaintext ALERT frame,
                # not believed once keys exist)
                self.assertIn(
                    failure(events),
                    {"bad-record-mac", "record-gap", "record-replayed", "unknown-type",
                     "unexpected-message", "unauthenticated-alert", "truncated",
                     "trailing-bytes", "bad-value"},
                )

    def test_plaintextAfterHandshake(self) -> None:
        """
        A plaintext frame (here a HELLO) after the handshake is an
        unexpected message.
        """
        a, b = established(self)
        hello = encode_frame_message(Hello(1, END_TO_END, b"n" * 32, b"\x09" * 32, (1,)))
        self.assertEqual(failure(b.receive_data(hello)), "unexpected-message")

    def test_plaintextAlertAfterApplicationRecord(self) -> None:
        """
        After the handshake a plaintext alert, on either side, is
        C{unauthenticated-alert} (an attacker can write one), not a
        L{PeerAlert}, and it is not answered.
        """
        alert = encode_frame_message(Alert(AlertCode.SHUTTING_DOWN, ""))
        a, b = established(self)
        b.send(Ping(b"x"))
        a.receive_data(b.data_to_send())
        a.data_to_send()  # the PONG
        [event] = a.receive_data(alert)
        self.assertEqual(event.error.code, "unauthenticated-alert")
        self.assertNotIsInstance(event.error, PeerAlert)
        self.assertEqual(a.data_to_send(), b"")
        a, b = established(self)
        self.assertEqual(failure(b.receive_data(alert)), "unauthenticated-alert")
        self.assertEqual(b.data_to_send(), b"")

    def test_peerAlert(self) -> None:
        """
        An alert other than CLOSE_NOTIFY surfaces as L{PeerAlert} with its
        code and reason.
        """
        a, b = established(self)
        a.close(AlertCode.TIMEOUT, "idle for too long")
        [event] = b.receive_data(a.data_to_send())
        self.assertIsInstance(event.error, PeerAlert)
        self.assertEqual(event.error.peer_alert, AlertCode.TIMEOUT)
        self.assertIn("idle for too long", event.error.detail)

    def test_pingAnsweredAutomatically(self) -> None:
        """
        A PING is answered with a PONG carrying the same data, without
        bothering the application.
        """
        a, b = established(self)
        a.send(Ping(b"are you there"))
        self.assertEqual(b.receive_data(a.data_to_send()), [])
        self.assertEqual(a.receive_data(b.data_to_send()), [MessageReceived(Pong(b"are you there"))])

    def test_unregisteredInnerType(self) -> None:
        """
        An inner message type the application did not register fails with
        C{unknown-type}.
        """
        a, b = established(self)
        from securechat.wire.messages import encode_inner
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class Strange:
            TYPE = 0x6F

            def encode_body(self) -> bytes:
                return b""

        a._out.append(a._sealer.seal(encode_inner([Strange()])))
        self.assertEqual(failure(b.receive_data(a.data_to_send())), "unknown-type")

    def test_endToEndRatchetsEveryRecord(self) -> None:
        """
        In the end-to-end context every record is sealed under a fresh key.
        """
        a, b = established(self)
        self.assertEqual(a._sealer.rekey_interval, 1)
        secret = a._sealer._secret
        a.send(Ping())
        self.assertNotEqual(a._sealer._secret, secret)


class DeterministicTests(unittest.TestCase):
    """
    Injected randomness makes a handshake reproducible byte for byte.
    """

    def test_sameSeedSameBytes(self) -> None:
        """
        Two runs with the same seeds produce identical bytes (Ed25519
        signatures are deterministic).
        """
        transcripts = []
        for _ in range(2):
            a = alice(random=DeterministicRandom(b"a"))
            b = bob(random=DeterministicRandom(b"b"))
            a.initiate()
            m1 = a.data_to_send()
            b.receive_data(m1)
            m2 = b.data_to_send()
            a.receive_data(m2)
            a.accept_peer(BOB.public_key())
            transcripts.append(m1 + m2 + a.data_to_send())
        self.assertEqual(transcripts[0], transcripts[1])


class KeepaliveRunTests(unittest.TestCase):
    """
    The bound on keepalive-only records (docs/protocol.rst, 4.4), which the
    relay enables with C{max_keepalive_run}.
    """

    def limited(self, **kw):  # type: ignore[no-untyped-def]
        a, b = alice(**kw), bob(max_keepalive_run=32, **kw)
        ea, eb = run(a, b, KNOWN, KNOWN)
        self.assertIsInstance(eb[-1], HandshakeComplete)
        return a, b

    def test_33rdPingOnlyRecordRefused(self) -> None:
        """
        32 records of nothing but PING are tolerated; the 33rd is
        C{limit-exceeded}.
        """
        a, b = self.limited()
        for _ in range(32):
            a.send(Ping(b""))
            self.assertIsNone(failure(b.receive_data(a.data_to_send())))
        a.send(Ping(b""))
        self.assertEqual(failure(b.receive_data(a.data_to_send())), "limit-exceeded")

    def test_applicationMessageResets(self) -> None:
        """
        A record with any other message restarts the count: runs of 30
        PINGs separated by a chat line go on indefinitely.
        """
        from securechat.wire.e2e import E2E_MESSAGES, Text
        a, b = self.limited(registry=E2E_MESSAGES)
        for i in range(5):
            for _ in range(30):
                a.send(Ping(b""))
                self.assertIsNone(failure(b.receive_data(a.data_to_send())))
            a.send(Text(0, f"line {i}"))
            self.assertEqual(b.receive_data(a.data_to_send()), [MessageReceived(Text(0, f"line {i}"))])
        self.assertEqual(b.state, State.ESTABLISHED)

    def test_answersToOwnPingsNeverAddUp(self) -> None:
        """
        The limited side PINGing its peer receives PONG-only records forever
        without hitting the limit (a long idle session).
        """
        a, b = self.limited()
        for _ in range(100):
            b.send(Ping(b"x"))
            a.receive_data(b.data_to_send())
            self.assertIsNone(failure(b.receive_data(a.data_to_send())))
        self.assertEqual(b.state, State.ESTABLISHED)

    def test_unlimitedByDefault(self) -> None:
        """
        Without the setting (clients), the relay's PINGs are never limited.
        """
        a, b = established(self)
        for _ in range(100):
            b.send(Ping(b""))
            self.assertIsNone(failure(a.receive_data(b.data_to_send())))


class RawMessageTests(unittest.TestCase):
    """
    Message types the application takes undecoded (C{Config.raw_types}):
    the relay's RELAY hot path.
    """

    def raw_pair(self):  # type: ignore[no-untyped-def]
        from securechat.wire.e2e import E2E_MESSAGES, Text
        a = alice(registry=E2E_MESSAGES)
        b = bob(registry=E2E_MESSAGES, raw_types=frozenset({Text.TYPE}))
        ea, eb = run(a, b, KNOWN, KNOWN)
        self.assertIsInstance(eb[-1], HandshakeComplete)
        return a, b

    def test_rawTypesMustBeRegistered(self) -> None:
        """
        A raw type the registry does not know is a configuration error.
        """
        e = self.assertRaises(ValueError, Config, END_TO_END, Role.RESPONDER, BOB,
                              UserIdentity("bob"), raw_types=frozenset({0x50}))
        self.assertEqual(str(e), "raw_types not in the registry: 0x50")

    def test_runsKeepRecordOrder(self) -> None:
        """
        Consecutive raw messages come as one L{RawMessages} event holding
        their exact bodies; a decoded message between them splits the run,
        and the events follow the record's order.
        """
        from securechat.crypto.events import RawMessages
        from securechat.wire.e2e import End, Text
        a, b = self.raw_pair()
        a.send(Text(0, "one"), Text(0, "two"), End(2), Text(0, "three"))
        events = b.receive_data(a.data_to_send())
        self.assertEqual([type(e) for e in events], [RawMessages, MessageReceived, RawMessages])
        self.assertEqual([(t, bytes(body)) for t, body in events[0].items],
                         [(Text.TYPE, Text(0, "one").encode_body()),
                          (Text.TYPE, Text(0, "two").encode_body())])
        self.assertEqual(events[1], MessageReceived(End(2)))
        self.assertEqual([(t, bytes(body)) for t, body in events[2].items],
                         [(Text.TYPE, Text(0, "three").encode_body())])

    def test_runsHoldOneType(self) -> None:
        """
        Consecutive raw messages of two raw types come as one
        L{RawMessages} event per run of one type (its handler takes it
        whole), in record order.
        """
        from securechat.crypto.events import RawMessages
        from securechat.wire.e2e import E2E_MESSAGES, End, Text
        a = alice(registry=E2E_MESSAGES)
        b = bob(registry=E2E_MESSAGES, raw_types=frozenset({Text.TYPE, End.TYPE}))
        ea, eb = run(a, b, KNOWN, KNOWN)
        self.assertIsInstance(eb[-1], HandshakeComplete)
        a.send(Text(0, "one"), Text(0, "two"), End(2), End(3), Text(0, "three"))
        events = b.receive_data(a.data_to_send())
        self.assertEqual([type(e) for e in events], [RawMessages] * 3)
        self.assertEqual([[(t, bytes(body)) for t, body in e.items] for e in events],
                         [[(Text.TYPE, Text(0, "one").encode_body()),
                           (Text.TYPE, Text(0, "two").encode_body())],
                          [(End.TYPE, End(2).encode_body()), (End.TYPE, End(3).encode_body())],
                          [(Text.TYPE, Text(0, "three").encode_body())]])

    def test_failReportsApplicationError(self) -> None:
        """
        C{fail()} with an error the application found in a raw message fails
        the connection as if the connection had found it: the alert for its
        code, sealed, reaches the peer, and later input is ignored.
        """
        from securechat.errors import RemoteProtocolError
        a, b = self.raw_pair()
        [event] = b.fail(RemoteProtocolError("bad-value", "bad name"))
        self.assertIsInstance(event, ConnectionFailed)
        self.assertEqual(b.state, State.FAILED)
        [got] = a.receive_data(b.data_to_send())
        self.assertIsInstance(got, ConnectionFailed)
        self.assertEqual(got.error.peer_alert, AlertCode.DECODE_ERROR)
        self.assertEqual(b.fail(RemoteProtocolError("bad-value")), [])
        self.assertEqual(b.receive_data(b"anything"), [])

    def test_sendInnerSealsEncodedMessages(self) -> None:
        """
        C{send_inner} seals already-encoded inner messages into one record,
        which the peer parses like any other.
        """
        from securechat.wire.e2e import Text
        from securechat.wire.messages import encode_inner
        a, b = self.raw_pair()
        b_counter = b._sealer.counter
        b.send_inner(encode_inner([Text(0, "x"), Text(1, "y")]))
        self.assertEqual(b._sealer.counter, b_counter + 1)
        self.assertEqual(a.receive_data(b.data_to_send()),
                         [MessageReceived(Text(0, "x")), MessageReceived(Text(1, "y"))])

    def test_sendInnerRefusals(self) -> None:
        """
        C{send_inner} refuses an empty plaintext and any state but
        ESTABLISHED.
        """
        from securechat.errors import LocalProtocolError
        a, b = self.raw_pair()
        self.assertEqual(self.assertRaises(LocalProtocolError, b.send_inner, b"").code, "empty-record")
        c = alice()
        c.initiate()
        self.assertEqual(self.assertRaises(LocalProtocolError, c.send_inner, b"\x20\0\0\0\0").code,
                         "unexpected-message")
