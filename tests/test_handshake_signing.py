"""
Tests for the handshake's asynchronous signing step (WAIT_SIGN): a key held
elsewhere (L{securechat.crypto.signer.ExternalKey}) is asked for its
signature with a L{SignatureNeeded} event, and the handshake goes on when
the signature is given, fails when signing fails, and holds the peer's
input back meanwhile.  Pure core: no token, no Twisted.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.trial import unittest

from securechat.crypto import keys
from securechat.crypto.config import END_TO_END, Config, Role
from securechat.crypto.events import (
    ConnectionFailed,
    HandshakeComplete,
    PeerIdentityReceived,
    SignatureNeeded,
)
from securechat.crypto.handshake import Connection, State
from securechat.crypto.signer import ExternalKey, MemorySigner, as_signer
from securechat.errors import Alert as AlertCode
from securechat.errors import LocalProtocolError, UnauthenticatedAlert
from securechat.wire.framing import encode_frame
from securechat.wire.messages import UserIdentity
from tests.support import run

ALICE = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
BOB = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)


class FakeToken(ExternalKey):
    """
    A key "on a token" that signs only when the test says so: it records
    nothing and is never called by the core (which must not do the IO).
    """

    def __init__(self, key: keys.PrivateKey) -> None:
        self.key = key
        self.scheme = keys.scheme_for(key.public_key())
        self.calls = 0

    def public_key(self) -> keys.PublicKey:
        return self.key.public_key()

    def sign_blocking(self, message: bytes) -> bytes:
        self.calls += 1
        return keys.sign(self.key, message)[1]


def conn(role: Role, name: str, key: keys.PrivateKey | ExternalKey) -> Connection:
    return Connection(Config(END_TO_END, role, key, UserIdentity(name)))


def pubs(identity: UserIdentity) -> keys.PublicKey:
    return {"alice": ALICE, "bob": BOB}[identity.name].public_key()


class SigningStepTests(unittest.TestCase):
    """
    The WAIT_SIGN step, for either role.
    """

    def test_initiatorSignsLater(self) -> None:
        """
        An initiator whose key is external accepts the peer, then emits
        SignatureNeeded with the exact content to sign and sends nothing
        until the signature comes; with it the handshake completes on both
        sides, and the core never called the token itself.
        """
        token = FakeToken(ALICE)
        a, b = conn(Role.INITIATOR, "alice", token), conn(Role.RESPONDER, "bob", BOB)
        a.initiate()
        b.receive_data(a.data_to_send())
        events = a.receive_data(b.data_to_send())
        self.assertEqual(events, [PeerIdentityReceived(UserIdentity("bob"))])
        events = a.accept_peer(BOB.public_key())
        self.assertEqual(len(events), 1)
        need = events[0]
        assert isinstance(need, SignatureNeeded)
        self.assertEqual(need.scheme, keys.ED25519)
        self.assertEqual(a.state, State.WAIT_SIGN)
        self.assertEqual(a.data_to_send(), b"")
        self.assertEqual(token.calls, 0)
        events = a.signature_ready(ALICE.sign(need.content))
        self.assertIsInstance(events[-1], HandshakeComplete)
        eb = b.receive_data(a.data_to_send())
        self.assertEqual(eb, [PeerIdentityReceived(UserIdentity("alice"))])
        self.assertIsInstance(b.accept_peer(ALICE.public_key())[-1], HandshakeComplete)

    def test_responderSignsLater(self) -> None:
        """
        A responder whose key is external sends its HELLO_REPLY, emits
        SignatureNeeded and sends its AUTH only once the signature is given;
        the handshake then completes.
        """
        a, b = conn(Role.INITIATOR, "alice", ALICE), conn(Role.RESPONDER, "bob", FakeToken(BOB))
        a.initiate()
        events = b.receive_data(a.data_to_send())
        need = events[-1]
        assert isinstance(need, SignatureNeeded)
        self.assertEqual(b.state, State.WAIT_SIGN)
        self.assertEqual(a.receive_data(b.data_to_send()), [])  # the reply alone
        self.assertEqual(a.state, State.WAIT_AUTH)
        self.assertEqual(b.signature_ready(BOB.sign(need.content)), [])
        self.assertEqual(b.state, State.WAIT_AUTH)
        ea, eb = run(a, b, pubs, pubs)
        self.assertIsInstance(ea[-1], HandshakeComplete)
        self.assertIsInstance(eb[-1], HandshakeComplete)

    def test_eachKeyType(self) -> None:
        """
        The signing step works for each key type: the ECDSA and RSA-PSS
        signatures made outside are accepted by the peer.
        """
        for key in (ALICE, ec.generate_private_key(ec.SECP256R1()),
                    rsa.generate_private_key(65537, 2048)):
            a, b = conn(Role.INITIATOR, "alice", FakeToken(key)), conn(Role.RESPONDER, "bob", BOB)
            a.initiate()
            b.receive_data(a.data_to_send())
            a.receive_data(b.data_to_send())
            need = a.accept_peer(BOB.public_key())[0]
            assert isinstance(need, SignatureNeeded)
            a.signature_ready(keys.sign(key, need.content)[1])
            b.receive_data(a.data_to_send())
            self.assertIsInstance(b.accept_peer(key.public_key())[-1], HandshakeComplete)

    def test_inputHeldWhileSigning(self) -> None:
        """
        Input arriving while our signature is made is held back, not
        processed: a garbage frame is noticed only after the signature.
        """
        a, b = conn(Role.INITIATOR, "alice", FakeToken(ALICE)), conn(Role.RESPONDER, "bob", BOB)
        a.initiate()
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())
        need = a.accept_peer(BOB.public_key())[0]
        assert isinstance(need, SignatureNeeded)
        self.assertEqual(a.receive_data(encode_frame(0x7F, b"junk")), [])
        self.assertEqual(a.state, State.WAIT_SIGN)
        events = a.signature_ready(ALICE.sign(need.content))
        self.assertIsInstance(events[0], HandshakeComplete)
        self.assertIsInstance(events[-1], ConnectionFailed)

    def test_tooMuchInputWhileSigning(self) -> None:
        """
        Held input is bounded while signing as while verifying:
        C{limit-exceeded}.
        """
        a, b = conn(Role.INITIATOR, "alice", FakeToken(ALICE)), conn(Role.RESPONDER, "bob", BOB)
        a.initiate()
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())
        a.accept_peer(BOB.public_key())
        events: list[object] = []
        chunk = encode_frame(0x17, b"x" * 1000)
        for _ in range(200):
            events += a.receive_data(chunk)
            if events:
                break
        failed = events[-1]
        assert isinstance(failed, ConnectionFailed)
        self.assertEqual(failed.error.code, "limit-exceeded")
        self.assertIn("while our signature is made", failed.error.detail)

    def test_signingFailed(self) -> None:
        """
        When the token cannot sign, the connection fails with
        C{signing-failed} and the reason given, and the peer gets
        HANDSHAKE_FAILED with no reason (nothing about the token leaks).
        """
        a, b = conn(Role.INITIATOR, "alice", FakeToken(ALICE)), conn(Role.RESPONDER, "bob", BOB)
        a.initiate()
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())
        a.accept_peer(BOB.public_key())
        events = a.signing_failed("the token was removed")
        failed = events[-1]
        assert isinstance(failed, ConnectionFailed)
        self.assertEqual(failed.error.code, "signing-failed")
        self.assertEqual(failed.error.detail, "the token was removed")
        self.assertEqual(a.state, State.FAILED)
        eb = b.receive_data(a.data_to_send())
        error = eb[-1]
        assert isinstance(error, ConnectionFailed)
        self.assertIsInstance(error.error, UnauthenticatedAlert)
        self.assertEqual(error.error.peer_alert, AlertCode.HANDSHAKE_FAILED)

    def test_wrongSignatureFromToken(self) -> None:
        """
        A signature from the token that does not verify with its public key
        (another key, a mangled signature) is C{signing-failed} locally,
        before anything is sent.
        """
        a, b = conn(Role.INITIATOR, "alice", FakeToken(ALICE)), conn(Role.RESPONDER, "bob", BOB)
        a.initiate()
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())
        need = a.accept_peer(BOB.public_key())[0]
        assert isinstance(need, SignatureNeeded)
        failed = a.signature_ready(BOB.sign(need.content))[-1]
        assert isinstance(failed, ConnectionFailed)
        self.assertEqual(failed.error.code, "signing-failed")
        self.assertIn("does not verify with its public key", failed.error.detail)

    def test_signatureWhenNotAsked(self) -> None:
        """
        signature_ready and signing_failed outside WAIT_SIGN are the
        caller's bug: C{LocalProtocolError}.
        """
        a = conn(Role.INITIATOR, "alice", FakeToken(ALICE))
        with self.assertRaises(LocalProtocolError) as e:
            a.signature_ready(b"x")
        self.assertEqual(str(e.exception), "unexpected-message: no signature is awaited")
        with self.assertRaises(LocalProtocolError):
            a.signing_failed("x")

    def test_memoryKeyNeverAsks(self) -> None:
        """
        A key in memory keeps the synchronous path: no SignatureNeeded, no
        WAIT_SIGN.
        """
        a, b = conn(Role.INITIATOR, "alice", ALICE), conn(Role.RESPONDER, "bob", BOB)
        ea, eb = run(a, b, pubs, pubs)
        self.assertFalse([e for e in ea + eb if isinstance(e, SignatureNeeded)])
        self.assertIsInstance(ea[-1], HandshakeComplete)

    def test_keysSignRefusesTokenKey(self) -> None:
        """
        keys.sign, the synchronous path, refuses a key held on a token with
        a clear TypeError instead of calling it on the reactor thread (for
        code that signs letters, receipts or prekeys with the user's key).
        """
        with self.assertRaises(TypeError) as e:
            keys.sign(FakeToken(ALICE), b"m")  # type: ignore[arg-type]
        self.assertEqual(str(e.exception), "cannot sign with FakeToken here: a key held on a "
                                           "token signs off the reactor thread "
                                           "(securechat.signing.sign_later)")

    def test_asSigner(self) -> None:
        """
        as_signer gives the one ISigner interface for a key in memory and for
        an external key, and both sign what verifies.
        """
        token = FakeToken(ALICE)
        self.assertIs(as_signer(token), token)
        memory = as_signer(ALICE)
        self.assertIsInstance(memory, MemorySigner)
        for signer in (memory, token):
            keys.verify(signer.public_key(), signer.scheme, signer.sign_blocking(b"m"), b"m")
