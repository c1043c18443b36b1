# -*- test-case-name: tests.test_client_letters_signing -*-
"""
The mailbox's signatures, one at a time and in order: a signed prekey, a
letter or a receipt is signed with the user's key (in memory, or on a
token in a thread: L{securechat.protocol.SecureChatProtocol.sign_later}),
then assembled and sent by its continuation, I{before} the next
signature is asked for.  So what the user did first goes out first, and
nothing is sent before it is signed.

A key in memory signs at once: each job runs to its end inside
L{SigningQueue.submit}, exactly as the synchronous code did.  A signature
that fails (token removed, PIN locked, not answering) fails that job with
one line (L{securechat.crypto.signer.SigningError}) and the queue goes on
with the next (which, for a token marked broken, fails at once too).
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from securechat.crypto.signer import SigningError

#: Signs some bytes, later (a Deferred of the signature).
SignLater = Callable[[bytes], "Deferred[bytes]"]


class SigningQueue:
    """
    Signatures asked for one after another (see the module docstring).
    """

    log = Logger()

    def __init__(self, sign_later: SignLater) -> None:
        self._sign_later = sign_later
        self._jobs: deque[tuple[bytes, Callable[[bytes], None], Callable[[str], None]]] = deque()
        self._busy = False

    def submit(self, message: bytes, signed: Callable[[bytes], None], failed: Callable[[str], None]) -> None:
        """
        Sign C{message} after every job submitted before, then call
        C{signed(signature)}, or C{failed(line)} if the key could not sign.
        """
        self._jobs.append((message, signed, failed))
        self._next()

    def _next(self) -> None:
        if self._busy or not self._jobs:
            return
        message, signed, failed = self._jobs.popleft()
        self._busy = True

        def refused(failure: Failure) -> None:
            if failure.check(SigningError):
                failed(str(failure.value) or "the key could not sign")
            elif failure.check(CancelledError):
                failed("signing was cancelled")
            else:
                failure.raiseException()

        def done(result: object) -> None:
            if isinstance(result, Failure):
                self.log.failure("a mailbox signature's continuation failed", result)
            self._busy = False
            self._next()

        d = self._sign_later(message)
        d.addCallbacks(signed, refused)
        d.addBoth(done)


__all__ = ["SignLater", "SigningQueue"]
