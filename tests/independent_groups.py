"""
A clean-room implementation of group messages (docs/protocol.rst, section
16: sender chains, distributions, the message body, sealing and opening),
with the letters of ``tests/independent_mailbox.py`` carrying the
distributions (content type 2).

Written from the document alone: it imports nothing from ``securechat``.
``tests/test_independent_groups.py`` checks it against the document's
vector (13.6) and against the project's own implementation, both ways.

Group membership (section 15) is the caller's: ``Receiver.open`` takes the
rekey epoch (16.4 step 7) and trusts the caller for step 5.
"""

import hashlib
import struct

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.independent_mailbox import Cursor, Refused, bytes32, expand_label, text8

MAX_BODY = 49152
MAX_SKIP = 1000
LABEL = b"securechat/1 group message signature"


# -- 16.1 ---------------------------------------------------------------------

def chain_step(ck):
    """(message key, nonce, next chain key) of the chain key ck."""
    return (expand_label(ck, b"group message key", b"", 32),
            expand_label(ck, b"group message iv", b"", 12),
            expand_label(ck, b"group chain key", b"", 32))


def signing_public(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- 16.2 ---------------------------------------------------------------------

def distribution(group_id, epoch, chain_id, counter, chain_key, signing_seed):
    """The 93-byte content of a content type 2 letter."""
    return (bytes([1]) + group_id + struct.pack(">QII", epoch, chain_id, counter) + chain_key
            + signing_public(signing_seed))


def parse_distribution(data):
    """The distribution's fields, as a dict; Refused on anything else."""
    c = Cursor(data)
    if c.int(1) != 1:
        raise Refused("unsupported-version")
    group_id, epoch, chain_id, counter = c.take(16), c.int(8), c.int(4), c.int(4)
    chain_key, public = c.take(32), c.take(32)
    c.end()
    if chain_id == 0:
        raise Refused("malformed")
    return {"group_id": group_id, "epoch": epoch, "chain_id": chain_id, "counter": counter,
            "chain_key": chain_key, "signing_public": public}


# -- 16.3-16.4 sealing --------------------------------------------------------

def _m(header, ciphertext):
    return LABEL + b"\x00" + hashlib.sha256(header + bytes32(ciphertext)).digest()


def seal(group_id, sender, epoch, chain_id, counter, chain_key, signing_seed, sent_at, content,
         content_type=1):
    """(body, next chain key): the message at counter, following 16.4."""
    header = (bytes([1]) + group_id + text8(sender) + struct.pack(">QIIQ", epoch, chain_id, counter, sent_at))
    key, nonce, next_ck = chain_step(chain_key)
    ciphertext = AESGCM(key).encrypt(nonce, bytes([content_type]) + content, header)
    signature = Ed25519PrivateKey.from_private_bytes(signing_seed).sign(_m(header, ciphertext))
    body = header + bytes32(ciphertext) + signature
    if len(body) > MAX_BODY:
        raise Refused("message-too-large")
    return body, next_ck


# -- 16.4 opening ---------------------------------------------------------------

def parse_body(body):
    """(header bytes, fields, ciphertext, signature) of a body, steps 1-2."""
    if len(body) > MAX_BODY:
        raise Refused("message-too-large")
    c = Cursor(body)
    if c.int(1) != 1:
        raise Refused("unsupported-version")
    group_id = c.take(16)
    sender = c.name()
    epoch, chain_id, counter, sent_at = c.int(8), c.int(4), c.int(4), c.int(8)
    header = body[:c.pos]
    ciphertext = c.take(c.int(4))
    signature = c.take(64)
    c.end()
    if chain_id == 0 or len(ciphertext) < 17:
        raise Refused("malformed")
    fields = {"group_id": group_id, "sender": sender, "epoch": epoch, "chain_id": chain_id,
              "counter": counter, "sent_at": sent_at}
    return header, fields, ciphertext, signature


class Receiver:
    """
    One member's view of the chains of the others in one group.
    """

    def __init__(self, group_id):
        self.group_id = group_id
        self.chains = {}   # (sender, chain_id) -> chain dict
        self.held = []     # (body, sender, rekey_epoch)

    def add(self, sender, dist):
        """
        Take a parsed distribution from sender's letter; returns the
        results of the held messages it releases (16.2).
        """
        if dist["group_id"] != self.group_id:
            raise Refused("wrong-group")
        known = self.chains.get((sender, dist["chain_id"]))
        if known is not None:
            first = known["dist"]
            if (first["signing_public"], first["epoch"]) != (dist["signing_public"], dist["epoch"]):
                raise Refused("chain-conflict")
            return []
        self.chains[(sender, dist["chain_id"])] = {
            "dist": dist, "next": dist["counter"], "ck": dist["chain_key"], "skipped": {},
            "floor": dist["counter"]}
        results, still = [], []
        for body, who, rekey in self.held:
            if who == sender and parse_body(body)[1]["chain_id"] == dist["chain_id"]:
                try:
                    results.append(self.open(body, self.group_id, who, rekey))
                except Refused as e:
                    results.append(("refused", e.code))
            else:
                still.append((body, who, rekey))
        self.held = still
        return results

    def open(self, body, envelope_group, envelope_sender, rekey_epoch=0):
        """
        ("opened", content_type, content, gap, late) or ("held",), checked
        in the order of 16.4; Refused with the code otherwise.
        """
        header, f, ciphertext, signature = parse_body(body)
        if f["group_id"] != envelope_group:
            raise Refused("wrong-group")
        if f["sender"] != envelope_sender:
            raise Refused("wrong-sender")
        chain = self.chains.get((f["sender"], f["chain_id"]))
        if chain is None:
            self.held.append((body, envelope_sender, rekey_epoch))
            return ("held",)
        dist = chain["dist"]
        if f["epoch"] < dist["epoch"]:
            raise Refused("wrong-epoch")
        if dist["epoch"] < rekey_epoch:
            raise Refused("stale-chain")
        try:
            Ed25519PublicKey.from_public_bytes(dist["signing_public"]).verify(signature, _m(header, ciphertext))
        except (InvalidSignature, ValueError):
            raise Refused("bad-signature")
        n, c = f["counter"], chain["next"]
        gap, late, skipped = None, False, {}
        if n < dist["counter"]:
            raise Refused("before-key")
        if n < c:
            if n in chain["skipped"]:
                key, nonce = chain["skipped"][n]
                late = True
            elif n < chain["floor"]:
                raise Refused("key-expired")
            else:
                raise Refused("replayed")
        else:
            if n - c > MAX_SKIP:
                raise Refused("too-far-ahead")
            ck = chain["ck"]
            for i in range(c, n):
                key, nonce, ck = chain_step(ck)
                skipped[i] = (key, nonce)
            key, nonce, next_ck = chain_step(ck)
            if n > c:
                gap = (c, n - c)
        try:
            plaintext = AESGCM(key).decrypt(nonce, ciphertext, header)
        except InvalidTag:
            raise Refused("decrypt-failed")
        if plaintext[0] == 1:
            try:
                plaintext[1:].decode("utf-8")
            except UnicodeDecodeError:
                raise Refused("bad-content")
        if late:
            del chain["skipped"][n]
        else:
            chain["skipped"].update(skipped)
            chain["next"], chain["ck"] = n + 1, next_ck
        return ("opened", plaintext[0], plaintext[1:], gap, late)
