"""
A clean-room implementation of the mailbox's letters, prekeys and receipts
(docs/protocol.rst, section 14, with sections 2, 5.3 and 7 for the
notation, HKDF-Expand-Label and signatures), for Ed25519 users, and of
KEY_HISTORY (14.6) with the previous-key rule of 14.9.

Written from the document alone: it imports nothing from ``securechat``.
``tests/test_independent_mailbox.py`` checks it against the document's
vectors (13.3, 13.4) and against the project's own implementation, both
ways.
"""

import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

ED25519 = 0x0807
AEADS = {0x0001: AESGCM, 0x0002: ChaCha20Poly1305}
MAX_LETTER = 49152


class Refused(Exception):
    """A letter, receipt or prekey refused with a code of 14.8."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


# -- section 2 ----------------------------------------------------------------

def sha256(b):
    return hashlib.sha256(b).digest()


def text8(s):
    b = s.encode("utf-8")
    return bytes([len(b)]) + b


def bytes16(b):
    return struct.pack(">H", len(b)) + b


def bytes32(b):
    return struct.pack(">I", len(b)) + b


class Cursor:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Refused("malformed")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, n):
        return int.from_bytes(self.take(n), "big")

    def name(self):
        raw = self.take(self.int(1))
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("malformed")
        if not (1 <= len(s) <= 32 and s[0] in "abcdefghijklmnopqrstuvwxyz"
                and all(c in "abcdefghijklmnopqrstuvwxyz0123456789._-" for c in s)):
            raise Refused("malformed")
        return s

    def end(self):
        if self.pos != len(self.data):
            raise Refused("malformed")


# -- section 5.3 --------------------------------------------------------------

def hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def expand_label(secret, label, context, length):
    full = b"sc1 " + label
    info = struct.pack(">H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def der(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def raw_x25519(private):
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ed25519_verify(public, scheme, signature, message, code):
    if scheme != ED25519:
        raise Refused(code)
    try:
        public.verify(signature, message)
    except InvalidSignature:
        raise Refused(code)


# -- 14.1 prekeys -------------------------------------------------------------

def signed_prekey(owner, owner_key, prekey_id, x25519_private_bytes, created_at):
    """The encoding of a signed prekey, and its private key."""
    private = X25519PrivateKey.from_private_bytes(x25519_private_bytes)
    public = raw_x25519(private)
    m = (b"securechat/1 signed prekey" + b"\x00" + text8(owner) + struct.pack(">I", prekey_id)
         + public + struct.pack(">Q", created_at))
    signature = owner_key.sign(m)
    return (struct.pack(">I", prekey_id) + public + struct.pack(">Q", created_at)
            + struct.pack(">H", ED25519) + bytes16(signature)), private


def read_signed_prekey(data, owner, owner_public):
    """(id, public) of a signed prekey that verifies for owner."""
    c = Cursor(data)
    prekey_id, public, created_at = c.int(4), c.take(32), c.int(8)
    scheme = c.int(2)
    signature = c.take(c.int(2))
    c.end()
    m = (b"securechat/1 signed prekey" + b"\x00" + text8(owner) + struct.pack(">I", prekey_id)
         + public + struct.pack(">Q", created_at))
    ed25519_verify(owner_public, scheme, signature, m, "bad-prekey-signature")
    return prekey_id, public


def one_time_prekey(prekey_id, x25519_private_bytes):
    private = X25519PrivateKey.from_private_bytes(x25519_private_bytes)
    return struct.pack(">I", prekey_id) + raw_x25519(private), private


# -- 14.2-14.3 sealing ----------------------------------------------------------

def _x25519(private, public):
    try:
        out = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise Refused("bad-key-share")
    if out == bytes(32):
        raise Refused("bad-key-share")
    return out


def _keys(shared, header, sender, sender_public, recipient, recipient_public):
    prk = hkdf_extract(sha256(b"securechat/1 letter"), shared)
    binding = sha256(text8(sender) + bytes16(der(sender_public)) + text8(recipient)
                     + bytes16(der(recipient_public)) + header)
    return expand_label(prk, b"letter key", binding, 32), expand_label(prk, b"letter iv", binding, 12)


def seal(sender, sender_key, recipient, recipient_public, bundle_signed, bundle_one_time,
         text, sent_at, letter_id, ephemeral_bytes, reply_to=None, suite=0x0001, content_type=1):
    """
    A sealed letter, following 14.3 step by step: a text letter, or with
    content_type 2 a group sender key (text is then the distribution's
    bytes, 16.2).
    """
    spk_id, spk_public = read_signed_prekey(bundle_signed, recipient, recipient_public)
    e = X25519PrivateKey.from_private_bytes(ephemeral_bytes)
    header = bytes([1]) + struct.pack(">H", suite) + letter_id + text8(sender) + text8(recipient)
    header += struct.pack(">Q", sent_at)
    header += b"\x00" if reply_to is None else b"\x01" + reply_to
    header += struct.pack(">I", spk_id)
    shared = _x25519(e, spk_public)
    if bundle_one_time:
        opk_id, opk_public = struct.unpack(">I", bundle_one_time[:4])[0], bundle_one_time[4:]
        header += b"\x01" + struct.pack(">I", opk_id)
        shared += _x25519(e, opk_public)
    else:
        header += b"\x00"
    header += raw_x25519(e)
    key, nonce = _keys(shared, header, sender, sender_key.public_key(), recipient, recipient_public)
    content = text.encode("utf-8") if content_type == 1 else text
    ciphertext = AEADS[suite](key).encrypt(nonce, bytes([content_type]) + content, header)
    m = b"securechat/1 letter signature" + b"\x00" + sha256(header + bytes32(ciphertext))
    letter = header + bytes32(ciphertext) + struct.pack(">H", ED25519) + bytes16(sender_key.sign(m))
    if len(letter) > MAX_LETTER:
        raise Refused("letter-too-large")
    return letter


# -- 14.4 opening ---------------------------------------------------------------

def open_letter(letter, envelope, me, my_public, sender_public, signed_prekeys, one_time_prekeys,
                opened=()):
    """
    (content_type, content) of a letter delivered under envelope
    (sender, letter_id), checked in the order of 14.4.
    """
    if len(letter) > MAX_LETTER:
        raise Refused("letter-too-large")
    c = Cursor(letter)
    if c.int(1) != 1:
        raise Refused("unsupported-version")
    suite = c.int(2)
    letter_id = c.take(16)
    sender = c.name()
    recipient = c.name()
    c.int(8)
    flag = c.int(1)
    if flag > 1:
        raise Refused("malformed")
    if flag:
        c.take(16)
    spk_id = c.int(4)
    flag = c.int(1)
    if flag > 1:
        raise Refused("malformed")
    opk_id = c.int(4) if flag else None
    ephemeral = c.take(32)
    header = letter[:c.pos]
    ciphertext = c.take(c.int(4))
    if len(ciphertext) < 17:
        raise Refused("malformed")
    scheme = c.int(2)
    signature = c.take(c.int(2))
    if len(signature) > 512:
        raise Refused("malformed")
    c.end()
    if suite not in AEADS:
        raise Refused("unknown-suite")
    if (sender, letter_id) != tuple(envelope):
        raise Refused("wrong-envelope")
    if recipient != me:
        raise Refused("wrong-recipient")
    if (sender, letter_id) in opened:
        raise Refused("replayed")
    m = b"securechat/1 letter signature" + b"\x00" + sha256(header + bytes32(ciphertext))
    ed25519_verify(sender_public, scheme, signature, m, "bad-signature")
    if spk_id not in signed_prekeys or (opk_id is not None and opk_id not in one_time_prekeys):
        raise Refused("unknown-prekey")
    shared = _x25519(signed_prekeys[spk_id], ephemeral)
    if opk_id is not None:
        shared += _x25519(one_time_prekeys[opk_id], ephemeral)
    key, nonce = _keys(shared, header, sender, sender_public, me, my_public)
    try:
        plaintext = AEADS[suite](key).decrypt(nonce, ciphertext, header)
    except InvalidTag:
        raise Refused("decrypt-failed")
    if plaintext[0] == 1:
        try:
            plaintext[1:].decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("bad-content")
    if plaintext[0] == 2:
        from tests.independent_groups import parse_distribution
        try:
            parse_distribution(plaintext[1:])
        except Refused:
            raise Refused("bad-content")
    return plaintext[0], plaintext[1:]


# -- 14.5 receipts ---------------------------------------------------------------

def _letter_fields(letter):
    c = Cursor(letter)
    c.take(3)
    letter_id = c.take(16)
    sender, recipient = c.name(), c.name()
    return letter_id, sender, recipient


def receipt(letter, kind, signer_key, signed_at):
    letter_id, sender, recipient = _letter_fields(letter)
    body = (bytes([1, kind]) + sha256(letter) + letter_id + text8(sender) + text8(recipient)
            + struct.pack(">Q", signed_at))
    m = b"securechat/1 receipt signature" + b"\x00" + sha256(body)
    return body + struct.pack(">H", ED25519) + bytes16(signer_key.sign(m))


def check_receipt(data, letter, signer_public):
    """The receipt's kind, after the checks of 14.5 in order."""
    c = Cursor(data)
    if c.int(1) != 1:
        raise Refused("unsupported-version")
    kind = c.int(1)
    if kind not in (1, 2):
        raise Refused("malformed")
    digest, letter_id = c.take(32), c.take(16)
    letter_sender, signer = c.name(), c.name()
    c.int(8)
    body = data[:c.pos]
    scheme = c.int(2)
    signature = c.take(c.int(2))
    if len(signature) > 512:
        raise Refused("malformed")
    c.end()
    my_letter_id, sender, recipient = _letter_fields(letter)
    if signer != recipient:
        raise Refused("wrong-signer")
    if letter_sender != sender:
        raise Refused("wrong-sender")
    if letter_id != my_letter_id or digest != sha256(letter):
        raise Refused("wrong-letter")
    m = b"securechat/1 receipt signature" + b"\x00" + sha256(body)
    ed25519_verify(signer_public, scheme, signature, m, "bad-signature")
    return kind


