"""
The group message test vector of docs/protocol.rst, 13.6: a sender chain at
a fixed counter, its distribution, and one group message sealed with it.

C{python -m tests.group_vectors} prints it in the document's format (for
maintainers, when a deliberate change needs a new vector);
L{tests.test_group_vectors} checks the document against L{compute_group_message}.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from securechat.crypto.senderkeys import (
    SenderChain,
    message_key,
    next_chain_key,
    parse_distribution,
    parse_group_message,
)
from securechat.crypto.senderstate import Opened, SenderKeyState
from tests.vectors import Vector, render_vector

GROUP_INPUTS: Vector = {
    "group_id": bytes(range(0x10, 0x20)),
    "sender.name": b"alice",
    "chain.epoch": (3).to_bytes(8, "big"),
    "chain_id": bytes.fromhex("0badc0de"),
    "counter": (5).to_bytes(4, "big"),
    "chain_key": bytes(range(0x20, 0x40)),
    "signing.seed": bytes(range(0x80, 0xA0)),
    "epoch": (4).to_bytes(8, "big"),
    "sent_at": (1_780_000_300).to_bytes(8, "big"),
    "content_type": bytes.fromhex("01"),
    "content": b"Lunch at noon, the usual place.",
}
GROUP_INPUT_FIELDS = tuple(GROUP_INPUTS)
GROUP_OUTPUT_FIELDS = (
    "signing.public", "distribution", "message_key", "nonce", "next_chain_key", "header",
    "ciphertext", "signed_hash", "signature", "body",
)
_TEXT_FIELDS = {"sender.name", "content"}


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def compute_group_message(inputs: Vector) -> Vector:
    """
    Seal the message of C{inputs} with the chain of C{inputs}, check that a
    receiver given the distribution opens it, and return every output.
    """
    group_id, sender = inputs["group_id"], inputs["sender.name"].decode()
    signing = Ed25519PrivateKey.from_private_bytes(inputs["signing.seed"])
    chain = SenderChain(group_id, sender, _int(inputs["chain.epoch"]), _int(inputs["chain_id"]),
                        _int(inputs["counter"]), inputs["chain_key"], signing)
    dist = chain.distribution()
    sealed = chain.seal(inputs["content"], epoch=_int(inputs["epoch"]), sent_at=_int(inputs["sent_at"]),
                        content_type=inputs["content_type"][0])
    body = sealed.encode()

    receiver = SenderKeyState(group_id, sender)
    receiver.add_chain(parse_distribution(dist.encode()))
    result = receiver.receive(parse_group_message(body))
    assert isinstance(result, Opened) and result.message.content == inputs["content"]

    key = message_key(inputs["chain_key"])
    return {
        "signing.public": dist.signing_public,
        "distribution": dist.encode(),
        "message_key": key.key,
        "nonce": key.nonce,
        "next_chain_key": next_chain_key(inputs["chain_key"]),
        "header": sealed.header.encode(),
        "ciphertext": sealed.ciphertext,
        "signed_hash": hashlib.sha256(sealed.signed_part).digest(),
        "signature": sealed.signature,
        "body": body,
    }


def render(inputs: Vector, outputs: Vector) -> str:
    """The vector as it appears in docs/protocol.rst."""
    return render_vector("group-message", GROUP_INPUT_FIELDS + GROUP_OUTPUT_FIELDS,
                         {**outputs, **inputs}, _TEXT_FIELDS)


if __name__ == "__main__":
    print(render(GROUP_INPUTS, compute_group_message(GROUP_INPUTS)))
