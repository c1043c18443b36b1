"""
Tests that docs/protocol.rst is exact, using L{tests.independent_peer}: an
implementation of the end-to-end context written from the document alone.

  - L{VectorTests}: the clean-room peer, given the inputs of the spec's
    end-to-end vector (section 13.1), produces the vector's bytes, alone and
    paired with securechat's own L{Connection} in either role.
  - L{InteropTests}: the clean-room peer and securechat complete the
    handshake with each other in both roles and exchange application
    messages, PING and PONG, and CLOSE_NOTIFY.
  - L{TamperTests} and L{WrongKeyTests}: a flipped bit or a substituted key
    makes the other implementation fail with the alert section 8 names.

Everything runs in memory with fixed randomness: no network, no clocks.
"""

from __future__ import annotations

import pathlib
import struct

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.trial import unittest

from securechat.client.endtoend import PRE_AUTH_MAX_FRAME
from securechat.crypto.config import END_TO_END, Config, Role
from securechat.crypto.events import (
    ConnectionClosed,
    ConnectionFailed,
    HandshakeComplete,
    MessageReceived,
    PeerIdentityReceived,
)
from securechat.crypto.handshake import Connection, State
from securechat.errors import Alert as AlertCode
from securechat.errors import PeerAlert
from securechat.wire.e2e import E2E_MESSAGES, End, Ready, Text
from securechat.wire.messages import Ping, Pong, UserIdentity
from tests import independent_peer as ip
from tests.support import DeterministicRandom
from tests.vectors import SequenceRandom, parse

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.rst"

ALICE = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
BOB = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x22" * 32)
MALLORY = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x33" * 32)

#: Section 12.2 inner types, and the section 4.3 / 8.2 uniform failure as
#: it goes on the wire in the clear: frame length 3, type ALERT,
#: code HANDSHAKE_FAILED, empty reason.
TEXT, END, READY = 0x50, 0x51, 0x52
HANDSHAKE_FAILED_FRAME = bytes.fromhex("00000003" "15" "06" "00")

#: The frame maximum a relay announces in WELCOME, which clients use for
#: the end-to-end connection once it is established (section 12.1); the
#: relay's default frame size.  Before that, the client's
#: L{PRE_AUTH_MAX_FRAME} (section 3's 16384).
MAX_PAYLOAD = 65536


# -- section 12.2 encodings, from the spec -------------------------------------

def text_body(sent_at: int, text: str) -> bytes:
    """TEXT: u64 sent_at, text16 text."""
    raw = text.encode("utf-8")
    return struct.pack(">QH", sent_at, len(raw)) + raw


def end_body(sent: int) -> bytes:
    """END: u64 sent."""
    return struct.pack(">Q", sent)


# -- the two implementations behind one small interface -----------------------

class OurPeer:
    """
    securechat's sans-IO L{Connection}, configured as
    L{securechat.client.core} configures an end-to-end chat, and answering
    the identity check of 5.1 step 4 as the client does: the claimed name
    must be the chat's peer, and the key is the one the relay handed over.

    It has the methods of L{ip.Peer} the tests use (C{initiate},
    C{receive_data}, C{data_to_send}, C{ping}, C{send}), returning
    securechat's own events.
    """

    def __init__(self, role: str, key, name: str, peer_name: str, peer_key,  # type: ignore[no-untyped-def]
                 random, suites: tuple[int, ...] = (0x0001, 0x0002)) -> None:
        self.connection = Connection(Config(
            END_TO_END, Role(role), key, UserIdentity(name), suites=suites,
            registry=E2E_MESSAGES, max_handshake_frame=PRE_AUTH_MAX_FRAME, max_frame=MAX_PAYLOAD,
            random=random,
        ))
        self.peer_name, self.peer_key = peer_name, peer_key

    def initiate(self) -> None:
        self.connection.initiate()

    def data_to_send(self) -> bytes:
        return self.connection.data_to_send()

    def receive_data(self, data: bytes) -> list:  # type: ignore[type-arg]
        return self._resolve(self.connection.receive_data(data))

    def ping(self, data: bytes) -> None:
        self.connection.send(Ping(data))

    def send(self, *messages) -> None:  # type: ignore[no-untyped-def]
        self.connection.send(*messages)

    def _resolve(self, events: list) -> list:  # type: ignore[type-arg]
        out = []
        for event in events:
            out.append(event)
            if isinstance(event, PeerIdentityReceived):
                if event.identity != UserIdentity(self.peer_name):
                    answer = self.connection.reject_peer("peer-rejected", repr(event.identity))
                else:
                    answer = self.connection.accept_peer(self.peer_key)
                out.extend(self._resolve(answer))
        return out