# -- 14.6 KEY_HISTORY and 14.9 previous keys ---------------------------------------

def parse_key_history(body):
    """(user, [(der, added_at, replaced_at, compromised_at), ...]) of a KEY_HISTORY body."""
    c = Cursor(body)
    user = c.name()
    entries = []
    for _ in range(c.int(2)):
        key = c.take(c.int(2))
        added_at, replaced_at, compromised_at = c.int(8), c.int(8), c.int(8)
        if not key or added_at > replaced_at or (
                compromised_at and not added_at <= compromised_at <= replaced_at):
            raise Refused("bad-value")
        entries.append((key, added_at, replaced_at, compromised_at))
    c.end()
    return user, entries


def previous_key(verifies, entries, stored_at, pinned):
    """The entry of 14.9 that lets a signature count, or Refused with its code."""
    for key, added_at, replaced_at, compromised_at in entries:
        if not verifies(key):
            continue
        if not pinned(key):
            raise Refused("unpinned-key")
        if compromised_at and stored_at >= compromised_at:
            raise Refused("key-compromised")
        if stored_at >= replaced_at:
            raise Refused("key-replaced")
        return key, added_at, replaced_at, compromised_at
    raise Refused("bad-signature")


def ed25519_from_seed(seed):
    return Ed25519PrivateKey.from_private_bytes(seed)

