"""
The points of docs/protocol.rst that an implementer had to guess at (issue
12, "The specification"), each checked against the behaviour, with the
expected values computed from the specification's text (and the clean-room
key schedule of L{tests.independent_peer}), not read back from the code:

  - 5.2/7: the exact signed message, and how ECDSA and RSA-PSS hash it;
  - 6: the counter that drives the client-server key update;
  - 11.2: how max_payload relates to the frame maximum, and how
    ONLINE_LIST is sorted and cut.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.trial import unittest

from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, END_TO_END, Config, Role
from securechat.crypto.events import HandshakeComplete, MessageReceived
from securechat.crypto.handshake import Connection
from securechat.protocol import SecureChatProtocol
from securechat.server.directory import UserEntry
from securechat.server.limits import Limits
from securechat.wire.messages import CertificateIdentity, Ping, Pong, UserIdentity
from securechat.wire.relay import (
    FROM_CLIENT,
    FROM_SERVER,
    ChatAccept,
    ChatRequest,
    ListOnline,
    OnlineList,
    Relay,
    Relayed,
)
from tests import independent_peer as spec
from tests.relay_harness import Harness, RecordingClient, user_key
from tests.support import run

ALICE = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
BOB = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)
SERVER = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x53" * 32)
_RSA = rsa.generate_private_key(65537, 2048)
_P256 = ec.generate_private_key(ec.SECP256R1())
CERTIFICATE = CertificateIdentity((b"certificate",), b"crl")


class Recorder:
    """
    A verifier (L{Config.verifier}) that records what it was asked to check.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, int, bytes, bytes]] = []

    def __call__(self, key: Any, scheme: int, signature: bytes, message: bytes) -> None:
        self.calls.append((key, scheme, signature, message))
        keys.verify(key, scheme, signature, message)


def e2e_pair(alice_key: Any, recorder: Recorder) -> tuple[Connection, Connection, bytes, bytes]:
    """
    An end-to-end handshake, bob (responder) recording the signature he
    checks; returns both sides and the HELLO and HELLO_REPLY frames.
    """
    a = Connection(Config(END_TO_END, Role.INITIATOR, alice_key, UserIdentity("alice")))
    b = Connection(Config(END_TO_END, Role.RESPONDER, BOB, UserIdentity("bob"), verifier=recorder))
    a.initiate()
    hello = a.data_to_send()
    b.receive_data(hello)
    flight = b.data_to_send()
    reply = flight[:4 + int.from_bytes(flight[:4], "big")]
    for event in a.receive_data(flight):
        pass
    a.accept_peer(BOB.public_key())
    for event in b.receive_data(a.data_to_send()):
        pass
    b.accept_peer(alice_key.public_key())
    return a, b, hello, reply


class SignedMessageTests(unittest.TestCase):
    """
    docs/protocol.rst 5.2 and 7, "What is signed, exactly".
    """

    def test_exactMessage(self) -> None:
        """
        The end-to-end responder signs the 43-byte ASCII prefix, a zero
        byte and SHA-256 of HELLO, HELLO_REPLY and its identity encoding:
        76 bytes; the client-server initiator's prefix makes 79.
        """
        recorder = Recorder()
        a = Connection(Config(END_TO_END, Role.INITIATOR, ALICE, UserIdentity("alice"),
                              verifier=recorder))
        b = Connection(Config(END_TO_END, Role.RESPONDER, BOB, UserIdentity("bob")))
        a.initiate()
        hello = a.data_to_send()
        b.receive_data(hello)
        flight = b.data_to_send()
        reply = flight[:4 + int.from_bytes(flight[:4], "big")]
        a.receive_data(flight)
        a.accept_peer(BOB.public_key())
        [(key, scheme, signature, message)] = recorder.calls
        identity = b"\x02\x03bob"  # kind 2, text8 "bob" (4.6)
        expected = (b"securechat/1 end-to-end responder signature" + b"\x00"
                    + hashlib.sha256(hello + reply + identity).digest())
        self.assertEqual(message, expected)
        self.assertEqual(len(message), 76)
        BOB.public_key().verify(signature, expected)  # PureEdDSA over M itself

        recorder = Recorder()
        server = Connection(Config(CLIENT_SERVER, Role.RESPONDER, SERVER, CERTIFICATE,
                                   verifier=recorder))
        client = Connection(Config(CLIENT_SERVER, Role.INITIATOR, ALICE, UserIdentity("alice")))
        ec_, es = run(client, server, lambda i: SERVER.public_key(), lambda i: ALICE.public_key())
        self.assertIsInstance(es[-1], HandshakeComplete)
        [(key, scheme, signature, message)] = recorder.calls
        self.assertEqual(message[:47], b"securechat/1 client-server initiator signature\x00")
        self.assertEqual(len(message), 79)

    def test_ecdsaHashesTheMessageWithSha256(self) -> None:
        """
        An ECDSA P-256 signature is ECDSA over SHA-256(M): it verifies as
        ecdsa-with-SHA256 of M, and as a pre-hashed signature of
        SHA-256(M).
        """
        recorder = Recorder()
        e2e_pair(_P256, recorder)
        [(key, scheme, signature, message)] = recorder.calls
        self.assertEqual(scheme, 0x0403)
        public = _P256.public_key()
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        public.verify(signature, hashlib.sha256(message).digest(),
                      ec.ECDSA(Prehashed(hashes.SHA256())))
        with self.assertRaises(InvalidSignature):
            public.verify(signature, message, ec.ECDSA(hashes.SHA384()))

    def test_rsaPssParameters(self) -> None:
        """
        An RSA signature is RSASSA-PSS with SHA-256, MGF1-SHA-256 and a salt
        of exactly 32 bytes, as long as the modulus.
        """
        recorder = Recorder()
        e2e_pair(_RSA, recorder)
        [(key, scheme, signature, message)] = recorder.calls
        self.assertEqual(scheme, 0x0804)
        self.assertEqual(len(signature), 256)
        public = _RSA.public_key()
        public.verify(signature, message,
                      padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                      hashes.SHA256())
        for wrong in (padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=31),
                      padding.PSS(mgf=padding.MGF1(hashes.SHA1()), salt_length=32)):
            with self.assertRaises(InvalidSignature):
                public.verify(signature, message, wrong, hashes.SHA256())


