"""
The test vectors of docs/protocol.rst, section 13: fixed inputs, and the
values the implementation produces from them.

C{python -m tests.vectors} prints the vectors in the document's format (for
maintainers, when a deliberate wire change needs new vectors);
L{tests.test_vectors} checks the document against L{compute}.
"""

from __future__ import annotations

import re
from typing import Collection, Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from securechat.crypto.config import CLIENT_SERVER, END_TO_END, Config, Role
from securechat.crypto.events import HandshakeComplete, PeerIdentityReceived
from securechat.crypto.handshake import Connection
from securechat.crypto.schedule import (
    expand_label,
    handshake_secret,
    sha256,
    traffic_keys,
    next_traffic_secret,
)
from securechat.crypto.suites import SUITES
from securechat.wire.messages import CertificateIdentity, Identity, Ping, UserIdentity

Vector = dict[str, bytes]


class SequenceRandom:
    """
    Returns the given byte strings in order, each exactly once.
    """

    def __init__(self, *values: bytes) -> None:
        self._values = list(values)

    def __call__(self, n: int) -> bytes:
        value = self._values.pop(0)
        assert len(value) == n, (len(value), n)
        return value


def _split_frames(data: bytes) -> list[bytes]:
    frames = []
    while data:
        end = 4 + int.from_bytes(data[:4], "big")
        frames.append(data[:end])
        data = data[end:]
    return frames


def compute(inputs: Vector) -> Vector:
    """
    Run a whole handshake from C{inputs} (the vector's input fields) and
    return every output field.
    """
    return handshake(inputs)[2]


def connections(inputs: Vector) -> tuple[Connection, Connection]:
    """
    The initiator and the responder of C{inputs}, before anything is sent.
    """
    return _connections(inputs)[:2]


def _connections(inputs: Vector) -> tuple[
        Connection, Connection, ed25519.Ed25519PrivateKey, ed25519.Ed25519PrivateKey]:
    context = inputs["context"][0]
    suites = tuple(int.from_bytes(inputs["suites"][i:i + 2], "big")
                   for i in range(0, len(inputs["suites"]), 2))
    i_key = ed25519.Ed25519PrivateKey.from_private_bytes(inputs["initiator.seed"])
    r_key = ed25519.Ed25519PrivateKey.from_private_bytes(inputs["responder.seed"])
    i_identity = UserIdentity(inputs["initiator.name"].decode())
    r_identity: Identity
    if context == CLIENT_SERVER:
        r_identity = CertificateIdentity((inputs["responder.certificate"],), inputs["responder.crl"])
    else:
        r_identity = UserIdentity(inputs["responder.name"].decode())
    initiator = Connection(Config(
        context, Role.INITIATOR, i_key, i_identity, suites=suites,
        random=SequenceRandom(inputs["initiator.nonce"], inputs["initiator.ephemeral"])))
    responder = Connection(Config(
        context, Role.RESPONDER, r_key, r_identity,
        random=SequenceRandom(inputs["responder.nonce"], inputs["responder.ephemeral"])))
    return initiator, responder, i_key, r_key


