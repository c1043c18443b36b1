# -*- test-case-name: tests.test_client_letters -*-
"""
Our prekeys on the relay: the part of L{securechat.client.letters.Mailbox}
that makes, signs and uploads the signed prekey and keeps the one-time
prekeys stocked (docs/protocol.rst, 14.1 and 14.7).

A new signed prekey is signed with the user's key through the mailbox's
L{securechat.client.signqueue.SigningQueue} (on a token: in a thread, in
turn with letters and receipts).  While its signature is pending no other
one is made: a rotation or a PREKEYS_LOW meanwhile uploads one-time
prekeys only, and the new signed prekey goes up (kept on disk first) once
signed.  A signature that fails is told in one line, and the client does
not try to rotate again in this session (a token that failed once would
fail on every message from the relay).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from securechat.client.letterstore import LetterStore
from securechat.client.signqueue import SigningQueue
from securechat.crypto.prekeys import (
    MAX_ONE_TIME_UPLOAD,
    LetterError,
    SignedPrekey,
    encode_one_time_prekeys,
    generate_one_time_prekeys,
    prepare_signed_prekey,
    verify_signed_prekey,
)
from securechat.crypto.signer import ISigner
from securechat.wire.mailbox import PrekeysLow, PrekeysStored, UploadPrekeys

if TYPE_CHECKING:
    from securechat.client.core import ChatClient
    from securechat.client.view import ChatView

DAY = 24 * 3600
#: A signed prekey is replaced after this long (the reference client's 7 days).
ROTATE_AFTER = 7 * DAY
#: How many one-time prekeys the client keeps on the relay.
ONE_TIME_STOCK = 100


class PrekeyUploads:
    """
    Our prekeys on the relay (a base of the mailbox).
    """

    client: ChatClient
    store: LetterStore
    signer: ISigner
    signing: SigningQueue
    view: ChatView
    #: For each upload not yet answered: whether it carried one-time prekeys.
    _uploads: deque[bool]
    #: While a new signed prekey is being signed: the one-time prekeys to
    #: upload with it (None when no signature is pending).
    _prekey_signing: int | None = None
    #: Why signing a signed prekey failed in this session, if it did.
    _prekey_failed: str | None = None

    def _now(self) -> int:
        return int(self.client.clock())

    @property
    def _refilling(self) -> bool:
        """Whether one-time prekeys are on their way (sent, or waiting for a signature)."""
        return any(self._uploads) or bool(self._prekey_signing)

    def _rotate_if_due(self) -> None:
        """
        In a long session: replace the signed prekey once it is due (each
        mailbox message from the relay is a moment to check).
        """
        if self._uploads or self._prekey_signing is not None or self._prekey_failed is not None:
            return
        current = self.store.current_signed()
        if current is not None and self._now() - current[1] >= ROTATE_AFTER:
            self._send_prekeys(0)

    def _send_prekeys(self, refill: int, force: bool = False) -> None:
        """
        Upload our signed prekey with C{refill} one-time prekeys: a new
        signed prekey (signed first) when there is none, the current one
        is due for rotation or is not signed by our key (the operator
        re-keyed us, 14.1), the current one if the relay has not confirmed
        it (or C{force}), else one-time prekeys only.
        """
        now = self._now()
        current = self.store.current_signed()
        if self._prekey_signing is not None:
            self._upload(b"", refill)  # the new signed prekey goes up once signed
        elif current is None or now - current[1] >= ROTATE_AFTER or not self._ours(current[3]):
            self._sign_prekey(now, refill)
        else:
            self._upload(current[3] if force or not current[2] else b"", refill)

    def _ours(self, encoded: bytes) -> bool:
        """Whether the signed prekey C{encoded} verifies for us with our key."""
        try:
            verify_signed_prekey(self.client.user, SignedPrekey.parse(encoded),
                                 self.client.private_key.public_key())
        except LetterError:
            return False
        return True

    def _sign_prekey(self, now: int, refill: int) -> None:
        prekey_id = self.store.next_prekey_ids(1)
        to_sign, private = prepare_signed_prekey(self.client.user, prekey_id, now)
        self._prekey_signing = refill

        def signed(signature: bytes) -> None:
            refill, self._prekey_signing = self._prekey_signing or 0, None
            encoded = to_sign.signed(self.signer.scheme, signature).encode()
            self.store.add_signed(prekey_id, private, encoded, now)  # on disk before it is sent
            self._upload(encoded, refill)

        def failed(line: str) -> None:
            self._prekey_signing = None
            self._prekey_failed = line
            self.view.notice(f"our new signed prekey was not signed, so letters to us may fail: {line}")
        self.signing.submit(to_sign.message, signed, failed)

    def _upload(self, signed: bytes, refill: int) -> None:
        one_time = b""
        if refill > 0:
            count = min(refill, MAX_ONE_TIME_UPLOAD)
            fresh = generate_one_time_prekeys(self.store.next_prekey_ids(count), count)
            self.store.add_one_time([(p.prekey_id, k) for p, k in fresh])
            one_time = encode_one_time_prekeys([p for p, _ in fresh])
        if (signed or one_time) and self.client._send(UploadPrekeys(signed, one_time), quiet=True):
            self._uploads.append(bool(one_time))

    def _prekeys_stored(self, message: PrekeysStored) -> None:
        refill = self._uploads.popleft() if self._uploads else False
        if message.signed_prekey_id:
            self.store.mark_signed_uploaded(message.signed_prekey_id)
        if not refill and message.one_time_count == 0 and not self._refilling:
            # The relay holds none (a new relay, or its copy was lost): the
            # answer to a signed-prekey-only upload says so.
            self._upload(b"", ONE_TIME_STOCK)

    def _prekeys_low(self, message: PrekeysLow) -> None:
        if self._refilling:
            return  # an upload is on its way; the relay's count did not see it yet
        self._send_prekeys(ONE_TIME_STOCK - message.one_time_count, force=not message.has_signed_prekey)
