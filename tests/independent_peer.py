"""
A clean-room implementation of the end-to-end context of docs/protocol.rst.

This module was written from docs/protocol.rst alone, without reading the
``securechat`` package, and imports nothing from it.  It exists to check that
the specification is complete and exact: ``tests/test_independent_peer.py``
feeds it the spec's test vector and runs it against the project's own
implementation.

It implements only what the end-to-end context (context number 2) needs: the
initiator and the responder of the handshake (section 5) with Ed25519 user
keys and user identities (kind 2), the record layer with its per-record key
update (section 6, N = 1), the core inner messages AUTH, ALERT, PING and
PONG (section 4.4), and the alert rules of section 8.  It is a sans-IO
object: feed it bytes with ``receive_data`` and collect what it wants to
send with ``data_to_send``.
"""

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305


CONTEXT_NUMBER = 2
CONTEXT_NAME = b"end-to-end"
KEY_UPDATE_EVERY = 1  # section 6: N = 1 in the end-to-end context

HELLO, HELLO_REPLY, ALERT, RECORD = 0x01, 0x02, 0x15, 0x17
AUTH, PING, PONG = 0x03, 0x20, 0x21
SCHEME_ED25519 = 0x0807
SUITES = {0x0001: AESGCM, 0x0002: ChaCha20Poly1305}

CLOSE_NOTIFY, DECODE_ERROR, FRAME_TOO_LARGE, UNEXPECTED_MESSAGE = 0, 1, 2, 3
UNSUPPORTED_VERSION, NO_COMMON_SUITE, HANDSHAKE_FAILED, BAD_RECORD = 4, 5, 6, 7

# Section 8.2: error name -> alert code.
ALERT_FOR = {
    "empty-frame": DECODE_ERROR,
    "frame-too-large": FRAME_TOO_LARGE,
    "unknown-type": DECODE_ERROR,
    "truncated": DECODE_ERROR,
    "trailing-bytes": DECODE_ERROR,
    "bad-value": DECODE_ERROR,
    "unexpected-message": UNEXPECTED_MESSAGE,
    "wrong-context": UNEXPECTED_MESSAGE,
    "unsupported-version": UNSUPPORTED_VERSION,
    "no-common-suite": NO_COMMON_SUITE,
    "record-replayed": BAD_RECORD,
    "record-gap": BAD_RECORD,
    "bad-record-mac": BAD_RECORD,
    "empty-record": BAD_RECORD,
    "record-limit": BAD_RECORD,
    "unauthenticated-alert": UNEXPECTED_MESSAGE,  # never sent (section 8.3)
}
# Everything else of section 8.2 that we can raise is HANDSHAKE_FAILED:
# suite-not-offered, bad-key-share, reflected-key-share,
# bad-handshake-record, bad-finished, wrong-identity-kind, bad-signature,
# and (our guess, the spec names no error) a peer name mismatch.

MAX_FRAME_HANDSHAKE = 16384
MAX_FRAME_ESTABLISHED = 65536


class ProtocolError(Exception):
    """A protocol error of section 8.2, by its spec name."""

    def __init__(self, error):
        super().__init__(error)
        self.error = error
        self.alert = ALERT_FOR.get(error, HANDSHAKE_FAILED)


# -- section 2: encodings ----------------------------------------------------

class Reader:
    """Exact parsing: running past the end is truncated, leftovers trailing."""

    def __init__(self, data):
        self.data, self.pos = bytes(data), 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ProtocolError("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def bytes8(self):
        return self.take(self.u8())

    def bytes16(self):
        return self.take(self.u16())

    def at_end(self):
        return self.pos == len(self.data)

    def end(self):
        if not self.at_end():
            raise ProtocolError("trailing-bytes")


def frame(ftype, payload):
    return struct.pack(">IB", 1 + len(payload), ftype) + payload


def inner(itype, body):
    return struct.pack(">BI", itype, len(body)) + body


def alert_body(code, reason=b""):
    return bytes([code]) + bytes8(reason)


def bytes8(b):
    return bytes([len(b)]) + b


def user_identity(name):
    return b"\x02" + bytes8(name.encode("utf-8"))


# -- section 5.3: key schedule -----------------------------------------------

def hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk, info, length):
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def expand_label(secret, label, context, length):
    full = b"sc1 " + label
    info = struct.pack(">H", length) + bytes8(full) + bytes8(context)
    return hkdf_expand(secret, info, length)


