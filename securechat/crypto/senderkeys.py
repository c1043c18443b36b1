# -*- test-case-name: tests.test_senderkeys -*-
"""
Sender keys: the end-to-end layer of group messages (docs/protocol.rst,
section 16).

Each member has, per group, a I{sending chain}: a 32-byte chain key that
moves forward one step per message (a symmetric ratchet), and an Ed25519
I{signing key} of its own.  For the message at counter C{n}::

    message key  = HKDF-Expand-Label(CK_n, "group message key", "", 32)
    nonce        = HKDF-Expand-Label(CK_n, "group message iv", "", 12)
    CK_(n+1)     = HKDF-Expand-Label(CK_n, "group chain key", "", 32)

and C{CK_n} is forgotten once C{CK_(n+1)} exists, so a chain key captured
later opens no earlier message.  A member hands its chain (at its I{current}
counter) and its signing public key to each other member in a letter of
content type 2 (L{SenderKeyDistribution}); the letter is signed by its
registered key, so the chain is bound to its name.

A group message body (L{GroupMessage}) is a header in the clear, the AES-256-GCM
ciphertext (header as associated data) and an Ed25519 signature by the
sender's signing key over header and ciphertext.  L{SenderChain.seal} makes
one; L{open_with_chain} checks the signature I{before} decrypting.  The
receiver's side (which chain, which counter, replays, gaps, held messages)
is L{securechat.crypto.senderstate}.

Every refusal is a L{GroupKeyError} whose C{code} names it (16.6).  Pure:
no IO, no clock (times are arguments), randomness injectable.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securechat.crypto.schedule import expand_label
from securechat.errors import RemoteProtocolError
from securechat.wire.codec import Reader, bytes32, text8, u8, u32, u64
from securechat.wire.names import read_user_name

Random = Callable[[int], bytes]

SENDER_KEY_VERSION = 1
GROUP_MESSAGE_VERSION = 1
GROUP_ID_LENGTH = 16
CHAIN_KEY_LENGTH = 32
SIGNING_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
MESSAGE_KEY_LENGTH = 32
NONCE_LENGTH = 12
#: The largest counter; a chain at it must be replaced before sending.
MAX_COUNTER = 0xFFFFFFFF
#: The largest group message body, in bytes (a relay may accept less).
MAX_GROUP_MESSAGE = 49152
#: The length of an encoded distribution (16.2).
DISTRIBUTION_LENGTH = 1 + GROUP_ID_LENGTH + 8 + 4 + 4 + CHAIN_KEY_LENGTH + SIGNING_KEY_LENGTH
#: Content types of a group message's plaintext (as for letters).
GROUP_CONTENT_TEXT = 1

GROUP_SIGNATURE_LABEL = b"securechat/1 group message signature\x00"
_TAG_LENGTH = 16


class GroupKeyError(ValueError):
    """
    A sender-key distribution or a group message was refused.  C{code} is
    the specific reason (docs/protocol.rst, 16.6); the message is one line
    without key material or plaintext.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _parse(what: str, parse: Callable[[Reader], object], data: bytes) -> object:
    r = Reader(data, what)
    try:
        value = parse(r)
        r.finish()
    except RemoteProtocolError as e:
        raise GroupKeyError("malformed", f"{what}: {e.code}: {e.detail}") from None
    return value


# -- the chain (16.1) ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MessageKey:
    """The AEAD key and nonce of the message at one counter of one chain."""

    key: bytes
    nonce: bytes


def message_key(chain_key: bytes) -> MessageKey:
    """The message key and nonce that C{chain_key} (at some counter) gives."""
    return MessageKey(expand_label(chain_key, b"group message key", b"", MESSAGE_KEY_LENGTH),
                      expand_label(chain_key, b"group message iv", b"", NONCE_LENGTH))


def next_chain_key(chain_key: bytes) -> bytes:
    """The chain key one counter further (one-way)."""
    return expand_label(chain_key, b"group chain key", b"", CHAIN_KEY_LENGTH)