def clean(role: str, key, name: str, peer_name: str, peer_key, seed: bytes,  # type: ignore[no-untyped-def]
          **kw) -> ip.Peer:
    """A clean-room peer with reproducible randomness."""
    return ip.Peer(role, key, name, peer_name, peer_key, random=DeterministicRandom(seed), **kw)


def ours(role: str, key, name: str, peer_name: str, peer_key, seed: bytes,  # type: ignore[no-untyped-def]
         **kw) -> OurPeer:
    """securechat's connection with reproducible randomness."""
    return OurPeer(role, key, name, peer_name, peer_key, random=DeterministicRandom(seed), **kw)


def pair(initiator_kind, responder_kind, alice_expects=BOB, bob_expects=ALICE,  # type: ignore[no-untyped-def]
         **kw):
    """
    Alice (initiator) and Bob (responder), each either L{clean} or L{ours};
    C{alice_expects} and C{bob_expects} are the keys each was told its peer
    has (what CHAT_STARTED carried).
    """
    a = initiator_kind("initiator", ALICE, "alice", "bob", alice_expects.public_key(), b"alice", **kw)
    b = responder_kind("responder", BOB, "bob", "alice", bob_expects.public_key(), b"bob", **kw)
    return a, b


def pump(a, b, max_rounds: int = 10):  # type: ignore[no-untyped-def]
    """
    Start C{a} (the initiator) if needed and shuttle bytes between C{a} and
    C{b} until both are quiet; return the events each reported.
    """
    if getattr(a, "state", None) == "START" or (
            isinstance(a, OurPeer) and a.connection.state is State.START):
        a.initiate()
    return exchange(a, b, max_rounds)


def exchange(a, b, max_rounds: int = 10):  # type: ignore[no-untyped-def]
    """Shuttle bytes between C{a} and C{b} until both are quiet."""
    seen_a: list = []  # type: ignore[type-arg]
    seen_b: list = []  # type: ignore[type-arg]
    for _ in range(max_rounds):
        to_b, to_a = a.data_to_send(), b.data_to_send()
        if not to_a and not to_b:
            return seen_a, seen_b
        if to_b:
            seen_b.extend(b.receive_data(to_b))
        if to_a:
            seen_a.extend(a.receive_data(to_a))
    raise AssertionError("the two peers never went quiet")


def split_frames(data: bytes) -> list[bytes]:
    """Whole frames (section 3) in C{data}."""
    frames = []
    while data:
        end = 4 + struct.unpack(">I", data[:4])[0]
        frames.append(data[:end])
        data = data[end:]
    return frames


def flip_bit(record: bytes, bit: int = 0) -> bytes:
    """
    C{record} with one bit of its AEAD ciphertext flipped (not in the
    13-byte header, so the counter and length stay right and the failure
    is authentication, not ordering or framing).
    """
    at = 13 + (len(record) - 13) // 2
    return record[:at] + bytes([record[at] ^ (1 << bit)]) + record[at + 1:]


def our_failure(events: list) -> ConnectionFailed | None:  # type: ignore[type-arg]
    """The L{ConnectionFailed} in securechat's C{events}, if any."""
    found = [e for e in events if isinstance(e, ConnectionFailed)]
    return found[-1] if found else None


# -- section 13.1 -------------------------------------------------------------

