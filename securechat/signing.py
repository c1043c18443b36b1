# -*- test-case-name: tests.test_signing -*-
"""
Signing with a key held elsewhere without blocking the reactor: the
token's sign call runs in a thread, with a timeout.

The thread is a daemon thread of its own (L{in_daemon_thread}), not one of
the reactor's pool (C{deferToThread}): a token that hangs for good would
hold a pool thread that the reactor joins when it stops, and the client
would hang on exit.  A daemon thread is abandoned at exit instead.

A token that does not answer in time, or was removed, signs no more: its
key is marked broken (L{ExternalKey.broken}) and every later request fails
at once with the same line, so the client stops signing and says so
instead of hanging.  For the handshake (L{securechat.protocol}) and for
anything else that signs with the user's key (the mailbox's letters,
receipts and prekeys): one call, L{sign_later}.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from securechat.crypto.signer import ExternalKey, ISigner, SigningError

#: Seconds a token may take for one signature before it is given up on:
#: well inside the relay's default handshake timeout (10 seconds), so the
#: user hears about the token rather than about a timed-out login.  A card
#: makes an RSA-2048 signature in about a second.
DEFAULT_SIGN_TIMEOUT = 5.0

#: Runs a blocking call in a thread and returns a Deferred of its result
#: (L{in_daemon_thread}; tests inject one that answers when they say).
ThreadRunner = Callable[..., "Deferred[Any]"]


def _start_daemon(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="securechat-token", daemon=True).start()


def _call_from_thread(f: Callable[..., Any], *args: Any) -> None:
    from twisted.internet import reactor
    reactor.callFromThread(f, *args)  # type: ignore[attr-defined]


def in_daemon_thread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """
    Call C{f(*args)} in a new daemon thread; the Deferred fires in the
    reactor thread with its result.  Cancelling it drops the late result.
    """
    d: Deferred[Any] = Deferred()

    def work() -> None:
        try:
            result = f(*args)
        except BaseException:
            _call_from_thread(d.errback, Failure())
        else:
            _call_from_thread(d.callback, result)
    _start_daemon(work)
    return d


def sign_later(signer: ISigner, message: bytes, clock: IReactorTime,
               timeout: float = DEFAULT_SIGN_TIMEOUT,
               run: ThreadRunner | None = None) -> Deferred[bytes]:
    """
    C{signer}'s signature of C{message}: at once for a key in memory, else
    from a thread, failing with L{SigningError} (one line) when the key
    cannot sign or does not answer within C{timeout} seconds.  C{run}
    runs the blocking call (default L{in_daemon_thread}).
    """
    if not isinstance(signer, ExternalKey):
        try:
            return succeed(signer.sign_blocking(message))
        except SigningError:
            return fail()
    if signer.broken is not None:
        return fail(SigningError(signer.broken))
    d: Deferred[bytes] = (run or in_daemon_thread)(signer.sign_blocking, message)

    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        d.cancel()  # the thread may go on; its answer is dropped
    timer = clock.callLater(timeout, expire)

    def stop_timer(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        return result

    def failed(failure: Failure) -> Failure:
        if expired and failure.check(CancelledError):
            line = (f"the token did not answer within {timeout:g} seconds: no more signing "
                    "with it (is it still inserted?); restart the client once it is")
            if isinstance(signer, ExternalKey):
                signer.broken = line
            return Failure(SigningError(line))
        if failure.check(SigningError, CancelledError):
            return failure  # cancelled: the caller went away
        # Anything else from the binding: one line, no traceback for the user.
        kind = getattr(failure.type, "__name__", "error")
        return Failure(SigningError(f"the token failed to sign ({kind})"))

    d.addBoth(stop_timer)
    d.addErrback(failed)
    return d


__all__ = ["DEFAULT_SIGN_TIMEOUT", "ThreadRunner", "in_daemon_thread", "sign_later"]
