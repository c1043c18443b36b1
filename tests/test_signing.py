"""
Tests for L{securechat.signing} and the protocol adapter's signing step: a
key held elsewhere signs through a runner (a thread in real use), the
handshake waits for it, a timeout gives up on it, and a connection that goes
away meanwhile drops the answer.  A fake token answers when the test says;
no threads, no real time.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from securechat import signing
from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.crypto.handshake import State
from securechat.crypto.signer import MemorySigner, SigningError
from securechat.protocol import SecureChatProtocol
from securechat.server.directory import UserEntry
from securechat.wire.messages import UserIdentity
from securechat.wire.relay import FROM_SERVER
from tests.relay_harness import Harness, RecordingClient
from tests.test_handshake_signing import FakeToken

TINA = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)


class Later:
    """A runner that records each blocking call and answers when told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, f: Any, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((f, args, d))
        return d

    def answer(self) -> None:
        f, args, d = self.calls.pop(0)
        d.callback(f(*args))


def connect(h: Harness, runner: Later) -> tuple[RecordingClient, SecureChatProtocol, Any]:
    h.directory.add(UserEntry("tina", TINA.public_key()))
    client = RecordingClient("tina")
    config = Config(CLIENT_SERVER, Role.INITIATOR, FakeToken(TINA), UserIdentity("tina"),
                    registry=FROM_SERVER)
    proto = SecureChatProtocol(config, client, h.clock, handshake_timeout=1e9, sign_runner=runner)
    link = h.network.connect(proto, h.factory.buildProtocol(None))
    return client, proto, link


class AdapterSigningTests(unittest.TestCase):
    """
    The protocol adapter drives WAIT_SIGN.
    """

    def test_answersLater(self) -> None:
        """
        The login waits, in WAIT_SIGN, for the token's answer, which the
        adapter asked for through the runner (not on the reactor thread);
        once it comes the login completes.
        """
        h, runner = Harness(), Later()
        client, proto, _ = connect(h, runner)
        h.pump()
        self.assertEqual(proto.connection.state, State.WAIT_SIGN)
        self.assertEqual(len(runner.calls), 1)
        self.assertFalse(client.logged_in)
        runner.answer()
        h.pump()
        self.assertTrue(client.logged_in)

    def test_connectionLostWhileSigning(self) -> None:
        """
        The connection goes away while the token signs: the request is
        cancelled, and its late answer changes nothing.
        """
        h, runner = Harness(), Later()
        client, proto, link = connect(h, runner)
        h.pump()
        d = runner.calls[0][2]
        link.close(ConnectionError("gone"))
        h.pump()
        self.assertTrue(client.ended)
        self.assertEqual(client.error.code, "connection-closed")  # type: ignore[union-attr]
        self.assertTrue(d.called)  # cancelled
        self.assertIsNone(proto._pending_signature)

    def test_timeoutFailsTheLogin(self) -> None:
        """
        No answer within sign_timeout: the login fails with signing-failed
        and one line, and the peer's handshake is not left waiting.
        """
        h, runner = Harness(), Later()
        client, proto, _ = connect(h, runner)
        h.pump()
        h.network.advance(signing.DEFAULT_SIGN_TIMEOUT - 0.1)
        self.assertFalse(client.ended)
        h.network.advance(0.1)
        h.pump()
        self.assertTrue(client.ended)
        self.assertEqual(client.error.code, "signing-failed")  # type: ignore[union-attr]
        self.assertIn("did not answer within 5 seconds", client.error.detail)  # type: ignore[union-attr]


class SignLaterTests(unittest.TestCase):
    """
    sign_later itself.
    """

    def test_memoryKeySignsAtOnce(self) -> None:
        """
        A key in memory never goes to a thread: the Deferred has fired.
        """
        runner = Later()
        d = signing.sign_later(MemorySigner(TINA), b"m", Clock(), run=runner)
        keys.verify(TINA.public_key(), keys.ED25519, self.successResultOf(d), b"m")
        self.assertEqual(runner.calls, [])

    def test_tokenErrorPassesThrough(self) -> None:
        """
        The token's own one-line error reaches the caller as it is.
        """
        class Failing(FakeToken):
            def sign_blocking(self, message: bytes) -> bytes:
                raise SigningError("token 'x' refused to sign (FunctionFailed)")
        runner = Later()
        d = signing.sign_later(Failing(TINA), b"m", Clock(), run=runner)
        f, args, inner = runner.calls[0]
        try:
            f(*args)
        except SigningError as e:
            inner.errback(e)
        self.assertEqual(str(self.failureResultOf(d, SigningError).value),
                         "token 'x' refused to sign (FunctionFailed)")

    def test_otherErrorsBecomeOneLine(self) -> None:
        """
        Anything else the binding raises becomes one line naming its type,
        not a traceback.
        """
        runner = Later()
        d = signing.sign_later(FakeToken(TINA), b"m", Clock(), run=runner)
        runner.calls[0][2].errback(RuntimeError("boom\ninternal"))
        self.assertEqual(str(self.failureResultOf(d, SigningError).value),
                         "the token failed to sign (RuntimeError)")

    def test_cancelPassesThrough(self) -> None:
        """
        A request cancelled by its caller (the connection went away) is a
        CancelledError, not a token failure, and does not break the key.
        """
        token = FakeToken(TINA)
        runner = Later()
        d = signing.sign_later(token, b"m", Clock(), run=runner)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertIsNone(token.broken)