class VectorTests(unittest.TestCase):
    """
    The end-to-end vector of section 13.1, produced from its inputs by the
    clean-room peer.  What the clean-room peer draws from C{random} is
    exactly what the spec says is drawn (5.1: nonce, then ephemeral key), so
    the vector's inputs go in through that hook.
    """

    WIRE = ("hello", "hello_reply", "responder.auth_record", "initiator.auth_record",
            "initiator.record0", "responder.record0", "initiator.record1")

    def setUp(self) -> None:
        self.v = parse(DOC.read_text())["end-to-end"]
        self.i_key = ip.ed25519_from_seed(self.v["initiator.seed"])
        self.r_key = ip.ed25519_from_seed(self.v["responder.seed"])
        self.i_name = self.v["initiator.name"].decode()
        self.r_name = self.v["responder.name"].decode()
        self.ping = self.v["ping"]

    def initiator(self, kind):  # type: ignore[no-untyped-def]
        return kind("initiator", self.i_key, self.i_name, self.r_name, self.r_key.public_key(),
                    random=SequenceRandom(self.v["initiator.nonce"], self.v["initiator.ephemeral"]))

    def responder(self, kind):  # type: ignore[no-untyped-def]
        return kind("responder", self.r_key, self.r_name, self.i_name, self.i_key.public_key(),
                    random=SequenceRandom(self.v["responder.nonce"], self.v["responder.ephemeral"]))

    def run_vector(self, i, r) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
        """
        The exchange section 13 describes, recording each write: HELLO;
        HELLO_REPLY and the responder's AUTH record; the initiator's AUTH
        record with PING(ping) in the same write; the automatic PONG; a
        second PING.
        """
        out: dict[str, bytes] = {}
        i.initiate()
        out["hello"] = i.data_to_send()
        r.receive_data(out["hello"])
        out["hello_reply"], out["responder.auth_record"] = split_frames(r.data_to_send())
        i.receive_data(out["hello_reply"] + out["responder.auth_record"])
        i.ping(self.ping)
        out["initiator.auth_record"], out["initiator.record0"] = split_frames(i.data_to_send())
        r.receive_data(out["initiator.auth_record"] + out["initiator.record0"])
        out["responder.record0"] = r.data_to_send()
        i.ping(self.ping)
        out["initiator.record1"] = i.data_to_send()
        return out

    def assertWire(self, out: dict[str, bytes]) -> None:
        for name in self.WIRE:
            self.assertEqual(out[name].hex(), self.v[name].hex(), f"{name} differs from 13.1")

    def test_cleanRoomPairReproducesVector(self) -> None:
        """
        Two clean-room peers, given only the vector's inputs, put exactly the
        vector's HELLO, HELLO_REPLY, AUTH records and application records on
        the wire: the spec alone determines every byte.
        """
        self.assertWire(self.run_vector(self.initiator(ip.Peer), self.responder(ip.Peer)))

    def test_cleanRoomKeySchedule(self) -> None:
        """
        Both clean-room peers derive the vector's intermediate values
        (section 5.3): shared secret, handshake and application secrets,
        traffic keys and IVs, the key update of ``ap_i``, and the AUTH
        bodies inside the handshake records.
        """
        i, r = self.initiator(ip.Peer), self.responder(ip.Peer)
        self.run_vector(i, r)
        for peer in (i, r):
            s = peer.secrets
            for name in ("shared", "hs", "th_hs", "hs_i", "hs_r", "th_all", "ap_i", "ap_r"):
                self.assertEqual(s[name].hex(), self.v[name].hex(), f"{peer.role}: {name}")
            derived = {
                "hs_r.key": ip.traffic_key(s["hs_r"]), "hs_r.iv": ip.traffic_iv(s["hs_r"]),
                "ap_i.key": ip.traffic_key(s["ap_i"]), "ap_i.iv": ip.traffic_iv(s["ap_i"]),
                "ap_i.next": ip.next_secret(s["ap_i"]),
                "responder.auth": peer.auth_bodies["responder"],
                "initiator.auth": peer.auth_bodies["initiator"],
            }
            for name, value in derived.items():
                self.assertEqual(value.hex(), self.v[name].hex(), f"{peer.role}: {name}")

    def test_cleanRoomInitiatorOurResponderReproduceVector(self) -> None:
        """
        The clean-room initiator and securechat's responder, given the
        vector's inputs, produce the vector's bytes in both directions.
        """
        self.assertWire(self.run_vector(self.initiator(ip.Peer), self.responder(OurPeer)))

    def test_ourInitiatorCleanRoomResponderReproduceVector(self) -> None:
        """
        securechat's initiator and the clean-room responder, given the
        vector's inputs, produce the vector's bytes in both directions.
        """
        self.assertWire(self.run_vector(self.initiator(OurPeer), self.responder(ip.Peer)))


# -- interoperation ---------------------------------------------------------------

