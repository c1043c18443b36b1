"""
The relay's view of a stored signed prekey (docs/protocol.rst 14.1): the
encoding as uploaded, and whether it still verifies with its owner's
current registered key (a re-keyed user's old prekeys do not).
"""

from __future__ import annotations

from securechat.crypto.prekeys import LetterError, SignedPrekey, verify_signed_prekey
from securechat.server.directory import UserEntry as DirectoryEntry
from securechat.server.store.interface import SignedPrekeyRecord


def uploaded_prekey(record: SignedPrekeyRecord) -> SignedPrekey:
    """The signed prekey as it was uploaded."""
    scheme = int.from_bytes(record.signature[:2], "big")
    return SignedPrekey(record.prekey_id, record.public, record.created_at, scheme,
                        record.signature[2:])


def uploaded_encoding(record: SignedPrekeyRecord) -> bytes:
    """The signed prekey's encoding (14.1), as it was uploaded."""
    return uploaded_prekey(record).encode()


def signed_by_current_key(record: SignedPrekeyRecord, entry: DirectoryEntry) -> bool:
    """Whether C{record} verifies for C{entry}'s user with its current key."""
    try:
        verify_signed_prekey(entry.name, uploaded_prekey(record), entry.public_key)
    except LetterError:
        return False
    return True
