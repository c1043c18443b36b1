"""
Keys on a PKCS#11 token, against a real SoftHSM2 token
(L{tests.token_fixture}): each key type signs what the protocol verifies,
logs in to a relay and chats end to end; and every failure is one line:
wrong PIN, PIN locked, token absent, key missing or ambiguous, mechanism
missing, token removed mid-session or not answering, a key that is not the
registered one.

The token's blocking sign call runs in the test's thread (a synchronous
C{sign_runner}) instead of the reactor's thread pool, so that no real
threads or time are involved; L{SigningOffReactorTests} shows the real
runner is a daemon thread of its own.
"""

from __future__ import annotations

import io
import os
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial import unittest

from securechat import signing, token
from securechat.admin.cli import main as admin_main
from securechat.client.cli import ClientError, is_final, read_key
from securechat.client.core import ChatClient
from securechat.client.pins import PinStore
from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER, Config, Role
from securechat.protocol import SecureChatProtocol
from securechat.server.directory import UserEntry
from securechat.wire.messages import UserIdentity
from securechat.wire.relay import FROM_SERVER
from tests.test_client_core import ChatHarness, RecordingView, verify_test_server
from tests.token_fixture import (
    KEY_TYPES,
    PIN,
    PIN_TOKEN,
    REMOVABLE,
    USER_TOKEN,
    SoftHSM,
    delete_token,
    softhsm,
)

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def in_this_thread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """A C{sign_runner} that calls the token here (tests use no threads)."""
    return maybeDeferred(f, *args)


class TokenCase(unittest.TestCase):
    """
    The SoftHSM2 token, and keys opened on it closed after each test.
    """

    def setUp(self) -> None:
        self.hsm: SoftHSM = softhsm(self)

    def key(self, label: str, tok: str = USER_TOKEN, **kw: Any) -> token.TokenKey:
        k = token.open_key(self.hsm.uri(label, tok), self.hsm.module, **kw)
        self.addCleanup(k.close)
        return k

    def refused(self, uri: str, **kw: Any) -> str:
        kw.setdefault("module", self.hsm.module)
        with self.assertRaises(token.TokenError) as e:
            k = token.open_key(uri, **kw)
            k.close()
        line = str(e.exception)
        self.assertNotIn("\n", line)
        return line