class InteropTests(unittest.TestCase):
    """
    The clean-room peer against securechat's L{Connection}, in both roles.
    """

    def test_cleanRoomInitiatorOurResponder(self) -> None:
        """
        Section 5: the clean-room initiator and securechat's responder
        authenticate each other by name and key, agree on the first offered
        suite, and (12.3) the responder's READY reaches the initiator.
        """
        a, b = pair(clean, ours)
        ea, eb = pump(a, b)
        self.assertEqual(ea[:2], [("peer", "bob"), ("established",)])
        self.assertEqual(a.state, "ESTABLISHED")
        self.assertIsInstance(eb[0], PeerIdentityReceived)
        self.assertEqual(eb[1].peer, UserIdentity("alice"))
        self.assertEqual(eb[1].suite.code, 0x0001)
        self.assertEqual(a.suite, 0x0001)
        b.send(Ready())
        ea, eb = exchange(a, b)
        self.assertEqual(ea, [("message", READY, b"")])
        self.assertEqual(eb, [])

    def test_ourInitiatorCleanRoomResponder(self) -> None:
        """
        Section 5 the other way round: securechat's initiator and the
        clean-room responder authenticate each other, and the clean-room
        responder's READY (an empty 0x52 message) parses as L{Ready}.
        """
        a, b = pair(ours, clean)
        ea, eb = pump(a, b)
        self.assertEqual(eb[:2], [("peer", "alice"), ("established",)])
        self.assertEqual(b.state, "ESTABLISHED")
        self.assertIsInstance(ea[0], PeerIdentityReceived)
        self.assertEqual(ea[1].peer, UserIdentity("bob"))
        self.assertEqual(ea[1].suite.code, 0x0001)
        b.send((READY, b""))
        ea, eb = exchange(a, b)
        self.assertEqual(ea, [MessageReceived(Ready())])

    def check_chat(self, a, b) -> None:  # type: ignore[no-untyped-def]
        """
        TEXT and END (12.2) both ways between an established pair, several
        records in a row each way so that every record is under a new key
        (section 6, N = 1).  C{a} or C{b} may be either implementation.
        """
        # The longest TEXT makes a frame above the pre-authentication bound
        # of 12.1, which no longer applies.
        lines = ["hello", "h\u00e9llo \u2713", "x" * 1000, "", "y" * 16384]
        for n, line in enumerate(lines):
            for sender, receiver in ((a, b), (b, a)):
                at = 1_700_000_000_000 + n
                if isinstance(sender, OurPeer):
                    sender.send(Text(at, line))
                else:
                    sender.send((TEXT, text_body(at, line)))
                seen_s, seen_r = exchange(sender, receiver)
                self.assertEqual(seen_s, [])
                if isinstance(receiver, OurPeer):
                    self.assertEqual(seen_r, [MessageReceived(Text(at, line))])
                else:
                    self.assertEqual(seen_r, [("message", TEXT, text_body(at, line))])
        # Several messages in one record arrive in order (4.4).
        for sender, receiver in ((a, b), (b, a)):
            if isinstance(sender, OurPeer):
                sender.send(Text(7, "last"), End(len(lines) + 1))
            else:
                sender.send((TEXT, text_body(7, "last")), (END, end_body(len(lines) + 1)))
            _, seen_r = exchange(sender, receiver)
            if isinstance(receiver, OurPeer):
                self.assertEqual(seen_r, [MessageReceived(Text(7, "last")),
                                          MessageReceived(End(len(lines) + 1))])
            else:
                self.assertEqual(seen_r, [("message", TEXT, text_body(7, "last")),
                                          ("message", END, end_body(len(lines) + 1))])

    def test_messagesCleanRoomInitiator(self) -> None:
        """
        Application messages arrive intact both ways when the clean-room
        peer is the initiator.
        """
        a, b = pair(clean, ours)
        pump(a, b)
        self.check_chat(a, b)

    def test_messagesOurInitiator(self) -> None:
        """
        Application messages arrive intact both ways when securechat is the
        initiator.
        """
        a, b = pair(ours, clean)
        pump(a, b)
        self.check_chat(a, b)

    def test_pingPong(self) -> None:
        """
        Section 4.4: PING is answered by PONG with the same data, whichever
        implementation pings, in both role assignments.
        """
        for kinds in ((clean, ours), (ours, clean)):
            a, b = pair(*kinds)
            pump(a, b)
            for pinger, ponger in ((a, b), (b, a)):
                data = f"ping from {type(pinger).__name__}".encode()
                pinger.ping(data)
                seen_p, seen_q = exchange(pinger, ponger)
                if isinstance(pinger, OurPeer):
                    self.assertEqual(seen_p, [MessageReceived(Pong(data))])
                    self.assertEqual(seen_q, [("ping", data)])
                else:
                    self.assertEqual(seen_p, [("pong", data)])
                    self.assertEqual(seen_q, [])  # securechat answers PING itself

    def test_eachSuite(self) -> None:
        """
        Section 6 suites: with only AES-256-GCM or only ChaCha20-Poly1305
        offered, both role assignments agree on it and records flow.
        """
        for suite in (0x0001, 0x0002):
            for kinds in ((clean, ours), (ours, clean)):
                a, b = pair(*kinds, suites=(suite,))
                pump(a, b)
                c = a if isinstance(a, ip.Peer) else b
                o = b if c is a else a
                self.assertEqual(c.suite, suite)
                self.assertEqual(o.connection.suite.code, suite)
                c.ping(b"suite")
                seen_c, _ = exchange(c, o)
                self.assertEqual(seen_c, [("pong", b"suite")])

    def test_initiatorPreferenceAcrossImplementations(self) -> None:
        """
        5.1 step 2: the responder picks the first suite of the initiator's
        offer, whichever implementation responds.
        """
        for kinds in ((clean, ours), (ours, clean)):
            a, b = pair(*kinds, suites=(0x0002, 0x0001))
            pump(a, b)
            for peer in (a, b):
                code = peer.connection.suite.code if isinstance(peer, OurPeer) else peer.suite
                self.assertEqual(code, 0x0002)

    def test_closeNotify(self) -> None:
        """
        Section 8.3: CLOSE_NOTIFY sent in a record after the handshake is a
        clean end at the other implementation, both ways.
        """
        a, b = pair(clean, ours)
        pump(a, b)
        b.connection.close()
        ea, _ = exchange(a, b)
        self.assertEqual(ea, [("alert", ip.CLOSE_NOTIFY, "")])
        self.assertEqual(a.state, "CLOSED")

        a, b = pair(clean, ours)
        pump(a, b)
        a.send((ip.ALERT, ip.alert_body(ip.CLOSE_NOTIFY)))
        _, eb = exchange(a, b)
        self.assertEqual(eb, [ConnectionClosed()])
        self.assertEqual(b.connection.state, State.CLOSED)