def handshake(inputs: Vector) -> tuple[Connection, Connection, Vector]:
    """
    The initiator and responder of a whole handshake from C{inputs}, each
    left as L{compute} leaves it (the responder has answered
    C{initiator.record0}; C{initiator.record1} is sent, not received),
    and every output field.
    """
    initiator, responder, i_key, r_key = _connections(inputs)
    context = inputs["context"][0]
    out: Vector = {}
    initiator.initiate()
    out["hello"] = initiator.data_to_send()
    responder.receive_data(out["hello"])
    out["hello_reply"], out["responder.auth_record"] = _split_frames(responder.data_to_send())
    [claim] = initiator.receive_data(out["hello_reply"] + out["responder.auth_record"])
    assert isinstance(claim, PeerIdentityReceived)
    [done] = initiator.accept_peer(r_key.public_key())
    assert isinstance(done, HandshakeComplete)
    initiator.send(Ping(inputs["ping"]))
    out["initiator.auth_record"], out["initiator.record0"] = _split_frames(initiator.data_to_send())
    [claim] = responder.receive_data(out["initiator.auth_record"] + out["initiator.record0"])
    events = responder.accept_peer(i_key.public_key())
    assert isinstance(events[0], HandshakeComplete), events
    out["responder.record0"] = responder.data_to_send()  # the automatic PONG
    initiator.send(Ping(inputs["ping"]))
    out["initiator.record1"] = initiator.data_to_send()

    # Intermediate values, recomputed with the key schedule alone.
    eph = X25519PrivateKey.from_private_bytes(inputs["initiator.ephemeral"])
    peer_share = out["hello_reply"][7 + 32:7 + 64]
    out["shared"] = eph.exchange(X25519PublicKey.from_public_bytes(peer_share))
    out["hs"] = handshake_secret(context, out["shared"])
    out["th_hs"] = sha256(out["hello"] + out["hello_reply"])
    out["hs_i"] = expand_label(out["hs"], b"i hs traffic", out["th_hs"], 32)
    out["hs_r"] = expand_label(out["hs"], b"r hs traffic", out["th_hs"], 32)
    suite = SUITES[int.from_bytes(out["hello_reply"][-2:], "big")]
    out["hs_r.key"], out["hs_r.iv"] = traffic_keys(suite, out["hs_r"])
    auth_r = _open_auth(out["responder.auth_record"], suite, out["hs_r"])
    auth_i = _open_auth(out["initiator.auth_record"], suite, out["hs_i"])
    out["responder.auth"], out["initiator.auth"] = auth_r, auth_i
    out["th_all"] = sha256(out["hello"] + out["hello_reply"] + auth_r + auth_i)
    out["ap_i"] = expand_label(out["hs"], b"i ap traffic", out["th_all"], 32)
    out["ap_r"] = expand_label(out["hs"], b"r ap traffic", out["th_all"], 32)
    out["ap_i.key"], out["ap_i.iv"] = traffic_keys(suite, out["ap_i"])
    out["ap_i.next"] = next_traffic_secret(out["ap_i"])
    return initiator, responder, out


def _open_auth(record: bytes, suite, secret: bytes) -> bytes:  # type: ignore[no-untyped-def]
    """
    Decrypt a handshake record (counter 0) and return the AUTH body.
    """
    key, iv = traffic_keys(suite, secret)
    plaintext = suite.factory(key).decrypt(iv, record[13:], record[:13])
    assert plaintext[0] == 0x03
    return plaintext[5:]


END_TO_END_INPUTS: Vector = {
    "context": bytes([END_TO_END]),
    "suites": bytes.fromhex("00010002"),
    "initiator.name": b"alice",
    "initiator.seed": bytes(range(0x00, 0x20)),
    "initiator.nonce": bytes(range(0x20, 0x40)),
    "initiator.ephemeral": bytes(range(0x40, 0x60)),
    "responder.name": b"bob",
    "responder.seed": bytes(range(0x60, 0x80)),
    "responder.nonce": bytes(range(0x80, 0xA0)),
    "responder.ephemeral": bytes(range(0xA0, 0xC0)),
    "ping": b"hello bob",
}

INPUT_FIELDS = (
    "context", "suites", "initiator.name", "initiator.seed", "initiator.nonce",
    "initiator.ephemeral", "responder.name", "responder.seed", "ca.certificate",
    "responder.certificate", "responder.crl", "responder.nonce", "responder.ephemeral", "ping",
)
OUTPUT_FIELDS = (
    "hello", "hello_reply", "shared", "hs", "th_hs", "hs_i", "hs_r", "hs_r.key", "hs_r.iv",
    "responder.auth", "responder.auth_record", "initiator.auth", "initiator.auth_record",
    "th_all", "ap_i", "ap_r", "ap_i.key",
    "ap_i.iv", "ap_i.next", "initiator.record0", "responder.record0", "initiator.record1",
)

_TEXT_FIELDS = {"initiator.name", "responder.name", "ping"}


def render_vector(name: str, fields: Sequence[str], values: Vector,
                  text_fields: Collection[str]) -> str:
    """
    The vector C{name} as it appears in docs/protocol.rst: each of C{fields}
    from C{values} in order, those in C{text_fields} as quoted text and the
    others as hex, 64 digits a line.  Every section 13 vector is rendered
    here (L{parse} reads them back).
    """
    lines = [f".. begin vector {name}", "", "::", ""]
    for field in fields:
        value = values[field]
        if field in text_fields:
            lines.append(f"    {field} = \"{value.decode()}\"")
            continue
        hexed = value.hex()
        lines.append(f"    {field} = {hexed[:64]}")
        for i in range(64, len(hexed), 64):
            lines.append(f"        {hexed[i:i + 64]}")
    lines += ["", f".. end vector {name}", ""]
    return "\n".join(lines)


