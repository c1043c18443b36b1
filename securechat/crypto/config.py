# -*- test-case-name: tests.test_handshake -*-
"""
What one side of a handshake is set up with: the two contexts, the role,
the limits the specification fixes, and L{Config}, everything a
L{securechat.crypto.handshake.Connection} needs.  No IO, no Twisted.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Callable

from securechat.crypto import keys
from securechat.crypto.signer import ExternalKey
from securechat.crypto.suites import DEFAULT_OFFER
from securechat.wire.messages import CORE_MESSAGES, Identity, Registry

CLIENT_SERVER = 1
END_TO_END = 2

#: Records per traffic secret before both sides ratchet it (docs/protocol.rst,
#: "Key update").  End-to-end chats ratchet on every record.
REKEY_INTERVAL = {CLIENT_SERVER: 2**20, END_TO_END: 1}

#: Consecutive keepalive-only records the relay tolerates from a client; one
#: more is C{limit-exceeded} (docs/protocol.rst, 4.4).
MAX_KEEPALIVE_RUN = 32

DEFAULT_MAX_HANDSHAKE_FRAME = 16 * 1024
DEFAULT_MAX_FRAME = 64 * 1024


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"



@dataclass(frozen=True)
class Config:
    """
    Everything one side of a connection needs.

    @ivar private_key: our long-term key: in memory (signed with at once),
        or an L{ExternalKey} (a token: the handshake asks for the signature
        with a L{SignatureNeeded} event).
    @ivar identity: what we send to prove who we are; the private key must
        belong to it (the server certificate's key, or the user's key).
    @ivar registry: the inner messages the application speaks, on top of
        L{CORE_MESSAGES}.
    @ivar random: source of nonces and ephemeral keys; tests inject a fixed
        one to reproduce the vectors of docs/protocol.rst.
    @ivar rekey_interval: records per traffic secret; C{None} means the
        value the specification fixes for the context.  Both sides must agree.
    """

    context: int
    role: Role
    private_key: keys.PrivateKey | ExternalKey
    identity: Identity
    suites: tuple[int, ...] = DEFAULT_OFFER
    registry: Registry = CORE_MESSAGES
    max_handshake_frame: int = DEFAULT_MAX_HANDSHAKE_FRAME
    max_frame: int = DEFAULT_MAX_FRAME
    max_held: int = DEFAULT_MAX_FRAME * 2
    random: Callable[[int], bytes] = field(default=os.urandom, repr=False)
    #: Checks the peer's handshake signature (L{keys.verify}; tests inject
    #: one that counts its calls).
    verifier: keys.Verifier = field(default=keys.verify, repr=False)
    rekey_interval: int | None = None
    #: Keepalive-only records tolerated in a row (None: no limit).  The relay
    #: sets L{MAX_KEEPALIVE_RUN}; clients do not limit the relay's PINGs.
    max_keepalive_run: int | None = None
    #: Registered inner message types handed to the application undecoded,
    #: in L{RawMessages} events: the application parses them itself (the
    #: relay forwards RELAY bodies without building an object per message)
    #: and reports a malformed one with L{Connection.fail}.
    raw_types: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        unknown = [t for t in self.raw_types if t not in self.registry]
        if unknown:
            raise ValueError("raw_types not in the registry: "
                             + ", ".join(f"0x{t:02x}" for t in sorted(unknown)))



__all__ = [
    "CLIENT_SERVER", "DEFAULT_MAX_FRAME", "DEFAULT_MAX_HANDSHAKE_FRAME", "END_TO_END",
    "MAX_KEEPALIVE_RUN", "REKEY_INTERVAL", "Config", "Role",
]