# -- section 8: failures ------------------------------------------------------------

class TamperTests(unittest.TestCase):
    """
    One flipped bit in a record makes the receiving implementation fail with
    the error and alert section 8.2 names, and the sender learn it.
    """

    def test_tamperedApplicationRecordToUs(self) -> None:
        """
        An application record from the clean-room peer with one bit flipped
        is C{bad-record-mac} at securechat, which (established, 8.3) sends
        BAD_RECORD inside a record; the clean-room peer reads that alert
        and fails.  Checked with securechat in both roles.
        """
        for kinds in ((clean, ours), (ours, clean)):
            a, b = pair(*kinds)
            pump(a, b)
            c, o = (a, b) if isinstance(a, ip.Peer) else (b, a)
            c.send((TEXT, text_body(1, "attack at dawn")))
            seen = o.receive_data(flip_bit(c.data_to_send()))
            failed = our_failure(seen)
            self.assertIsNotNone(failed)
            self.assertEqual(failed.error.code, "bad-record-mac")
            self.assertEqual(failed.error.alert, AlertCode.BAD_RECORD)
            self.assertFalse(any(isinstance(e, MessageReceived) for e in seen))
            alert = o.data_to_send()
            self.assertEqual(alert[4], ip.RECORD, "an established side alerts in a record")
            [(kind, code, _reason)] = c.receive_data(alert)
            self.assertEqual((kind, code), ("alert", ip.BAD_RECORD))
            self.assertEqual(c.state, "FAILED")

    def test_tamperedApplicationRecordToCleanRoom(self) -> None:
        """
        An application record from securechat with one bit flipped is
        C{bad-record-mac} at the clean-room peer; its BAD_RECORD alert
        reaches securechat as a failure with that code.  Both roles.
        """
        for kinds in ((clean, ours), (ours, clean)):
            a, b = pair(*kinds)
            pump(a, b)
            c, o = (a, b) if isinstance(a, ip.Peer) else (b, a)
            o.send(Text(1, "attack at dawn"))
            self.assertEqual(c.receive_data(flip_bit(o.data_to_send())),
                             [("error", "bad-record-mac")])
            seen = o.receive_data(c.data_to_send())
            failed = our_failure(seen)
            self.assertIsNotNone(failed)
            self.assertIsInstance(failed.error, PeerAlert)
            self.assertEqual(failed.error.peer_alert, AlertCode.BAD_RECORD)
            self.assertEqual(o.connection.state, State.FAILED)

    def test_tamperedResponderAuthRecordToUs(self) -> None:
        """
        5.1 step 1: the clean-room responder's AUTH record with one bit
        flipped is C{bad-handshake-record} at securechat's initiator, which
        sends the uniform HANDSHAKE_FAILED alert in the clear; the
        clean-room responder, which holds keys by then, does not believe a
        plaintext alert: C{unauthenticated-alert} (8.3), unanswered.
        """
        a, b = pair(ours, clean)
        a.initiate()
        b.receive_data(a.data_to_send())
        reply, auth = split_frames(b.data_to_send())
        failed = our_failure(a.receive_data(reply + flip_bit(auth)))
        self.assertEqual(failed.error.code, "bad-handshake-record")
        self.assertEqual(a.data_to_send(), HANDSHAKE_FAILED_FRAME)
        self.assertEqual(b.receive_data(HANDSHAKE_FAILED_FRAME),
                         [("error", "unauthenticated-alert")])
        self.assertEqual(b.state, "FAILED")
        self.assertEqual(b.data_to_send(), b"")

    def test_tamperedResponderAuthRecordToCleanRoom(self) -> None:
        """
        5.1 step 1: securechat's AUTH record with one bit flipped is
        C{bad-handshake-record} at the clean-room initiator, whose plaintext
        HANDSHAKE_FAILED alert fails securechat's responder as
        C{unauthenticated-alert} (8.3).
        """
        a, b = pair(clean, ours)
        a.initiate()
        b.receive_data(a.data_to_send())
        reply, auth = split_frames(b.data_to_send())
        self.assertEqual(a.receive_data(reply + flip_bit(auth)),
                         [("error", "bad-handshake-record")])
        alert = a.data_to_send()
        self.assertEqual(alert, HANDSHAKE_FAILED_FRAME)
        failed = our_failure(b.receive_data(alert))
        self.assertEqual(failed.error.code, "unauthenticated-alert")

    def test_tamperedInitiatorAuthRecordToUs(self) -> None:
        """
        The clean-room initiator's AUTH record with one bit flipped is
        C{bad-handshake-record} at securechat's responder, which could not
        open it and so answers in the clear.  The initiator already
        considers itself established (5.1) and does not believe a plaintext
        alert: C{unauthenticated-alert} (8.3).
        """
        a, b = pair(clean, ours)
        a.initiate()
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())
        self.assertEqual(a.state, "ESTABLISHED")
        failed = our_failure(b.receive_data(flip_bit(a.data_to_send())))
        self.assertEqual(failed.error.code, "bad-handshake-record")
        alert = b.data_to_send()
        self.assertEqual(alert, HANDSHAKE_FAILED_FRAME)
        self.assertEqual(a.receive_data(alert), [("error", "unauthenticated-alert")])
        self.assertEqual(a.state, "FAILED")

    def test_tamperedInitiatorAuthRecordToCleanRoom(self) -> None:
        """
        securechat's initiator AUTH record with one bit flipped is
        C{bad-handshake-record} at the clean-room responder; securechat,
        established, does not believe its plaintext HANDSHAKE_FAILED alert
        (8.3: C{unauthenticated-alert}).
        """
        a, b = pair(ours, clean)
        a.initiate()
        b.receive_data(a.data_to_send())
        ea = a.receive_data(b.data_to_send())
        self.assertIsInstance(ea[-1], HandshakeComplete)
        self.assertEqual(b.receive_data(flip_bit(a.data_to_send())),
                         [("error", "bad-handshake-record")])
        alert = b.data_to_send()
        self.assertEqual(alert, HANDSHAKE_FAILED_FRAME)
        failed = our_failure(a.receive_data(alert))
        self.assertEqual(failed.error.code, "unauthenticated-alert")

    def test_tamperedHelloDetectedByInitiator(self) -> None:
        """
        5.1 step 1: a HELLO altered in transit (one bit of the nonce) gives
        the responder another transcript, so the initiator cannot open the
        responder's AUTH record: C{bad-handshake-record}.  Both ways.
        """
        def tamper(hello: bytes) -> bytes:
            return hello[:8] + bytes([hello[8] ^ 1]) + hello[9:]  # nonce byte 0

        a, b = pair(clean, ours)
        a.initiate()
        b.receive_data(tamper(a.data_to_send()))
        self.assertEqual(a.receive_data(b.data_to_send()), [("error", "bad-handshake-record")])
        self.assertEqual(a.data_to_send(), HANDSHAKE_FAILED_FRAME)

        a, b = pair(ours, clean)
        a.initiate()
        b.receive_data(tamper(a.data_to_send()))
        self.assertEqual(our_failure(a.receive_data(b.data_to_send())).error.code,
                         "bad-handshake-record")
        self.assertEqual(a.data_to_send(), HANDSHAKE_FAILED_FRAME)