def render(name: str, inputs: Vector, outputs: Vector) -> str:
    """
    The handshake vector as it appears in docs/protocol.rst (the fields
    neither C{inputs} nor C{outputs} has are left out).
    """
    values = {**outputs, **inputs}
    present = [field for field in INPUT_FIELDS + OUTPUT_FIELDS if field in values]
    return render_vector(name, present, values, _TEXT_FIELDS)


def parse(text: str) -> dict[str, Vector]:
    """
    Every vector in C{text} (the document), by name.
    """
    vectors: dict[str, Vector] = {}
    for match in re.finditer(r"^\.\. begin vector (\S+)\n(.*?)^\.\. end vector \1$", text, re.M | re.S):
        fields: Vector = {}
        current = None
        for line in match.group(2).splitlines():
            m = re.match(r"^    (\S+) = (.*)$", line)
            if m:
                current, raw = m.group(1), m.group(2)
                if raw.startswith('"'):
                    fields[current] = raw.strip('"').encode()
                    current = None
                else:
                    fields[current] = bytes.fromhex(raw)
            elif line.startswith("        ") and current is not None:
                fields[current] += bytes.fromhex(line.strip())
        vectors[match.group(1)] = fields
    return vectors


def inputs_of(vector: Vector) -> Vector:
    return {k: v for k, v in vector.items() if k in INPUT_FIELDS}


#: The moment at which the client-server vector's certificates are checked.
CLIENT_SERVER_NOW = "2026-06-01T12:00:00Z"


def make_client_server_inputs() -> Vector:
    """
    Fresh certificate material for a client-server vector (random serials
    and ECDSA signatures: run once, then keep what the document holds).
    """
    import datetime

    from cryptography.hazmat.primitives import serialization

    from securechat import pki
    from securechat.crypto.config import CLIENT_SERVER

    seed = bytes(range(0xC0, 0xE0))
    server_key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    ca_key, ca = pki.new_ca("securechat test-vector CA", start, days=3650)
    cert = pki.issue_server_certificate(ca_key, ca, server_key.public_key(), ["localhost"], start, 3650)
    crl = pki.issue_crl(ca_key, ca, [], 1, start, 3650)
    der = serialization.Encoding.DER
    inputs = dict(END_TO_END_INPUTS)
    del inputs["responder.name"]
    inputs.update({
        "context": bytes([CLIENT_SERVER]),
        "responder.seed": seed,
        "ca.certificate": ca.public_bytes(der),
        "responder.certificate": cert.public_bytes(der),
        "responder.crl": crl.public_bytes(der),
        "ping": b"hello relay",
    })
    return inputs


if __name__ == "__main__":
    import pathlib
    import sys

    doc = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.rst").read_text()
    if "--new-client-server" in sys.argv:
        fresh = make_client_server_inputs()
        print(render("client-server", fresh, compute(fresh)))
    else:
        # Re-render every vector's outputs from the document's own inputs.
        from tests import change_vectors, group_vectors, letter_vectors
        for name, vector in parse(doc).items():
            if name == "group-change":
                change_inputs = {k: v for k, v in vector.items() if k in change_vectors.INPUT_FIELDS}
                print(change_vectors.render(change_inputs))
                continue
            if name == "group-message":
                group_inputs = {k: v for k, v in vector.items() if k in group_vectors.GROUP_INPUT_FIELDS}
                print(group_vectors.render(group_inputs, group_vectors.compute_group_message(group_inputs)))
                continue
            if name in letter_vectors.COMPUTE:
                fields, _, compute_one = letter_vectors.COMPUTE[name]
                mailbox_inputs = {k: v for k, v in vector.items() if k in fields}
                print(letter_vectors.render(name, mailbox_inputs, compute_one(mailbox_inputs)))
                continue
            inputs = inputs_of(vector)
            print(render(name, inputs, compute(inputs)))