def signing_public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte Ed25519 public key of C{key}."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- the distribution (16.2) --------------------------------------------------

@dataclass(frozen=True, slots=True)
class SenderKeyDistribution:
    """
    The content of a letter of content type 2: one member's chain in one
    group, at its current counter, with its signing public key.  The chain's
    owner is the letter's (signed) sender.
    """

    group_id: bytes
    epoch: int
    chain_id: int
    counter: int
    chain_key: bytes
    signing_public: bytes
    version: int = SENDER_KEY_VERSION

    def encode(self) -> bytes:
        return (u8(self.version) + self.group_id + u64(self.epoch) + u32(self.chain_id)
                + u32(self.counter) + self.chain_key + self.signing_public)


def parse_distribution(data: bytes) -> SenderKeyDistribution:
    """
    Parse a distribution exactly (16.2).

    @raise GroupKeyError: C{unsupported-version}, C{malformed} (cut short,
        trailing bytes, chain id 0).
    """
    def parse(r: Reader) -> SenderKeyDistribution:
        version = r.u8("version")
        if version != SENDER_KEY_VERSION:
            raise GroupKeyError("unsupported-version", f"sender key version {version}, only 1 is known")
        group_id = r.fixed(GROUP_ID_LENGTH, "group_id")
        epoch = r.u64("epoch")
        chain_id = r.u32("chain_id")
        if chain_id == 0:
            raise RemoteProtocolError("bad-value", "chain_id is 0")
        counter = r.u32("counter")
        chain_key = r.fixed(CHAIN_KEY_LENGTH, "chain_key")
        signing_public = r.fixed(SIGNING_KEY_LENGTH, "signing_public")
        return SenderKeyDistribution(group_id, epoch, chain_id, counter, chain_key, signing_public, version)

    dist = _parse("sender key", parse, data)
    assert isinstance(dist, SenderKeyDistribution)
    return dist


# -- the message (16.3) -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GroupHeader:
    """A group message's header: in the clear, signed and authenticated."""

    group_id: bytes
    sender: str
    epoch: int
    chain_id: int
    counter: int
    sent_at: int
    version: int = GROUP_MESSAGE_VERSION

    def encode(self) -> bytes:
        return (u8(self.version) + self.group_id + text8(self.sender) + u64(self.epoch)
                + u32(self.chain_id) + u32(self.counter) + u64(self.sent_at))


@dataclass(frozen=True, slots=True)
class GroupMessage:
    """A group message body as posted: header, ciphertext, signature."""

    header: GroupHeader
    ciphertext: bytes
    signature: bytes

    @property
    def signed_part(self) -> bytes:
        return self.header.encode() + bytes32(self.ciphertext)

    def encode(self) -> bytes:
        return self.signed_part + self.signature


@dataclass(frozen=True, slots=True)
class OpenedGroupMessage:
    """A group message whose signature verified and that decrypted."""

    header: GroupHeader
    content_type: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")


def group_signature_message(signed_part: bytes) -> bytes:
    """The label, then SHA-256 of header || bytes32 ciphertext (16.4)."""
    return GROUP_SIGNATURE_LABEL + hashlib.sha256(signed_part).digest()