class WrongKeyTests(unittest.TestCase):
    """
    A peer that signs with a key other than the one its partner was given
    (a substituted key, 5.1 step 5) fails the handshake on both sides, and
    the only thing on the wire is the uniform HANDSHAKE_FAILED alert with an
    empty reason (8.2): from an initiator in the clear, byte for byte the
    same from either implementation, which the responder cannot believe
    (C{unauthenticated-alert}); from a responder sealed under C{ap_r}
    (8.3), which the initiator opens and believes.
    """

    def assertNeverEstablished(self, events) -> None:  # type: ignore[no-untyped-def]
        self.assertFalse(any(e == ("established",) or isinstance(e, HandshakeComplete)
                             for e in events), events)

    def test_cleanRoomInitiatorExpectsOtherResponderKey(self) -> None:
        """
        The clean-room initiator was told Bob's key is Mallory's: Bob's
        signature is C{bad-signature}, and securechat's responder fails on
        the plaintext HANDSHAKE_FAILED alert as C{unauthenticated-alert}.
        """
        a, b = pair(clean, ours, alice_expects=MALLORY)
        a.initiate()
        b.receive_data(a.data_to_send())
        ea = a.receive_data(b.data_to_send())
        self.assertEqual(ea, [("peer", "bob"), ("error", "bad-signature")])
        alert = a.data_to_send()
        self.assertEqual(alert, HANDSHAKE_FAILED_FRAME)
        eb = b.receive_data(alert)
        self.assertEqual(our_failure(eb).error.code, "unauthenticated-alert")
        self.assertNeverEstablished(eb)
        self.assertEqual(b.connection.state, State.FAILED)

    def test_ourInitiatorExpectsOtherResponderKey(self) -> None:
        """
        securechat's initiator was told Bob's key is Mallory's: the
        clean-room responder's signature is C{bad-signature}, and the
        clean-room responder fails on the plaintext HANDSHAKE_FAILED alert
        as C{unauthenticated-alert}.
        """
        a, b = pair(ours, clean, bob_expects=ALICE, alice_expects=MALLORY)
        ea, eb = pump(a, b)
        self.assertEqual(our_failure(ea).error.code, "bad-signature")
        self.assertEqual(our_failure(ea).error.alert, AlertCode.HANDSHAKE_FAILED)
        self.assertNeverEstablished(ea)
        self.assertEqual(eb, [("error", "unauthenticated-alert")])
        self.assertEqual(b.state, "FAILED")

    def test_cleanRoomResponderExpectsOtherInitiatorKey(self) -> None:
        """
        The clean-room responder was told Alice's key is Mallory's.
        securechat's initiator completes its half (5.1) and may send at
        once; the responder finds C{bad-signature} and its HANDSHAKE_FAILED
        alert, sealed under C{ap_r} (8.3), fails the initiator as a
        L{PeerAlert}.
        """
        a, b = pair(ours, clean, bob_expects=MALLORY)
        a.initiate()
        b.receive_data(a.data_to_send())
        ea = a.receive_data(b.data_to_send())
        self.assertIsInstance(ea[-1], HandshakeComplete)
        a.send(Text(1, "too early"))
        eb = b.receive_data(a.data_to_send())
        self.assertEqual(eb, [("peer", "alice"), ("error", "bad-signature")])
        alert = b.data_to_send()
        self.assertEqual(alert[4:13], bytes([ip.RECORD]) + bytes(8))  # record, counter 0
        failed = our_failure(a.receive_data(alert))
        self.assertIsInstance(failed.error, PeerAlert)
        self.assertEqual(failed.error.peer_alert, AlertCode.HANDSHAKE_FAILED)
        self.assertEqual(a.connection.state, State.FAILED)

    def test_ourResponderExpectsOtherInitiatorKey(self) -> None:
        """
        securechat's responder was told Alice's key is Mallory's: the
        clean-room initiator's signature is C{bad-signature}, and the
        clean-room initiator, established, opens the HANDSHAKE_FAILED alert
        securechat sealed under C{ap_r} (8.3) and fails on it.
        """
        a, b = pair(clean, ours, bob_expects=MALLORY)
        a.initiate()
        b.receive_data(a.data_to_send())
        a.receive_data(b.data_to_send())
        self.assertEqual(a.state, "ESTABLISHED")
        a.send((TEXT, text_body(1, "too early")))
        eb = b.receive_data(a.data_to_send())
        self.assertEqual(our_failure(eb).error.code, "bad-signature")
        self.assertNeverEstablished(eb)
        self.assertFalse(any(isinstance(e, MessageReceived) for e in eb))
        alert = b.data_to_send()
        self.assertEqual(alert[4:13], bytes([ip.RECORD]) + bytes(8))  # record, counter 0
        self.assertEqual(a.receive_data(alert), [("alert", ip.HANDSHAKE_FAILED, "")])
        self.assertEqual(a.state, "FAILED")

    def test_wrongPeerNameFailsUniformly(self) -> None:
        """
        5.1 step 4: a peer that names itself other than the chat's peer is
        refused.  The spec names no error for this (securechat says
        C{peer-rejected}, the clean-room peer C{wrong-peer}); both send the
        uniform HANDSHAKE_FAILED alert, so the peer cannot tell it from a
        bad signature.
        """
        # Mallory, with her own key, answers a chat Alice opened with Bob.
        a = clean("initiator", ALICE, "alice", "bob", MALLORY.public_key(), b"alice")
        m = ours("responder", MALLORY, "mallory", "alice", ALICE.public_key(), b"mallory")
        a.initiate()
        m.receive_data(a.data_to_send())
        self.assertEqual(a.receive_data(m.data_to_send()), [("peer", "mallory"), ("error", "wrong-peer")])
        self.assertEqual(a.data_to_send(), HANDSHAKE_FAILED_FRAME)

        a = ours("initiator", ALICE, "alice", "bob", MALLORY.public_key(), b"alice")
        m = clean("responder", MALLORY, "mallory", "alice", ALICE.public_key(), b"mallory")
        a.initiate()
        m.receive_data(a.data_to_send())
        self.assertEqual(our_failure(a.receive_data(m.data_to_send())).error.code, "peer-rejected")
        self.assertEqual(a.data_to_send(), HANDSHAKE_FAILED_FRAME)


