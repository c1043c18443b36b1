"""
Forward secrecy, shown the way an attacker would try to break it
(docs/security.rst, "Forward secrecy"): a recorded session, then the
long-term private keys of both sides, or the state a connection holds
later, and every record that was sent before must stay closed.

Each test has a positive control: the same attack with the one secret the
protocol throws away (the ephemeral key, the earlier chain secret) does
open the recording, so a failure to open is the protocol's doing and not
a mistake in the attack.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from twisted.trial import unittest

from securechat.crypto.config import CLIENT_SERVER, END_TO_END, Config, Role
from securechat.crypto.events import HandshakeComplete, MessageReceived, PeerIdentityReceived
from securechat.crypto.handshake import Connection
from securechat.crypto.records import RecordOpener
from securechat.crypto.schedule import handshake_secret, next_traffic_secret
from securechat.crypto.suites import AES_256_GCM
from securechat.errors import RemoteProtocolError
from securechat.wire.e2e import E2E_MESSAGES, Text
from securechat.wire.messages import HELLO_REPLY, Hello, HelloReply, UserIdentity, parse_frame
from tests.relay_harness import SERVER_IDENTITY, SERVER_KEY, user_key
from tests.support import DeterministicRandom, failure

ALICE = user_key("alice")
BOB = user_key("bob")
SECRETS = ["attack at dawn", "the password is swordfish", "meet at the old mill"]


def _parties(context: int, seed: bytes) -> tuple[Connection, Connection, Any]:
    """
    An initiator (alice) and a responder (bob, or the relay in the
    client-server context), each on a known random source; and the
    responder's private key and identity.
    """
    if context == CLIENT_SERVER:
        responder_key, responder_identity = SERVER_KEY, SERVER_IDENTITY
    else:
        responder_key, responder_identity = BOB, UserIdentity("bob")
    initiator = Connection(Config(context, Role.INITIATOR, ALICE, UserIdentity("alice"),
                                  random=DeterministicRandom(seed + b"i"), registry=E2E_MESSAGES))
    responder = Connection(Config(context, Role.RESPONDER, responder_key, responder_identity,
                                  random=DeterministicRandom(seed + b"r"), registry=E2E_MESSAGES))
    return initiator, responder, (responder_key, responder_identity)


def _accept_all(conn: Connection, events: list[Any], key: Any) -> list[Any]:
    out = list(events)
    for event in events:
        if isinstance(event, PeerIdentityReceived):
            out.extend(_accept_all(conn, conn.accept_peer(key), key))
    return out


def _record_session(context: int, seed: bytes) -> tuple[list[bytes], list[bytes]]:
    """
    A whole session: the handshake, then alice sends the L{SECRETS} (one
    record each) and bob answers.  Returns the byte chunks each side sent,
    in order, as a network tap would record them.
    """
    alice, bob, (responder_key, _) = _parties(context, seed)
    from_alice: list[bytes] = []
    from_bob: list[bytes] = []
    alice.initiate()
    for _ in range(4):
        a_out = alice.data_to_send()
        if a_out:
            from_alice.append(a_out)
            _accept_all(bob, bob.receive_data(a_out), ALICE.public_key())
        b_out = bob.data_to_send()
        if b_out:
            from_bob.append(b_out)
            _accept_all(alice, alice.receive_data(b_out), responder_key.public_key())
    for secret in SECRETS:
        alice.send(Text(0, secret))
        data = alice.data_to_send()
        from_alice.append(data)
        seen = bob.receive_data(data)
        assert MessageReceived(Text(0, secret)) in seen, seen
    return from_alice, from_bob


def _replay_as_responder(context: int, from_alice: list[bytes], random: Callable[[int], bytes],
                         private_key: Any, identity: Any) -> list[Any]:
    """
    Play the responder again with C{private_key} and C{random}, feeding it
    everything alice sent in the recording; return what it saw.
    """
    attacker = Connection(Config(context, Role.RESPONDER, private_key, identity, random=random,
                                 registry=E2E_MESSAGES))
    seen: list[Any] = []
    for chunk in from_alice:
        seen.extend(_accept_all(attacker, attacker.receive_data(chunk), ALICE.public_key()))
        attacker.data_to_send()
    return seen


def _recorded_nonce_then(from_bob: list[bytes], rest: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """
    A random source that first gives the responder's recorded nonce (so
    the attacker's transcript is the recorded one), then C{rest}.
    """
    first = from_bob[0]
    length = int.from_bytes(first[:4], "big")
    reply = parse_frame(first[:4 + length], HelloReply)
    assert first[4] == HELLO_REPLY
    calls = [0]

    def random(n: int) -> bytes:
        calls[0] += 1
        if calls[0] == 1:
            assert n == len(reply.nonce)
            return reply.nonce
        return rest(n)
    return random


def _frame(data: bytes, kind: Any) -> Any:
    """
    The first frame of C{data}, parsed as C{kind}.
    """
    return parse_frame(data[:4 + int.from_bytes(data[:4], "big")], kind)


def _opened(seen: list[Any]) -> list[str]:
    return [e.message.text for e in seen
            if isinstance(e, MessageReceived) and isinstance(e.message, Text)]


class StolenLongTermKeysTests(unittest.TestCase):
    """
    A recorded session stays closed to someone who later steals both
    long-term private keys.
    """

    def _attack(self, context: int) -> None:
        seed = b"recorded session %d" % context
        from_alice, from_bob = _record_session(context, seed)
        _, _, (responder_key, responder_identity) = _parties(context, seed)
        wire = b"".join(from_alice + from_bob)
        for secret in SECRETS:
            self.assertNotIn(secret.encode(), wire)

        # Positive control: with the responder's ephemeral key (the one
        # secret forward secrecy relies on forgetting) the replay opens
        # every recorded record.
        original = DeterministicRandom(seed + b"r")
        control = _replay_as_responder(context, from_alice, original, responder_key,
                                       responder_identity)
        self.assertEqual(_opened(control), SECRETS)

        # The attack: both long-term keys, the recorded nonces, the
        # recorded transcript; only the ephemeral key is fresh (it is
        # gone).  Alice's AUTH does not open, and neither does any record.
        stolen = _replay_as_responder(
            context, from_alice, _recorded_nonce_then(from_bob, os.urandom),
            responder_key, responder_identity)
        self.assertEqual(failure(stolen), "bad-handshake-record")
        self.assertEqual(_opened(stolen), [])
        self.assertFalse([e for e in stolen if isinstance(e, HandshakeComplete)])

        # With the production random source, the same stolen keys do not
        # even reproduce the recorded ephemeral public keys (had they, the
        # attacker would hold the ephemeral private keys, as the control).
        alice = Connection(Config(context, Role.INITIATOR, ALICE, UserIdentity("alice")))
        bob = Connection(Config(context, Role.RESPONDER, responder_key, responder_identity))
        alice.initiate()
        hello = alice.data_to_send()
        bob.receive_data(hello)
        reply = bob.data_to_send()
        again_alice = Connection(Config(context, Role.INITIATOR, ALICE, UserIdentity("alice")))
        again_alice.initiate()
        again_bob = Connection(Config(context, Role.RESPONDER, responder_key, responder_identity))
        again_bob.receive_data(hello)
        self.assertNotEqual(_frame(again_alice.data_to_send(), Hello).key_share,
                            _frame(hello, Hello).key_share)
        self.assertNotEqual(_frame(again_bob.data_to_send(), HelloReply).key_share,
                            _frame(reply, HelloReply).key_share)

    def test_stolenLongTermKeysEndToEnd(self) -> None:
        """
        End to end: alice's and bob's long-term keys, stolen after the
        chat, together with the recorded bytes and nonces, do not open a
        single recorded line (the replay fails with
        C{bad-handshake-record}); with bob's discarded ephemeral key they
        would.  Guards: ephemeral keys are fresh per handshake, never
        derived from the long-term key, and the traffic keys depend on
        them.
        """
        self._attack(END_TO_END)

    def test_stolenLongTermKeysClientServer(self) -> None:
        """
        The same for the client-server context: alice's key and the
        relay's certificate key do not open a recorded session.
        """
        self._attack(CLIENT_SERVER)


def _reachable(root: object) -> Iterator[object]:
    """
    Every object reachable from C{root} through attributes, slots and
    containers (bytes and the like are leaves).
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, (bytes, bytearray, str, int, float, bool, type(None))):
            continue
        if isinstance(obj, memoryview):
            yield obj.tobytes()
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
            continue
        if callable(obj) and not hasattr(obj, "__slots__"):
            continue
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    stack.append(getattr(obj, name))
        stack.extend(getattr(obj, "__dict__", {}).values())