class TokenKeyTests(TokenCase):
    """
    Signing with each key type on the token, and reading its public key.
    """

    def test_eachKeyTypeSigns(self) -> None:
        """
        Ed25519 (CKM_EDDSA), ECDSA P-256 (CKM_ECDSA over a local SHA-256,
        turned into strict low-S DER) and RSA-PSS (CKM_RSA_PKCS_PSS,
        SHA-256, MGF1-SHA-256, salt 32) signatures from the token verify
        under the protocol's own rules (keys.verify), with the scheme of
        the public key read from the token.
        """
        schemes = {"ed25519": keys.ED25519, "p256": keys.ECDSA_P256_SHA256,
                   "rsa": keys.RSA_PSS_SHA256}
        for label in KEY_TYPES:
            k = self.key(label)
            self.assertEqual(k.scheme, schemes[label])
            for i in range(8 if label == "p256" else 1):
                message = b"transcript %d" % i
                signature = k.sign_blocking(message)
                keys.verify(k.public_key(), k.scheme, signature, message)
                if label == "p256":
                    _, s = decode_dss_signature(signature)
                    self.assertLessEqual(s, _P256_ORDER // 2)

    def test_publicKeyReadWithoutPin(self) -> None:
        """
        read_public_key (for add-user --from-token) reads the same public
        key without a PIN.
        """
        for label in KEY_TYPES:
            public = token.read_public_key(self.hsm.uri(label, pin=False), self.hsm.module)
            self.assertEqual(keys.public_key_der(public),
                             keys.public_key_der(self.key(label).public_key()))

    def test_pinFromFile(self) -> None:
        """
        pin-source=file:PATH reads the PIN from the file (one trailing
        newline ignored); a file that cannot be read is one line.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(PIN + "\n")
        k = token.open_key(f"pkcs11:token={USER_TOKEN};object=p256?pin-source=file:{path}",
                           self.hsm.module)
        self.addCleanup(k.close)
        self.assertEqual(k.scheme, keys.ECDSA_P256_SHA256)
        line = self.refused(f"pkcs11:token={USER_TOKEN};object=p256?pin-source=file:{path}.no")
        self.assertEqual(line, f"cannot read the PIN file {path}.no: No such file or directory")

    def test_pinValueWarns(self) -> None:
        """
        pin-value works but warns that the PIN is visible.
        """
        warned: list[str] = []
        self.key("ed25519", warn=warned.append)
        self.assertEqual(len(warned), 1)
        self.assertIn("the PIN is in the PKCS#11 URI (pin-value)", warned[0])

    def test_pinPrompt(self) -> None:
        """
        Without pin-source or pin-value the PIN is asked for with the
        token's label; with no terminal to ask on, one line says what to do.
        """
        asked: list[str] = []

        def prompt(text: str) -> str:
            asked.append(text)
            return PIN
        k = token.open_key(self.hsm.uri("rsa", pin=False), self.hsm.module, prompt=prompt)
        self.addCleanup(k.close)
        self.assertEqual(asked, [f"PIN for token {USER_TOKEN!r}: "])
        line = self.refused(self.hsm.uri("rsa", PIN_TOKEN, pin=False))
        self.assertEqual(line, f"token {PIN_TOKEN!r} needs a PIN: add pin-source=file:PATH to "
                               "the URI (standard input is not a terminal)")


class PinPadTests(unittest.TestCase):
    """
    A token with its own PIN pad (CKF_PROTECTED_AUTHENTICATION_PATH).
    SoftHSM2 has none, so the token's flags are played by a stand-in.
    """

    def test_pinPadUsed(self) -> None:
        """
        With no PIN in the URI, a token that has a PIN pad is logged in to
        through it (python-pkcs11's PROTECTED_AUTH), and the user is told to
        type the PIN there; no prompt on the terminal.
        """
        import pkcs11  # a test dependency (setup.cfg, extras "test")

        from securechat.p11uri import parse

        class PadToken:
            label = "card"
            flags = pkcs11.TokenFlag.PROTECTED_AUTHENTICATION_PATH
        said: list[str] = []

        def prompt(text: str) -> str:
            raise AssertionError("asked on the terminal")
        pin = token.read_pin(parse("pkcs11:token=card"), PadToken(), prompt, said.append)
        self.assertIs(pin, pkcs11.PROTECTED_AUTH)
        self.assertEqual(said, ["enter the PIN for token 'card' on its PIN pad"])


class TokenFailureTests(TokenCase):
    """
    Every way a token key fails, each in one line.
    """

    def test_wrongPin(self) -> None:
        """
        A wrong PIN is told with what the token says of the tries left
        (SoftHSM2 sets CKF_USER_PIN_COUNT_LOW after a failed login).
        """
        line = self.refused(f"pkcs11:token={PIN_TOKEN};object=ed25519?pin-value=000000")
        self.assertEqual(line, f"wrong PIN for token {PIN_TOKEN!r}; few tries left before the "
                               "PIN locks")

    def test_triesLeftFromFlags(self) -> None:
        """
        The token's flags become the clause: final try, locked, count low.
        (SoftHSM2 never locks a PIN or reaches the final try, so these are
        checked on the flags themselves.)
        """
        import pkcs11
        flag = pkcs11.TokenFlag
        self.assertEqual(token.tries_left(flag.USER_PIN_FINAL_TRY | flag.USER_PIN_COUNT_LOW),
                         "; one try left before the PIN locks")
        self.assertEqual(token.tries_left(flag.USER_PIN_LOCKED), "; the PIN is now locked")
        self.assertEqual(token.tries_left(0), "")

    def test_pinLocked(self) -> None:
        """
        A locked PIN (CKR_PIN_LOCKED from C_Login) is one line saying how
        to unblock it.  SoftHSM2 never locks, so the token's answer is
        played by a stand-in raising the binding's exception.
        """
        import pkcs11

        class Locked:
            label = "card"

            def open(self, **kw: Any) -> None:
                raise pkcs11.exceptions.PinLocked()
        with self.assertRaises(token.TokenError) as e:
            token.login(Locked(), "1234")
        self.assertEqual(str(e.exception), "the PIN of token 'card' is locked: unblock it with "
                                           "the security officer PIN (pkcs11-tool --unblock-pin)")

    def test_tokenAbsent(self) -> None:
        """
        No token with that label present: one line asking whether the card
        is inserted.
        """
        line = self.refused("pkcs11:token=absent;object=ed25519?pin-value=1")
        self.assertEqual(line, f"no token present matches token='absent' in {self.hsm.module} "
                               "(is the card or key inserted?)")

    def test_keyMissing(self) -> None:
        """
        No private key with that label: one line.
        """
        line = self.refused(self.hsm.uri("nothing"))
        self.assertEqual(line, f"no private key matches object='nothing' on token {USER_TOKEN!r}")

    def test_severalKeysMatch(self) -> None:
        """
        Two keys with the label: the user is asked to name one.
        """
        line = self.refused(self.hsm.uri("twin"))
        self.assertEqual(line, f"2 private keys match object='twin' on token {USER_TOKEN!r}: "
                               "name one with object= or id=")
        k = token.open_key(f"pkcs11:token={USER_TOKEN};object=twin;id=%11?pin-value={PIN}",
                           self.hsm.module)
        self.addCleanup(k.close)
        self.assertEqual(k.scheme, keys.ECDSA_P256_SHA256)

    def test_mechanismMissing(self) -> None:
        """
        A token that lacks the mechanism the key needs is told before
        connecting: "the token lacks mechanism CKM_EDDSA".  (SoftHSM2 2.6
        has all three, so the token's mechanism list is played by a
        stand-in; test_eachKeyTypeSigns shows SoftHSM has them.)
        """
        import pkcs11
        public = self.key("ed25519").public_key()

        class Slot:
            def get_mechanisms(self) -> set[Any]:
                return {pkcs11.Mechanism.ECDSA, pkcs11.Mechanism.RSA_PKCS_PSS}

        class Token:
            label = "card"
            slot = Slot()
        with self.assertRaises(token.TokenError) as e:
            token.check_mechanism(Token(), keys.ED25519, public)
        self.assertEqual(str(e.exception), "the token lacks mechanism CKM_EDDSA (needed to sign "
                                           "with its ed25519 key)")

    def test_removedMidSession(self) -> None:
        """
        A token removed while its key is open: the next signature fails in
        one line saying so, and every later one fails at once with the same
        line (the client stops signing with it).
        """
        k = self.key("ed25519", REMOVABLE[0])
        k.sign_blocking(b"before")
        delete_token(self.hsm, REMOVABLE[0])
        with self.assertRaises(token.TokenError) as e:
            k.sign_blocking(b"after")
        line = str(e.exception)
        self.assertTrue(line.startswith(f"token {REMOVABLE[0]!r} was removed or lost its session"),
                        line)
        self.assertTrue(line.endswith("no more signing with it; reinsert it and restart"), line)
        with self.assertRaises(token.TokenError) as again:
            k.sign_blocking(b"later")
        self.assertEqual(str(again.exception), line)

    def test_noModule(self) -> None:
        """
        No module given anywhere, or one that cannot be loaded: one line.
        """
        line = self.refused(self.hsm.uri("ed25519"), module=None)
        self.assertEqual(line, "which PKCS#11 module? give --pkcs11-module PATH or module-path "
                               "in the URI (OpenSC: /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so)")
        line = self.refused(self.hsm.uri("ed25519"), module="/nonexistent/p11.so")
        self.assertTrue(line.startswith("cannot load the PKCS#11 module /nonexistent/p11.so: "),
                        line)

    def test_moduleInUri(self) -> None:
        """
        module-path in the URI serves when --pkcs11-module is not given; a
        different --pkcs11-module is refused.
        """
        uri = self.hsm.uri("ed25519") + f"&module-path={self.hsm.module}"
        k = token.open_key(uri, None)
        self.addCleanup(k.close)
        line = self.refused(uri, module="/other.so")
        self.assertEqual(line, f"the URI's module-path {self.hsm.module} differs from "
                               "--pkcs11-module /other.so: give one")


def token_harness(test: TokenCase, name: str, key: keys.PublicKey) -> ChatHarness:
    h = ChatHarness()
    h.directory.add(UserEntry(name, key))
    return h


def token_client(h: ChatHarness, name: str, key: token.TokenKey,
                 runner: Any = in_this_thread) -> tuple[ChatClient, RecordingView]:
    view = RecordingView()
    client = ChatClient(name, key, view, verify_test_server, PinStore(None),
                        clock=lambda: 1_700_000_000.0)
    config = Config(CLIENT_SERVER, Role.INITIATOR, key, UserIdentity(name), registry=FROM_SERVER)
    proto = SecureChatProtocol(config, client, h.clock, handshake_timeout=1e9,
                               sign_runner=runner)
    h.links[name] = h.network.connect(proto, h.factory.buildProtocol(None))
    return client, view


class TokenSessionTests(TokenCase):
    """
    Real clients whose key is on the token, against a real relay in memory.
    """

    def test_loginEachKeyType(self) -> None:
        """
        A client whose key is on the token logs in with each key type: the
        handshake waited for the token's signature and the relay accepted it.
        """
        for label in KEY_TYPES:
            k = self.key(label)
            h = token_harness(self, "tina", k.public_key())
            client, view = token_client(h, "tina", k)
            h.pump()
            self.assertTrue(client.logged_in, (label, view.seen))
            self.assertIn("tina", h.relay.sessions)

    def test_chatEndToEnd(self) -> None:
        """
        A chat between a user whose key is on the token and one whose key is
        in a file: both the login and the end-to-end handshake are signed by
        the token, and lines go both ways.
        """
        for label in KEY_TYPES:
            k = self.key(label)
            h = token_harness(self, "tina", k.public_key())
            tina, vt = token_client(h, "tina", k)
            h.pump()
            bob, vb = h.client("bob")
            tina.request_chat("bob")
            h.pump()
            bob.accept("tina")
            h.pump()
            self.assertIn(("chat_secured", "bob"), vt.seen, label)
            self.assertIn(("chat_secured", "tina"), vb.seen, label)
            tina.say("bob", "from the token")
            bob.say("tina", "from the file")
            h.pump()
            self.assertEqual([m[2] for m in vb.of("message")], ["from the token"])
            self.assertEqual([m[2] for m in vt.of("message")], ["from the file"])

    def test_keyNotRegistered(self) -> None:
        """
        A token key that is not the one registered for the user: the relay
        refuses the login, and the client says the key may not match.
        """
        k = self.key("p256")
        h = token_harness(self, "tina", self.key("ed25519").public_key())
        client, view = token_client(h, "tina", k)
        h.pump()
        self.assertFalse(client.logged_in)
        self.assertEqual(view.of("disconnected"), [(
            "the relay refused the login: the user name is unknown or revoked, or the key "
            "does not match the registered one",)])

    def test_removedMidSession(self) -> None:
        """
        The token is removed while the user is logged in: the next chat's
        end-to-end handshake fails in one line saying so, and the chat is
        stopped; nothing hangs.
        """
        k = self.key("ed25519", REMOVABLE[1])
        h = token_harness(self, "tina", k.public_key())
        tina, vt = token_client(h, "tina", k)
        h.pump()
        self.assertTrue(tina.logged_in)
        bob, vb = h.client("bob")
        delete_token(self.hsm, REMOVABLE[1])
        bob.request_chat("tina")
        h.pump()
        tina.accept("bob")
        h.pump()
        errors = vt.of("security_error")
        self.assertEqual(len(errors), 1, vt.seen)
        peer, line = errors[0]
        self.assertEqual(peer, "bob")
        self.assertIn(f"token {REMOVABLE[1]!r} was removed or lost its session", line)
        self.assertTrue(line.endswith("[signing-failed]"), line)
        self.assertNotIn(("chat_secured", "tina"), vb.seen)


class SigningOffReactorTests(TokenCase):
    """
    The token's sign call runs off the reactor thread, with a timeout.
    """

    def test_defaultRunnerIsADaemonThread(self) -> None:
        """
        With no runner given, the token is called in a new daemon thread
        (never on the reactor thread, and never in the reactor's pool, whose
        threads the reactor waits for at exit: a hung token would hang the
        exit), and the signature comes back through callFromThread.
        """
        import threading
        started: list[Any] = []
        delivered: list[Any] = []

        class FakeThread:
            def __init__(self, **kw: Any) -> None:
                started.append(kw)

            def start(self) -> None:
                started[-1]["target"]()  # the thread's work, here, for the test
        self.patch(threading, "Thread", FakeThread)

        def from_thread(f: Any, *args: Any) -> None:
            delivered.append(f)
            f(*args)
        self.patch(signing, "_call_from_thread", from_thread)
        from twisted.internet.task import Clock
        k = self.key("ed25519")
        d = signing.sign_later(k, b"m", Clock())
        keys.verify(k.public_key(), k.scheme, self.successResultOf(d), b"m")
        self.assertEqual(len(started), 1)
        self.assertTrue(started[0]["daemon"])
        self.assertEqual(started[0]["name"], "securechat-token")
        self.assertEqual(len(delivered), 1)

    def test_daemonThreadCarriesErrors(self) -> None:
        """
        An error in the thread (the token's one line) reaches the Deferred
        as it is.
        """
        import threading

        class FakeThread:
            def __init__(self, **kw: Any) -> None:
                self.target = kw["target"]

            def start(self) -> None:
                self.target()
        self.patch(threading, "Thread", FakeThread)
        self.patch(signing, "_call_from_thread", lambda f, *args: f(*args))

        def fails() -> bytes:
            raise token.TokenError("token 'x' was removed")
        d = signing.in_daemon_thread(fails)
        self.assertEqual(str(self.failureResultOf(d, token.TokenError).value),
                         "token 'x' was removed")

    def test_tokenNeverAnswers(self) -> None:
        """
        A token that does not answer: after the sign timeout the login fails
        with one line, the client does not retry (signing-failed is final),
        and the key signs no more: a later request fails at once.
        """
        k = self.key("rsa")
        h = token_harness(self, "tina", k.public_key())
        never: list[Deferred[bytes]] = []

        def hang(f: Any, *args: Any) -> Deferred[bytes]:
            never.append(Deferred())
            return never[-1]
        client, view = token_client(h, "tina", k, runner=hang)
        h.pump()
        self.assertEqual(len(never), 1)
        self.assertFalse(client.logged_in)
        h.network.advance(signing.DEFAULT_SIGN_TIMEOUT)
        line = ("the token did not answer within 5 seconds: no more signing with it (is it "
                "still inserted?); restart the client once it is")
        self.assertEqual(view.of("disconnected"), [(line,)])
        self.assertEqual(client.protocol.error.code, "signing-failed")  # type: ignore[union-attr]
        self.assertTrue(is_final(client.protocol.error))
        self.assertEqual(k.broken, line)
        failed = self.failureResultOf(signing.sign_later(k, b"m", h.clock, run=hang))
        self.assertEqual(str(failed.value), line)
        self.assertEqual(len(never), 1, "the token is not asked again")


class ClientOptionTests(TokenCase):
    """
    securechat-client --key pkcs11:... and --pkcs11-module.
    """

    def test_keyOnToken(self) -> None:
        """
        --key with a PKCS#11 URI opens the token key before connecting and
        says which key signs, with its fingerprint.
        """
        said: list[str] = []
        k = read_key({"key": self.hsm.uri("p256"), "pkcs11-module": self.hsm.module},
                     io.StringIO(), said.append)
        assert isinstance(k, token.TokenKey)
        self.addCleanup(k.close)
        self.assertEqual(said[-1], f"securechat-client: signing with the ecdsa-p256 key on token "
                                   f"{USER_TOKEN!r}, fingerprint {keys.fingerprint(k.public_key())} "
                                   "(it must be the key registered for you)")

    def test_refusalNamesTheTokenKey(self) -> None:
        """
        When the relay refuses the login of a client whose key is on a
        token, the line names the token key's fingerprint as the likely
        cause, and the client exits (status 1) instead of retrying.
        """
        from twisted.internet.testing import MemoryReactorClock

        from securechat.client.cli import SessionFactory
        from securechat.client.terminal import ChatTerminal
        from tests.test_client_cli import _verify_test_server
        from tests.relay_harness import Harness
        self.patch(signing, "in_daemon_thread", in_this_thread)
        k = self.key("ed25519")
        reactor = MemoryReactorClock()
        harness = Harness(clock=reactor)  # alice is registered with another key
        lines: list[str] = []
        finished: list[int] = []
        factory = SessionFactory(reactor, "alice", k, ChatTerminal(write=lines.append),
                                 _verify_test_server, PinStore(None), finished.append)
        harness.network.connect(factory.buildProtocol(None), harness.factory.buildProtocol(None))
        self.assertEqual(lines, [
            "! disconnected: the relay refused the login: the user name is unknown or revoked, "
            f"or the key on the token (fingerprint {keys.fingerprint(k.public_key())}) is not "
            "the one registered for alice\n"])
        self.assertEqual(finished, [1])

    def test_tokenProblemIsOneLine(self) -> None:
        """
        A token problem (here a bad URI) is a ClientError of one line.
        """
        with self.assertRaises(ClientError) as e:
            read_key({"key": "pkcs11:token=x;colour=blue", "pkcs11-module": self.hsm.module},
                     io.StringIO(), lambda line: None)
        self.assertEqual(str(e.exception), "PKCS#11 URI: unknown attribute 'colour'")

    def test_moduleWithFileKeyRefused(self) -> None:
        """
        --pkcs11-module with a key file is a mistake, said in one line.
        """
        with self.assertRaises(ClientError) as e:
            read_key({"key": "alice.pem", "pkcs11-module": self.hsm.module}, io.StringIO())
        self.assertEqual(str(e.exception),
                         "--pkcs11-module is only for a key on a token (--key pkcs11:...)")


class AdminFromTokenTests(TokenCase):
    """
    securechat-admin add-user NAME --from-token URI.
    """

    def admin(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = admin_main(["--data-dir", self.data, *argv], out=out, err=err,
                          stdin=io.StringIO())
        return code, out.getvalue(), err.getvalue()

    def setUp(self) -> None:
        super().setUp()
        self.data = os.path.abspath(self.mktemp())
        code, _, err = self.admin("init", "--server-name", "localhost", "--no-ca-passphrase")
        self.assertEqual((code, err), (0, ""))

    def test_addUserFromToken(self) -> None:
        """
        The user is registered with the public key read from the token
        (each key type), without a PIN.
        """
        from securechat.datadir import DataDir
        for n, label in enumerate(KEY_TYPES):
            public = self.key(label).public_key()
            code, out, err = self.admin("add-user", f"user{n}", "--from-token",
                                        self.hsm.uri(label, pin=False),
                                        "--pkcs11-module", self.hsm.module)
            self.assertEqual((code, err), (0, ""))
            self.assertIn(keys.fingerprint(public), out)
            record = DataDir(self.data).lookup_user(f"user{n}")
            self.assertEqual(record.fingerprint, keys.fingerprint(public))

    def test_fileOrTokenNotBoth(self) -> None:
        """
        add-user needs the key file or --from-token, exactly one; a token
        problem is one line.
        """
        code, _, err = self.admin("add-user", "x")
        self.assertEqual((code, err), (1, "securechat-admin: error: give the public key file or "
                                          "--from-token URI (one of them)\n"))
        code, _, err = self.admin("add-user", "x", "--from-token", "pkcs11:token=absent",
                                  "--pkcs11-module", self.hsm.module)
        self.assertEqual((code, err), (1, "securechat-admin: error: no token present matches "
                                          f"token='absent' in {self.hsm.module} (is the card or "
                                          "key inserted?)\n"))
