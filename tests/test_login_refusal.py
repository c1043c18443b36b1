"""
Refusing a login does the work a failed signature check does (issue 12,
security defect 2): an unknown or revoked user name is refused only after
the client's signature was verified once, against a stand-in key of the
shape the signature implies, and with the same bytes as a registered name
with a bad signature.  (The timing itself is measured by the benchmark
suite, C{benchmarks/login_timing.py}, not here.)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.trial import unittest

from securechat.crypto import keys
from securechat.crypto.config import Config
from securechat.server.directory import MemoryDirectory, UserEntry
from securechat.server.relay import Relay
from securechat.wire.framing import FrameDecoder
from tests.relay_harness import Harness, user_key
from tests.support import DeterministicRandom

_RSA_3072 = rsa.generate_private_key(65537, 3072)
_P256 = ec.generate_private_key(ec.SECP256R1())


class CountingVerifier:
    """
    L{keys.verify}, recording the key each call used.
    """

    def __init__(self) -> None:
        self.keys: list[keys.PublicKey] = []

    def __call__(self, key: keys.PublicKey, scheme: int, signature: bytes, message: bytes) -> None:
        self.keys.append(key)
        keys.verify(key, scheme, signature, message)


def counting_relay(verifier: CountingVerifier, seed: bytes | None = None) -> type[Relay]:
    """
    A relay class whose handshakes check signatures with C{verifier} (and,
    given C{seed}, draw the same randomness for every connection).
    """

    class CountingRelay(Relay):
        def config(self) -> Config:
            config = dataclasses.replace(super().config(), verifier=verifier)
            if seed is not None:
                config = dataclasses.replace(config, random=DeterministicRandom(seed))
            return config
    return CountingRelay


class RefusalVerifiesTests(unittest.TestCase):
    """
    Every refused login verified the signature exactly once.
    """

    def login(self, directory_entries: list[UserEntry], name: str,
              key: Any) -> tuple[CountingVerifier, Any, Any]:
        verifier = CountingVerifier()
        h = Harness(relay_class=counting_relay(verifier))
        h.directory = MemoryDirectory(directory_entries)
        h.relay.directory = h.directory
        client, link = h.connect(name, key=key)
        h.pump()
        self.assertFalse(client.logged_in)
        return verifier, h, client

    def test_unknownUserVerifiesWithAStandIn(self) -> None:
        """
        An unknown name is refused with C{unknown-user} after one signature
        verification, against a stand-in key of the client's own key type
        (and, for RSA, size); the client sees the uniform refusal.
        """
        for private in (user_key("mallory"), _P256, _RSA_3072):
            verifier, h, client = self.login([], "mallory", private)
            self.assertEqual(len(verifier.keys), 1, private)
            [used] = verifier.keys
            self.assertEqual(keys.describe(used), keys.describe(private.public_key()))
            self.assertNotEqual(keys.public_key_der(used), keys.public_key_der(private.public_key()))
            self.assertEqual(client.error.code, "peer-alert")
            self.assertEqual(client.error.detail, "peer closed the connection: HANDSHAKE_FAILED")

    def test_revokedUserVerifiesWithAStandIn(self) -> None:
        """
        A revoked name is refused with C{revoked-user} after one signature
        verification against a stand-in key, not its registered one.
        """
        alice = user_key("alice")
        verifier, h, client = self.login(
            [UserEntry("alice", alice.public_key(), revoked=True)], "alice", alice)
        [used] = verifier.keys
        self.assertEqual(keys.describe(used), "ed25519")
        self.assertNotEqual(keys.public_key_der(used), keys.public_key_der(alice.public_key()))
        self.assertEqual(client.error.detail, "peer closed the connection: HANDSHAKE_FAILED")

    def test_badSignatureVerifiesWithTheRegisteredKey(self) -> None:
        """
        A registered name with a bad signature is refused with
        C{bad-signature} after one verification with the registered key.
        """
        alice = user_key("alice")
        verifier, h, client = self.login(
            [UserEntry("alice", alice.public_key())], "alice", user_key("eve"))
        [used] = verifier.keys
        self.assertEqual(keys.public_key_der(used), keys.public_key_der(alice.public_key()))

    def test_signatureOfAnotherShapeVerifiesWithAStandIn(self) -> None:
        """
        A registered name whose client signs with another key type than the
        registered one (so the scheme does not fit) is still verified once,
        against a stand-in of the scheme the client used: its answer takes
        as long as for an unknown name signing the same way.
        """
        verifier, h, client = self.login(
            [UserEntry("alice", user_key("alice").public_key())], "alice", _RSA_3072)
        [used] = verifier.keys
        self.assertEqual(keys.describe(used), "rsa-3072")
        self.assertEqual(client.error.detail, "peer closed the connection: HANDSHAKE_FAILED")

    def test_sameBytesForUnknownRevokedAndBadSignature(self) -> None:
        """
        With the same randomness on both sides, an unknown name, a revoked
        one and a registered one with a bad signature get exactly the same
        bytes from the relay, from the first to the last.
        """
        alice = user_key("alice")
        # the last frame, the refusal, is a record sealed under ap_r
        directories = ([], [UserEntry("alice", alice.public_key(), revoked=True)],
                       [UserEntry("alice", user_key("eve").public_key())])
        received = []
        for entries in directories:
            h = Harness(relay_class=counting_relay(CountingVerifier(), seed=b"relay"))
            h.relay.directory = MemoryDirectory(entries)
            raw = _RawLogin(h, alice)
            received.append(raw.received)
        self.assertEqual(received, [received[0]] * 3)
        decoder = FrameDecoder(2**20)
        decoder.feed(received[0])
        frames = list(iter(decoder.next_frame, None))
        self.assertEqual([f[4] for f in frames], [0x02, 0x17, 0x17])  # reply, AUTH, refusal
        self.assertEqual(frames[-1][5:13], bytes(8))  # the first record under ap_r


class _RawLogin:
    """
    Logs in as alice with fixed randomness and records every byte the relay
    sends back.
    """

    def __init__(self, h: Harness, key: Any) -> None:
        from tests.attack_tools import connect_raw
        from securechat.crypto.config import CLIENT_SERVER, Role
        from securechat.crypto.handshake import Connection
        from securechat.wire.messages import UserIdentity
        from securechat.wire.relay import FROM_SERVER

        raw, server, link = connect_raw(h)
        raw.connection = Connection(Config(
            CLIENT_SERVER, Role.INITIATOR, key, UserIdentity("alice"), registry=FROM_SERVER,
            random=DeterministicRandom(b"client")))
        raw.connection.initiate()
        raw.flush()
        h.pump()
        self.received = raw.received


class StandInKeyTests(unittest.TestCase):
    """
    L{keys.stand_in_key} and L{keys.signature_fits}.
    """

    def test_shapes(self) -> None:
        """
        The stand-in has the type the scheme names; an RSA one the size the
        signature's length gives, clamped to 2048..4096 bits; an unknown
        scheme gets the Ed25519 key (refused at once by L{keys.verify}, as
        a registered key would be).
        """
        self.assertIsInstance(keys.stand_in_key(keys.ED25519, b"x" * 64), ed25519.Ed25519PublicKey)
        self.assertIsInstance(keys.stand_in_key(keys.ECDSA_P256_SHA256, b"x" * 70),
                              ec.EllipticCurvePublicKey)
        for length, bits in ((384, 3072), (256, 2048), (100, 2048), (600, 4096)):
            key = keys.stand_in_key(keys.RSA_PSS_SHA256, b"\x01" * length)
            assert isinstance(key, rsa.RSAPublicKey)
            self.assertEqual(key.key_size, bits)
        self.assertIsInstance(keys.stand_in_key(0x0401, b"x"), ed25519.Ed25519PublicKey)

    def test_fits(self) -> None:
        """
        A signature fits a key when its scheme is the key's and, for RSA,
        its length is the modulus length and its value below the modulus
        (OpenSSL refuses a larger one before any arithmetic).
        """
        public = _RSA_3072.public_key()
        n = public.public_numbers().n
        self.assertTrue(keys.signature_fits(public, keys.RSA_PSS_SHA256, b"\x01" * 384))
        self.assertFalse(keys.signature_fits(public, keys.RSA_PSS_SHA256, b"\x01" * 256))
        self.assertFalse(keys.signature_fits(public, keys.RSA_PSS_SHA256, n.to_bytes(384, "big")))
        self.assertFalse(keys.signature_fits(public, keys.ED25519, b"\x01" * 384))
        self.assertTrue(keys.signature_fits(_P256.public_key(), keys.ECDSA_P256_SHA256, b"x"))
        stand_in = keys.stand_in_key(keys.RSA_PSS_SHA256, n.to_bytes(384, "big"))
        assert isinstance(stand_in, rsa.RSAPublicKey)
        self.assertGreater(stand_in.public_numbers().n, n)