def parse_group_message(data: bytes) -> GroupMessage:
    """
    Parse a group message body exactly (16.3).

    @raise GroupKeyError: C{message-too-large} (checked first),
        C{unsupported-version}, C{malformed} (cut short, trailing bytes, a
        bad sender name, chain id 0, a ciphertext shorter than 17 bytes).
    """
    if len(data) > MAX_GROUP_MESSAGE:
        raise GroupKeyError("message-too-large",
                            f"a group message of {len(data)} bytes, the most is {MAX_GROUP_MESSAGE}")

    def parse(r: Reader) -> GroupMessage:
        version = r.u8("version")
        if version != GROUP_MESSAGE_VERSION:
            raise GroupKeyError("unsupported-version", f"group message version {version}, only 1 is known")
        group_id = r.fixed(GROUP_ID_LENGTH, "group_id")
        sender = read_user_name(r, "sender")
        epoch = r.u64("epoch")
        chain_id = r.u32("chain_id")
        if chain_id == 0:
            raise RemoteProtocolError("bad-value", "chain_id is 0")
        counter = r.u32("counter")
        sent_at = r.u64("sent_at")
        ciphertext = r.bytes32("ciphertext")
        if len(ciphertext) < _TAG_LENGTH + 1:
            raise RemoteProtocolError("bad-value", f"ciphertext of {len(ciphertext)} bytes")
        signature = r.fixed(SIGNATURE_LENGTH, "signature")
        header = GroupHeader(group_id, sender, epoch, chain_id, counter, sent_at, version)
        return GroupMessage(header, ciphertext, signature)

    message = _parse("group message", parse, data)
    assert isinstance(message, GroupMessage)
    return message


def check_envelope(message: GroupMessage, group_id: bytes, sender: str) -> None:
    """
    The body is for the group and from the member the relay delivered it
    under (GROUP_MESSAGE's C{group_id} and C{sender}).

    @raise GroupKeyError: C{wrong-group}, C{wrong-sender}.
    """
    if message.header.group_id != group_id:
        raise GroupKeyError("wrong-group", "the message names another group than the one it came in")
    if message.header.sender != sender:
        raise GroupKeyError("wrong-sender",
                            f"the message names {message.header.sender}, the relay says {sender} sent it")


def verify_group_signature(message: GroupMessage, signing_public: bytes) -> None:
    """
    @raise GroupKeyError: C{bad-signature}.
    """
    try:
        Ed25519PublicKey.from_public_bytes(signing_public).verify(
            message.signature, group_signature_message(message.signed_part))
    except (InvalidSignature, ValueError):
        raise GroupKeyError("bad-signature",
                            f"the message is not signed by {message.header.sender}'s group key") from None


def decrypt_group_message(message: GroupMessage, key: MessageKey) -> OpenedGroupMessage:
    """
    Decrypt a message whose signature has been verified, with the message
    key of its counter, and check its content.

    @raise GroupKeyError: C{decrypt-failed}, C{bad-content}.
    """
    header_bytes = message.header.encode()
    try:
        plaintext = AESGCM(key.key).decrypt(key.nonce, message.ciphertext, header_bytes)
    except InvalidTag:
        raise GroupKeyError("decrypt-failed", "the message does not decrypt with the sender's chain") from None
    content_type, content = plaintext[0], plaintext[1:]
    if content_type == GROUP_CONTENT_TEXT:
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            raise GroupKeyError("bad-content", "a text group message that is not UTF-8") from None
    return OpenedGroupMessage(message.header, content_type, content)


# -- the sender's side --------------------------------------------------------

