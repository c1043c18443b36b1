# -*- test-case-name: tests.test_key_history -*-
"""
Which of a user's previous keys may verify a letter or a receipt
(docs/protocol.rst 14.9; docs/security.rst, "Previous keys").

After C{securechat-admin rekey} the relay serves the replaced keys with
the time each was replaced and, for a key replaced because it was
compromised, the time from which it is held to be compromised
(L{securechat.wire.keyhistory}).  A signature by a previous key counts
only when all of these hold, checked in this order for the first key of
the history whose signature verifies:

  1. this client pinned that key for that user itself (a key the relay
     says the user had, but that was never pinned here, could be the
     relay's own: C{unpinned-key});
  2. the key is not marked compromised, or the relay stored the letter or
     receipt before the compromise time (C{key-compromised});
  3. the relay stored it before the key was replaced (C{key-replaced}).

No key of the history verifies the signature: C{bad-signature}, as with
the current key alone.  The times are the relay's clock, compared with
the time the relay stored the letter (C{stored_at}) or the receipt
(C{delivered_at}, C{read_at}).

Pure: no IO, no clock (times are arguments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from securechat.crypto import keys
from securechat.crypto.prekeys import LetterError


@dataclass(frozen=True)
class PreviousKey:
    """
    One key a user had before: when it was added and replaced, and from
    when it is held to be compromised (0: it is not).
    """

    key: keys.PublicKey
    added_at: int
    replaced_at: int
    compromised_at: int = 0


def load_history(entries: Iterable[tuple[bytes, int, int, int]]) -> list[PreviousKey]:
    """
    The previous keys from KEY_HISTORY entries C{(der, added_at,
    replaced_at, compromised_at)}; an entry whose key does not load is left
    out (it could verify nothing).
    """
    history = []
    for der, added_at, replaced_at, compromised_at in entries:
        try:
            key = keys.load_public_key_der(der)
        except keys.KeyFormatError:
            continue
        history.append(PreviousKey(key, added_at, replaced_at, compromised_at))
    return history


def previous_signer(verifies: Callable[[keys.PublicKey], bool], history: Sequence[PreviousKey],
                    stored_at: int, pinned: Callable[[keys.PublicKey], bool], signer: str) -> PreviousKey:
    """
    The previous key of C{signer} that may verify a signature the current
    key did not (see the module docstring).  C{verifies} says whether a key
    verifies it, C{pinned} whether this client pinned a key for C{signer},
    C{stored_at} is when the relay stored what was signed.

    @raise LetterError: C{bad-signature}, C{unpinned-key},
        C{key-compromised}, C{key-replaced}.
    """
    for previous in history:
        if not verifies(previous.key):
            continue
        fingerprint = keys.fingerprint(previous.key)
        if not pinned(previous.key):
            raise LetterError("unpinned-key", f"signed with a key the relay says {signer} had before "
                              f"({fingerprint}), which was never pinned for {signer} here")
        if previous.compromised_at and stored_at >= previous.compromised_at:
            raise LetterError("key-compromised", f"signed with {signer}'s previous key {fingerprint}, "
                              "stored after it was marked compromised")
        if stored_at >= previous.replaced_at:
            raise LetterError("key-replaced", f"signed with {signer}'s previous key {fingerprint}, "
                              "stored after it was replaced")
        return previous
    raise LetterError("bad-signature", f"not signed by {signer}'s key, nor by a key {signer} had before")