class NothingOldKeptTests(unittest.TestCase):
    """
    What a connection holds once established (what a memory capture would
    find) contains neither ephemeral key nor any secret that opens the
    handshake.
    """

    def test_noEphemeralOrHandshakeSecretKept(self) -> None:
        """
        After the handshake, nothing reachable from either connection is an
        X25519 private key, the X25519 shared secret or the handshake secret
        (all computed here from the known random sources).  Guards: the
        ephemeral key is dropped once used, and the handshake secrets once
        the traffic keys exist.
        """
        for context in (END_TO_END, CLIENT_SERVER):
            seed = b"kept %d" % context
            alice, bob, (responder_key, _) = _parties(context, seed)
            # The ephemeral keys are the second 32 bytes of each source
            # (the nonce comes first).
            eph_a = X25519PrivateKey.from_private_bytes(DeterministicRandom(seed + b"i")(64)[32:])
            eph_b = X25519PrivateKey.from_private_bytes(DeterministicRandom(seed + b"r")(64)[32:])
            share_b = eph_b.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)
            shared = eph_a.exchange(X25519PublicKey.from_public_bytes(share_b))
            raw_a = eph_a.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
            raw_b = eph_b.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
            forbidden = {raw_a, raw_b, shared, handshake_secret(context, shared)}
            alice.initiate()
            for _ in range(4):
                _accept_all(bob, bob.receive_data(alice.data_to_send()), ALICE.public_key())
                _accept_all(alice, alice.receive_data(bob.data_to_send()),
                            responder_key.public_key())
            self.assertEqual((alice.state.value, bob.state.value), ("ESTABLISHED", "ESTABLISHED"))
            # The test really does know the secrets: the handshake used them.
            self.assertEqual(alice.suite, bob.suite)
            for conn in (alice, bob):
                for obj in _reachable(conn):
                    self.assertNotIsInstance(obj, X25519PrivateKey)
                    if isinstance(obj, (bytes, bytearray)):
                        for secret in forbidden:
                            self.assertNotIn(secret, bytes(obj))