class FrameBoundTests(unittest.TestCase):
    """
    Section 12.1: the end-to-end frame maximum before and after the peer is
    authenticated, the same in both implementations.
    """

    @staticmethod
    def failure(events: list) -> str | None:  # type: ignore[type-arg]
        ours_failed = our_failure(events)
        if ours_failed is not None:
            return ours_failed.error.code
        errors = [e[1] for e in events if isinstance(e, tuple) and e[0] == "error"]
        return errors[-1] if errors else None

    def test_preAuthFrameBound(self) -> None:
        """
        12.1: before its handshake has authenticated the peer, each
        implementation (as responder and as initiator) waits for the rest of
        a frame announcing exactly 16384 bytes, and refuses one announcing
        16385 with C{frame-too-large} and a plaintext FRAME_TOO_LARGE
        alert, although the relay would carry far larger payloads.
        """
        for kind in (clean, ours):
            for role in ("responder", "initiator"):
                b = kind(role, BOB, "bob", "alice", ALICE.public_key(), b"bob")
                if role == "initiator":
                    b.initiate()
                    b.data_to_send()
                self.assertIsNone(self.failure(b.receive_data(struct.pack(">IB", 16384, 1))))
                self.assertEqual(b.data_to_send(), b"")
                b = kind(role, BOB, "bob", "alice", ALICE.public_key(), b"bob")
                if role == "initiator":
                    b.initiate()
                    b.data_to_send()
                self.assertEqual(self.failure(b.receive_data(struct.pack(">IB", 16385, 1))),
                                 "frame-too-large", (kind.__name__, role))
                alert = b.data_to_send()
                self.assertEqual((alert[4], alert[5]), (0x15, AlertCode.FRAME_TOO_LARGE))