class SenderChain:
    """
    A member's own sending chain in one group: chain id, the epoch it was
    made in, the current counter and chain key, and the signing key.  Each
    L{seal} uses the current key once and moves the chain on; the used
    chain key and message key are not kept.
    """

    def __init__(self, group_id: bytes, sender: str, epoch: int, chain_id: int, counter: int,
                 chain_key: bytes, signing_key: Ed25519PrivateKey) -> None:
        if len(group_id) != GROUP_ID_LENGTH or len(chain_key) != CHAIN_KEY_LENGTH:
            raise ValueError("a group id is 16 bytes and a chain key 32")
        if not 0 < chain_id <= MAX_COUNTER or not 0 <= counter <= MAX_COUNTER:
            raise ValueError("chain id and counter are u32, the chain id not 0")
        self.group_id = group_id
        self.sender = sender
        self.epoch = epoch
        self.chain_id = chain_id
        self.counter = counter
        self._chain_key = chain_key
        self._signing_key = signing_key

    @classmethod
    def create(cls, group_id: bytes, sender: str, epoch: int, *, avoid: int = 0,
               random: Random = os.urandom) -> SenderChain:
        """
        A new chain at counter 0: draws the chain id (4 bytes, drawn again
        while it is 0 or C{avoid}, the id of the chain it replaces), the
        chain key (32 bytes), then the signing key's seed (32 bytes).
        """
        chain_id = 0
        while chain_id in (0, avoid):
            chain_id = int.from_bytes(random(4), "big")
        chain_key = random(CHAIN_KEY_LENGTH)
        signing_key = Ed25519PrivateKey.from_private_bytes(random(SIGNING_KEY_LENGTH))
        return cls(group_id, sender, epoch, chain_id, 0, chain_key, signing_key)

    @property
    def signing_public(self) -> bytes:
        return signing_public_bytes(self._signing_key)

    def to_record(self) -> dict[str, Any]:
        """
        The chain as JSON-able values (bytes in hex) for the client's
        store: the current chain key only (the used ones are gone).
        """
        seed = self._signing_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {"group_id": self.group_id.hex(), "sender": self.sender, "epoch": self.epoch,
                "chain_id": self.chain_id, "counter": self.counter, "chain_key": self._chain_key.hex(),
                "signing_seed": seed.hex()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SenderChain:
        """The chain L{to_record} describes."""
        chain = cls(bytes.fromhex(record["group_id"]), record["sender"], int(record["epoch"]),
                    int(record["chain_id"]), min(int(record["counter"]), MAX_COUNTER),
                    bytes.fromhex(record["chain_key"]),
                    Ed25519PrivateKey.from_private_bytes(bytes.fromhex(record["signing_seed"])))
        chain.counter = int(record["counter"])
        return chain

    @property
    def exhausted(self) -> bool:
        """No counter left: a new chain must replace this one."""
        return self.counter > MAX_COUNTER

    def distribution(self) -> SenderKeyDistribution:
        """The chain as it is now (current counter and key), to hand to a member."""
        if self.exhausted:
            raise GroupKeyError("chain-exhausted", "this chain has no counter left; make a new one")
        return SenderKeyDistribution(self.group_id, self.epoch, self.chain_id, self.counter,
                                     self._chain_key, self.signing_public)

    def seal(self, content: bytes, *, epoch: int, sent_at: int,
             content_type: int = GROUP_CONTENT_TEXT) -> GroupMessage:
        """
        Encrypt and sign C{content} as the next message of this chain, at
        group epoch C{epoch} (at least the chain's), and move the chain on.

        @raise GroupKeyError: C{chain-exhausted}, C{wrong-epoch},
            C{message-too-large} (nothing is used up by a refusal).
        """
        if self.exhausted:
            raise GroupKeyError("chain-exhausted", "this chain has no counter left; make a new one")
        if epoch < self.epoch:
            raise GroupKeyError("wrong-epoch", f"epoch {epoch} is before the chain's {self.epoch}")
        header = GroupHeader(self.group_id, self.sender, epoch, self.chain_id, self.counter, sent_at)
        header_bytes = header.encode()
        size = len(header_bytes) + 4 + 1 + len(content) + _TAG_LENGTH + SIGNATURE_LENGTH
        if size > MAX_GROUP_MESSAGE:
            raise GroupKeyError("message-too-large",
                                f"a group message of {size} bytes, the most is {MAX_GROUP_MESSAGE}")
        key = message_key(self._chain_key)
        ciphertext = AESGCM(key.key).encrypt(key.nonce, u8(content_type) + content, header_bytes)
        del key
        self._chain_key = next_chain_key(self._chain_key)
        self.counter += 1
        unsigned = GroupMessage(header, ciphertext, b"")
        signature = self._signing_key.sign(group_signature_message(unsigned.signed_part))
        return GroupMessage(header, ciphertext, signature)
