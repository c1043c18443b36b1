"""
The group change vector of docs/protocol.rst 13.5: fixed inputs, and what
L{securechat.crypto.groupstate} makes of them.  L{tests.test_groupstate}
checks the document against L{COMPUTE}; run this module to print the
vector for the document.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.crypto.groupstate import GroupChange, sign_change
from tests.vectors import Vector, render_vector


INPUT_FIELDS = ("actor.seed", "group_id", "epoch", "prev", "actor", "action", "target", "role",
                "name", "made_at")
OUTPUT_FIELDS = ("body", "signature", "change", "digest")
_TEXT = {"actor", "target", "name"}


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def COMPUTE(inputs: Vector) -> Vector:
    """Sign the change of C{inputs}; return every output field."""
    key = ed25519.Ed25519PrivateKey.from_private_bytes(inputs["actor.seed"])
    change = sign_change(GroupChange(
        inputs["group_id"], _int(inputs["epoch"]), inputs["prev"], inputs["actor"].decode(),
        _int(inputs["action"]), inputs["target"].decode(), _int(inputs["role"]),
        inputs["name"].decode(), _int(inputs["made_at"])), key)
    return {"body": change.body, "signature": change.signature, "change": change.encode(),
            "digest": change.digest}


INPUTS: Vector = {
    "actor.seed": bytes(range(0x40, 0x60)),
    "group_id": bytes(range(0xc0, 0xd0)),
    "epoch": (2).to_bytes(8, "big"),
    "prev": bytes(range(0x80, 0xa0)),
    "actor": b"alice",
    "action": b"\x02",
    "target": b"bob",
    "role": b"\x00",
    "name": b"",
    "made_at": (1_780_000_000).to_bytes(8, "big"),
}


def render(inputs: Vector) -> str:
    """The vector as it appears in docs/protocol.rst."""
    return render_vector("group-change", INPUT_FIELDS + OUTPUT_FIELDS,
                         {**inputs, **COMPUTE(inputs)}, _TEXT)


if __name__ == "__main__":
    print(render(INPUTS))