class RatchetTests(unittest.TestCase):
    """
    A key captured during a chat does not open the chat's earlier records.
    """

    def _captured(self, context: int, interval: int | None) -> None:
        alice, bob, (responder_key, _) = _parties(context, b"ratchet %d" % context)
        if interval is not None:
            alice = Connection(Config(context, Role.INITIATOR, ALICE, UserIdentity("alice"),
                                      rekey_interval=interval, registry=E2E_MESSAGES))
            bob = Connection(Config(context, Role.RESPONDER, responder_key, bob.config.identity,
                                    rekey_interval=interval, registry=E2E_MESSAGES))
        alice.initiate()
        for _ in range(4):
            _accept_all(bob, bob.receive_data(alice.data_to_send()), ALICE.public_key())
            _accept_all(alice, alice.receive_data(bob.data_to_send()), responder_key.public_key())
        sent = []
        for i in range(8):
            alice.send(Text(i, f"line {i}"))
            record = alice.data_to_send()
            sent.append(record)
            self.assertEqual(bob.receive_data(record), [MessageReceived(Text(i, f"line {i}"))])
            bob.data_to_send()
        # Memory captured now: everything bob's receiving direction holds.
        opener = bob._opener
        assert opener is not None
        captured_secret, captured_counter = opener._secret, opener.counter
        suite = bob.suite or AES_256_GCM

        def attempt(secret: bytes, counter: int, record: bytes) -> str | None:
            probe = RecordOpener(suite, secret, 1)
            probe.counter = counter
            try:
                probe.open(record)
            except RemoteProtocolError as e:
                return e.code
            return None

        # Positive control: the captured state opens the next record.
        alice.send(Text(8, "next"))
        self.assertIsNone(attempt(captured_secret, captured_counter, alice.data_to_send()))
        # The attack: the captured secret, and every secret the one-way
        # update leads to from it, against every earlier record.
        candidates = [captured_secret]
        for _ in range(8):
            candidates.append(next_traffic_secret(candidates[-1]))
        for counter, record in enumerate(sent):
            # The records of the current secret's span are not earlier ones.
            if interval is not None and counter >= captured_counter - captured_counter % interval:
                continue
            for secret in candidates:
                self.assertEqual(attempt(secret, counter, record), "bad-record-mac",
                                 f"record {counter} opened with a captured secret")

    def test_capturedChainCannotOpenEarlierLines(self) -> None:
        """
        End to end (a new key for every record): the receiving chain state
        captured after eight lines, and everything derivable from it, opens
        none of those eight lines.  Guards: the end-to-end context ratchets
        every record, one way, and forgets the old secret.
        """
        self._captured(END_TO_END, None)

    def test_keyUpdateForgetsOldKey(self) -> None:
        """
        In the client-server context (a key update every C{rekey_interval}
        records; 3 here instead of 2^20), the state captured after eight
        records opens none of the records before the last key update.
        """
        self._captured(CLIENT_SERVER, 3)