def traffic_key(s):
    return expand_label(s, b"key", b"", 32)


def traffic_iv(s):
    return expand_label(s, b"iv", b"", 12)


def finished_key(s):
    return expand_label(s, b"finished", b"", 32)


def next_secret(s):
    return expand_label(s, b"traffic upd", b"", 32)


def sha256(b):
    return hashlib.sha256(b).digest()


def signed_content(role, digest):
    return (b"securechat/1 " + CONTEXT_NAME + b" " + role + b" signature\x00"
            + digest)


# -- section 6: records ------------------------------------------------------

class Direction:
    """One direction of records under one traffic secret, with key update."""

    def __init__(self, suite, secret, update_every=KEY_UPDATE_EVERY):
        self.suite, self.secret = suite, secret
        self.update_every, self.counter, self.since_update = update_every, 0, 0

    def _aead_and_nonce(self, counter):
        iv = traffic_iv(self.secret)
        mask = b"\x00" * 4 + struct.pack(">Q", counter)
        nonce = bytes(a ^ b for a, b in zip(iv, mask))
        return SUITES[self.suite](traffic_key(self.secret)), nonce

    def _advance(self):
        self.counter += 1
        self.since_update += 1
        if self.since_update == self.update_every:
            self.secret, self.since_update = next_secret(self.secret), 0

    def seal(self, plaintext):
        if self.counter == 2 ** 64 - 1:
            raise ProtocolError("record-limit")
        aead, nonce = self._aead_and_nonce(self.counter)
        length = 1 + 8 + len(plaintext) + 16
        header = struct.pack(">IBQ", length, RECORD, self.counter)
        out = header + aead.encrypt(nonce, plaintext, header)
        self._advance()
        return out

    def open(self, payload, mac_error="bad-record-mac"):
        """``payload`` is the frame after its type byte."""
        if len(payload) < 8:
            raise ProtocolError("truncated")
        counter = struct.unpack(">Q", payload[:8])[0]
        if counter < self.counter:
            raise ProtocolError("record-replayed")
        if counter > self.counter:
            raise ProtocolError("record-gap")
        header = struct.pack(">IB", 1 + len(payload), RECORD) + payload[:8]
        aead, nonce = self._aead_and_nonce(counter)
        try:
            plaintext = aead.decrypt(nonce, payload[8:], header)
        except InvalidTag:
            raise ProtocolError(mac_error) from None
        self._advance()
        return plaintext


def parse_inner(plaintext):
    if not plaintext:
        raise ProtocolError("empty-record")
    r, out = Reader(plaintext), []
    while not r.at_end():
        itype = r.u8()
        out.append((itype, r.take(r.u32())))
    return out


# -- section 5: the handshake ------------------------------------------------