N = 2**20


class KeyUpdateTests(unittest.TestCase):
    """
    docs/protocol.rst 6, "Key update", in the client-server context: the
    record counter of each direction under its application secret, every
    record counted, the record with counter k*N the first under the k-th
    update.  (That application secrets start from ``hs``, with no update
    of the handshake secrets, is checked byte for byte by the vectors of
    section 13, L{tests.test_vectors}.)
    """

    def established(self) -> tuple[Connection, Connection]:
        server = Connection(Config(CLIENT_SERVER, Role.RESPONDER, SERVER, CERTIFICATE,
                                   suites=(0x0001,), registry=FROM_CLIENT))
        client = Connection(Config(CLIENT_SERVER, Role.INITIATOR, ALICE, UserIdentity("alice"),
                                   registry=FROM_SERVER))
        ec_, es = run(client, server, lambda i: SERVER.public_key(), lambda i: ALICE.public_key())
        self.assertIsInstance(es[-1], HandshakeComplete)
        return client, server

    def assertSealedUnder(self, record: bytes, secret: bytes) -> None:
        """
        C{record} opens with the key and IV the spec derives from C{secret}
        (AES-256-GCM, nonce = iv XOR counter, the header as associated data).
        """
        counter = int.from_bytes(record[5:13], "big")
        nonce = (int.from_bytes(spec.traffic_iv(secret), "big") ^ counter).to_bytes(12, "big")
        AESGCM(spec.traffic_key(secret)).decrypt(nonce, record[13:], record[:13])

    def test_crossingTheBoundary(self) -> None:
        """
        With both ends of the client's direction moved to counter N - 2 (as
        if N - 2 records had been sent), three records cross the boundary:
        N - 2 and N - 1 (a PING, which counts like any record) are sealed
        under the application secret, N under next() of it and not under
        the old one; both sides keep talking, and the other direction,
        which did not cross, keeps its secret.
        """
        client, server = self.established()
        sealer, opener = client._sealer, server._opener
        assert sealer is not None and opener is not None
        ap_i = sealer._secret
        sealer.counter = opener.counter = N - 2
        records = []
        for message in (ListOnline(), Ping(b"keepalive"), ListOnline()):
            client.send(message)
            records.append(client.data_to_send())
        seen = []
        for record in records:
            seen.extend(server.receive_data(record))
        self.assertEqual([type(e.message) for e in seen if isinstance(e, MessageReceived)],
                         [ListOnline, ListOnline])
        self.assertEqual([int.from_bytes(r[5:13], "big") for r in records], [N - 2, N - 1, N])
        self.assertSealedUnder(records[0], ap_i)
        self.assertSealedUnder(records[1], ap_i)
        self.assertSealedUnder(records[2], spec.next_secret(ap_i))
        with self.assertRaises(InvalidTag):
            self.assertSealedUnder(records[2], ap_i)
        # the server answered the PING under its own, un-updated secret
        pong = server.data_to_send()
        self.assertEqual(client.receive_data(pong), [MessageReceived(Pong(b"keepalive"))])
        # and the client's direction goes on under the new key
        client.send(ListOnline())
        self.assertEqual(server.receive_data(client.data_to_send()),
                         [MessageReceived(ListOnline())])


def _logged_in(h: Harness, name: str, max_frame: int) -> RecordingClient:
    """
    C{name} logged in with a client whose own frame maximum is
    C{max_frame}: a relay frame above it fails the client.
    """
    h.directory.add(UserEntry(name, user_key(name).public_key()))
    client = RecordingClient(name)
    proto = SecureChatProtocol(
        Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name),
               registry=FROM_SERVER, max_frame=max_frame),
        client, h.clock, handshake_timeout=1e9)
    h.network.connect(proto, h.factory.buildProtocol(None))
    assert client.logged_in, client.error
    client.take()
    return client


