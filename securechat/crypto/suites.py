# -*- test-case-name: tests.test_records -*-
"""
The AEAD suites a connection can negotiate, by code point.

Adding a suite is one row in L{SUITES}; nothing else branches on the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305


class AEAD(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(
        self, nonce: bytes, data: bytes | memoryview, associated_data: bytes | None
    ) -> bytes: ...


@dataclass(frozen=True)
class Suite:
    """
    One AEAD suite: its code point, name, key length and constructor.
    Every suite here has a 12-byte nonce and a 16-byte tag.
    """

    code: int
    name: str
    key_length: int
    factory: Callable[[bytes], AEAD]

    nonce_length = 12
    tag_length = 16


AES_256_GCM = Suite(0x0001, "AES-256-GCM", 32, AESGCM)
CHACHA20_POLY1305 = Suite(0x0002, "CHACHA20-POLY1305", 32, ChaCha20Poly1305)

#: Every suite this implementation speaks, by code point.
SUITES: dict[int, Suite] = {s.code: s for s in (AES_256_GCM, CHACHA20_POLY1305)}

#: What an initiator offers unless configured otherwise, most preferred first
#: (AES-256-GCM seals a 100-byte record in about half the time of
#: ChaCha20-Poly1305 where the CPU has AES instructions, as servers do).
DEFAULT_OFFER: tuple[int, ...] = (AES_256_GCM.code, CHACHA20_POLY1305.code)