class Peer:
    """
    One side of an end-to-end connection.

    ``peer_name`` and ``peer_key`` are what a client learned from the relay's
    CHAT_STARTED (section 12.1); they are checked at step 4 of 5.1.
    ``random`` draws bytes (nonce first, then the ephemeral key).
    ``tamper_auth`` may rewrite our AUTH body's parts before sealing, to
    test the peer's checks: it gets and returns (identity, sigpart, finished).
    """

    def __init__(self, role, signing_key, name, peer_name, peer_key,
                 suites=(0x0001, 0x0002), random=os.urandom, tamper_auth=None):
        assert role in ("initiator", "responder")
        self.role, self.key, self.name = role, signing_key, name
        self.peer_name, self.peer_key = peer_name, peer_key
        self.suites, self.random, self.tamper_auth = suites, random, tamper_auth
        self.state = "START" if role == "initiator" else "WAIT_HELLO"
        self.secrets = {}
        self.auth_bodies = {}
        self.transcript = b""
        self.handshake_done = False  # our own side has sent its AUTH / verified
        # responder: the initiator's AUTH body once its Finished checked out
        # (section 8.3: our failure alert then goes under ap_r)
        self.opened_peer_auth = None
        self._in, self._out = b"", b""
        self._send = self._recv = None

    # public API

    def initiate(self):
        assert self.state == "START"
        nonce = self.random(32)
        self._eph = X25519PrivateKey.from_private_bytes(self.random(32))
        self._my_share = self._eph.public_key().public_bytes_raw()
        body = (struct.pack(">HB", 1, CONTEXT_NUMBER) + nonce + self._my_share
                + bytes([len(self.suites)])
                + b"".join(struct.pack(">H", s) for s in self.suites))
        self.hello = frame(HELLO, body)
        self._out += self.hello
        self.state = "WAIT_REPLY"

    def data_to_send(self):
        out, self._out = self._out, b""
        return out

    def send(self, *messages):
        """Send inner messages [(type, body), ...] in one application record."""
        assert self.state == "ESTABLISHED"
        self._out += self._send.seal(b"".join(inner(t, b) for t, b in messages))

    def ping(self, data):
        self.send((PING, bytes8(data)))

    def receive_data(self, data):
        """Returns a list of events; a local error adds ("error", name)."""
        events = []
        if self.state in ("FAILED", "CLOSED"):
            return events
        self._in += data
        try:
            while len(self._in) >= 4 and self.state not in ("FAILED", "CLOSED"):
                length = struct.unpack(">I", self._in[:4])[0]
                if length == 0:
                    raise ProtocolError("empty-frame")
                maximum = (MAX_FRAME_ESTABLISHED if self.state == "ESTABLISHED"
                           else MAX_FRAME_HANDSHAKE)
                if length > maximum:
                    raise ProtocolError("frame-too-large")
                if len(self._in) < 4 + length:
                    break
                whole, self._in = self._in[:4 + length], self._in[4 + length:]
                self._frame(whole, events)
        except ProtocolError as e:
            self._fail(e, events)
        return events

    # internals

    def _fail(self, err, events):
        self.state, was = "FAILED", self.state
        events.append(("error", err.error))
        if err.error == "unauthenticated-alert":
            return  # section 8.3: an alert is never answered
        reason = b"" if err.alert == HANDSHAKE_FAILED else err.error.encode()
        body = alert_body(err.alert, reason)
        if self.handshake_done and self._send is not None:
            self._out += self._send.seal(inner(ALERT, body))
        elif (self.role == "responder" and self.opened_peer_auth is not None
              and was == "WAIT_AUTH"):
            # Section 8.3: the initiator is established and expects ap_r.
            th_all = sha256(self.transcript + self.opened_peer_auth)
            ap_r = expand_label(self.secrets["hs"], b"r ap traffic", th_all, 32)
            self._out += Direction(self.suite, ap_r).seal(inner(ALERT, body))
        else:
            self._out += frame(ALERT, body)

    def _frame(self, whole, events):
        ftype, payload = whole[4], whole[5:]
        if ftype not in (HELLO, HELLO_REPLY, ALERT, RECORD):
            raise ProtocolError("unknown-type")
        st = self.state
        if ftype == ALERT:
            # Section 8.3: believed in the clear only before keys exist.
            if st in ("WAIT_AUTH", "ESTABLISHED"):
                raise ProtocolError("unauthenticated-alert")
            if st not in ("WAIT_HELLO", "WAIT_REPLY"):
                raise ProtocolError("unexpected-message")
            self._alert(payload, events)
        elif ftype == HELLO and st == "WAIT_HELLO":
            self._on_hello(whole, payload)
        elif ftype == HELLO_REPLY and st == "WAIT_REPLY":
            self._on_hello_reply(whole, payload)
        elif ftype == RECORD and st == "WAIT_AUTH":
            self._on_auth_record(payload, events)
        elif ftype == RECORD and st == "ESTABLISHED":
            self._on_app_record(payload, events)
        else:
            raise ProtocolError("unexpected-message")

    def _alert(self, body, events):
        r = Reader(body)
        code, reason = r.u8(), r.bytes8()
        r.end()
        events.append(("alert", code, reason.decode("utf-8")))
        self.state = "CLOSED" if code == CLOSE_NOTIFY else "FAILED"

    def _key_exchange(self, peer_share):
        if peer_share == self._my_share:
            raise ProtocolError("reflected-key-share")
        try:
            shared = self._eph.exchange(X25519PublicKey.from_public_bytes(peer_share))
        except ValueError:  # cryptography refuses an all-zero result itself
            shared = b"\x00" * 32
        del self._eph
        if shared == b"\x00" * 32:
            raise ProtocolError("bad-key-share")
        return shared

    def _derive_handshake(self, shared):
        s = self.secrets
        s["shared"] = shared
        s["hs"] = hkdf_extract(sha256(b"securechat/1 " + CONTEXT_NAME), shared)
        self.transcript = self.hello + self.hello_reply
        s["th_hs"] = sha256(self.transcript)
        s["hs_i"] = expand_label(s["hs"], b"i hs traffic", s["th_hs"], 32)
        s["hs_r"] = expand_label(s["hs"], b"r hs traffic", s["th_hs"], 32)
        mine, theirs = ("hs_i", "hs_r") if self.role == "initiator" else ("hs_r", "hs_i")
        self._send = Direction(self.suite, s[mine])
        self._recv = Direction(self.suite, s[theirs])

    def _derive_application(self):
        s = self.secrets
        s["th_all"] = sha256(self.transcript)
        s["ap_i"] = expand_label(s["hs"], b"i ap traffic", s["th_all"], 32)
        s["ap_r"] = expand_label(s["hs"], b"r ap traffic", s["th_all"], 32)
        mine, theirs = ("ap_i", "ap_r") if self.role == "initiator" else ("ap_r", "ap_i")
        self._send = Direction(self.suite, s[mine])
        self._recv = Direction(self.suite, s[theirs])
        self.handshake_done = True
        self.state = "ESTABLISHED"

    def _on_hello(self, whole, payload):
        r = Reader(payload)
        version, context = r.u16(), r.u8()
        r.take(32)  # the initiator's nonce: only its bytes in the transcript matter
        peer_share = r.take(32)
        count = r.u8()
        offered = [r.u16() for _ in range(count)]
        r.end()
        if not 1 <= count <= 32:
            raise ProtocolError("bad-value")
        if version != 1:
            raise ProtocolError("unsupported-version")
        if context != CONTEXT_NUMBER:
            raise ProtocolError("wrong-context")
        common = [s for s in offered if s in self.suites]
        if not common:
            raise ProtocolError("no-common-suite")
        self.suite = common[0]
        nonce = self.random(32)
        self._eph = X25519PrivateKey.from_private_bytes(self.random(32))
        self._my_share = self._eph.public_key().public_bytes_raw()
        shared = self._key_exchange(peer_share)
        self.hello = whole
        self.hello_reply = frame(HELLO_REPLY, struct.pack(">H", 1) + nonce
                                 + self._my_share + struct.pack(">H", self.suite))
        self._out += self.hello_reply
        self._derive_handshake(shared)
        self._send_auth()
        self.state = "WAIT_AUTH"

    def _on_hello_reply(self, whole, payload):
        r = Reader(payload)
        version = r.u16()
        r.take(32)
        peer_share, suite = r.take(32), r.u16()
        r.end()
        if version != 1:
            raise ProtocolError("unsupported-version")
        if suite not in self.suites or suite not in SUITES:
            raise ProtocolError("suite-not-offered")
        self.suite = suite
        shared = self._key_exchange(peer_share)
        self.hello_reply = whole
        self._derive_handshake(shared)
        self.state = "WAIT_AUTH"

    def _send_auth(self):
        t = self.transcript
        identity = user_identity(self.name)
        sig = self.key.sign(signed_content(self.role.encode(), sha256(t + identity)))
        sigpart = struct.pack(">HH", SCHEME_ED25519, len(sig)) + sig
        fin_key = finished_key(self._send.secret)
        fin = hmac.new(fin_key, sha256(t + identity + sigpart), hashlib.sha256).digest()
        if self.tamper_auth is not None:
            identity, sigpart, fin = self.tamper_auth(identity, sigpart, fin)
        body = identity + sigpart + fin
        self.auth_bodies[self.role] = body
        self.transcript += body
        self.auth_record = self._send.seal(inner(AUTH, body))
        self._out += self.auth_record

    def _on_auth_record(self, payload, events):
        fin_key = finished_key(self._recv.secret)
        plaintext = self._recv.open(payload, mac_error="bad-handshake-record")
        messages = parse_inner(plaintext)
        if len(messages) != 1 or messages[0][0] != AUTH:
            raise ProtocolError("unexpected-message")
        body = messages[0][1]
        r = Reader(body)
        kind = r.u8()
        if kind not in (1, 2):
            raise ProtocolError("bad-value")
        if kind != 2:
            raise ProtocolError("wrong-identity-kind")
        name = r.bytes8()
        identity = body[:r.pos]
        start = r.pos
        scheme, sig = r.u16(), r.bytes16()
        sigpart = body[start:r.pos]
        fin = r.take(32)
        r.end()
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("bad-value") from None
        if not _valid_user_name(name):
            raise ProtocolError("bad-value")
        t = self.transcript
        expect = hmac.new(fin_key, sha256(t + identity + sigpart), hashlib.sha256).digest()
        if not hmac.compare_digest(expect, fin):
            raise ProtocolError("bad-finished")
        self.opened_peer_auth = body
        events.append(("peer", name))
        if name != self.peer_name:
            raise ProtocolError("wrong-peer")  # guessed: spec names no error
        peer_role = b"responder" if self.role == "initiator" else b"initiator"
        if scheme != SCHEME_ED25519 or not isinstance(self.peer_key, Ed25519PublicKey):
            raise ProtocolError("bad-signature")
        try:
            self.peer_key.verify(sig, signed_content(peer_role, sha256(t + identity)))
        except InvalidSignature:
            raise ProtocolError("bad-signature") from None
        self.auth_bodies["initiator" if self.role == "responder" else "responder"] = body
        self.transcript += body
        if self.role == "initiator":
            self._send_auth()
        self._derive_application()
        events.append(("established",))

    def _on_app_record(self, payload, events):
        plaintext = self._recv.open(payload)
        for itype, body in parse_inner(plaintext):
            if self.state != "ESTABLISHED":
                break
            if itype == ALERT:
                self._alert(body, events)
            elif itype in (PING, PONG):
                r = Reader(body)
                data = r.bytes8()
                r.end()
                events.append(("ping" if itype == PING else "pong", data))
                if itype == PING:
                    self.send((PONG, bytes8(data)))
            elif itype >= 0x30:
                events.append(("message", itype, body))  # left to the layer above
            else:
                raise ProtocolError("unknown-type")


def _valid_user_name(name):
    first = "abcdefghijklmnopqrstuvwxyz"
    rest = first + "0123456789._-"
    return (1 <= len(name) <= 32 and name[0] in first
            and all(c in rest for c in name[1:]))


def ed25519_from_seed(seed):
    return Ed25519PrivateKey.from_private_bytes(seed)