class MaxPayloadTests(unittest.TestCase):
    """
    docs/protocol.rst 11.2, "max_payload and the frame maximum".
    """

    LONG_A = "a" * 32
    LONG_B = "b" * 32

    def test_recordLengthFormula(self) -> None:
        """
        A RELAY of P bytes for a name of n bytes, alone in a record, has a
        frame length field of P + n + 35; for P = max_payload and n = 32
        that is F - 61.
        """
        client, server = KeyUpdateTests.established(self)  # type: ignore[arg-type]
        for frame_max in (65536, 4096):
            payload = b"x" * (frame_max - 128)
            client.send(Relay(self.LONG_B, payload))
            record = client.data_to_send()
            self.assertEqual(int.from_bytes(record[:4], "big"), len(payload) + 32 + 35)
            self.assertEqual(int.from_bytes(record[:4], "big"), frame_max - 61)
            server.receive_data(record)

    def test_exactlyMaxPayloadBothWays(self) -> None:
        """
        For frame maxima of 65,536 and 1,024, WELCOME announces F - 128; a
        RELAY of exactly that many bytes between two users with 32-byte
        names is accepted from a client whose frames are at most F, and
        reaches a client whose frames are at most F, whole, both ways.
        """
        for frame_max in (65536, 1024):
            h = Harness(Limits(max_frame=frame_max))
            a = _logged_in(h, self.LONG_A, frame_max)
            b = _logged_in(h, self.LONG_B, frame_max)
            a.send(ChatRequest(self.LONG_B))
            h.pump()
            b.send(ChatAccept(self.LONG_A))
            h.pump()
            a.take(), b.take()
            payload = bytes(range(256)) * ((frame_max - 128) // 256) + b"x" * ((frame_max - 128) % 256)
            self.assertEqual(len(payload), frame_max - 128)
            a.send(Relay(self.LONG_B, payload))
            b.send(Relay(self.LONG_A, payload))
            h.pump()
            self.assertEqual(b.take(), [Relayed(self.LONG_A, payload)])
            self.assertEqual(a.take(), [Relayed(self.LONG_B, payload)])
            self.assertFalse(a.ended or b.ended)

    def test_oneByteMoreRefused(self) -> None:
        """
        max_payload + 1 is C{limit-exceeded} even though its frame would
        fit (F - 60): the sender is cut off and nothing reaches the peer.
        """
        h = Harness(Limits(max_frame=1024))
        a = _logged_in(h, self.LONG_A, 1024)
        b = _logged_in(h, self.LONG_B, 1024)
        a.send(ChatRequest(self.LONG_B))
        h.pump()
        b.send(ChatAccept(self.LONG_A))
        h.pump()
        b.take()
        a.send(Relay(self.LONG_B, b"x" * (1024 - 128 + 1)))
        h.pump()
        self.assertEqual(a.error.peer_alert, 9)  # type: ignore[union-attr]  # LIMIT_EXCEEDED
        self.assertEqual(b.of_type(Relayed), [])
        self.assertFalse(b.ended)


class OnlineListTests(unittest.TestCase):
    """
    docs/protocol.rst 11.2, "ONLINE_LIST": ascending byte order, cut at the
    end to the longest prefix whose body fits in max_payload.
    """

    NAMES = ("zed", "b", "ab", "a_b", "a0", "a.b", "a-b", "c" * 30)

    def online(self, max_payload: int) -> OnlineList:
        h = Harness(Limits(max_frame=max_payload + 128))
        clients = {name: _logged_in(h, name, 65536) for name in self.NAMES}
        clients["zed"].send(ListOnline())
        h.pump()
        [answer] = clients["zed"].take()
        assert isinstance(answer, OnlineList)
        return answer

    def test_sortedAndCut(self) -> None:
        """
        With max_payload 60 the body has room for 60 - 2 - 8 = 50 bytes of
        names: a-b, a.b, a0, a_b, ab, b take 20, the 30-character name 31
        more, which does not fit; the list stops there (zed, the
        requester, is not listed either) and total counts all 8.
        """
        self.assertEqual(self.online(60), OnlineList(("a-b", "a.b", "a0", "a_b", "ab", "b"), 8))

    def test_exactFit(self) -> None:
        """
        With max_payload 61 the 30-character name fits exactly (51 of 51
        bytes) and zed does not.
        """
        self.assertEqual(self.online(61),
                         OnlineList(("a-b", "a.b", "a0", "a_b", "ab", "b", "c" * 30), 8))

    def test_everyoneWhenTheyFit(self) -> None:
        """
        With the default frame maximum everybody is listed, sorted.
        """
        self.assertEqual(self.online(65536 - 128),
                         OnlineList(("a-b", "a.b", "a0", "a_b", "ab", "b", "c" * 30, "zed"), 8))

