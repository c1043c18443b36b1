"""
Tests for the relay's service tree (L{securechat.server.service}) in
process: start-up checks, first run, reloading users and the CRL, metrics.
"""

from __future__ import annotations

import datetime
import os
import signal
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.test.requesthelper import DummyRequest

from securechat.datadir import CorruptDataDir, DataDir, atomic_write
from securechat.errors import Alert, PeerAlert
from securechat.server.limits import Limits
from securechat.server.metrics import metrics_root
from securechat.server.relay import RelayFactory
from securechat.server.service import StartupError, relay_service
from securechat.tap import Options, makeService
from tests.memnet import Network

NOW = datetime.datetime.now(datetime.timezone.utc)


class StartupTests(unittest.TestCase):
    """
    What start-up accepts and refuses.
    """

    def test_firstRunCreates(self) -> None:
        """
        A data directory that does not exist yet is created with a CA and a
        certificate for localhost, 127.0.0.1 and ::1.
        """
        path = os.path.join(self.mktemp(), "data")
        service = relay_service(path, ["tcp:0:interface=127.0.0.1"], None, Limits(), clock=Clock())
        data = DataDir(path)
        self.assertTrue(data.initialized())
        self.assertEqual(len(service.relay.credentials.identity.chain), 1)

    def test_existingWithoutCA(self) -> None:
        """
        A non-empty directory without a CA is refused, not overwritten.
        """
        path = self.mktemp()
        os.makedirs(path)
        with open(os.path.join(path, "something"), "w") as f:
            f.write("x")
        e = self.assertRaises(StartupError, relay_service, path, ["tcp:0"], None, Limits(),
                              clock=Clock())
        self.assertIn("holds no CA", str(e))

    def test_corruptUsers(self) -> None:
        """
        A corrupt users.json stops start-up with the file named.
        """
        path = self.mktemp()
        DataDir(path).init(["localhost"], NOW)
        atomic_write(DataDir(path).users_path, b"garbage")
        e = self.assertRaises(CorruptDataDir, relay_service, path, ["tcp:0"], None, Limits(),
                              clock=Clock())
        self.assertIn("users.json", str(e))

    def test_missingServerKey(self) -> None:
        """
        A missing server key stops start-up with the path named.
        """
        path = self.mktemp()
        data = DataDir(path)
        data.init(["localhost"], NOW)
        os.unlink(data.server_key_path)
        e = self.assertRaises(CorruptDataDir, relay_service, path, ["tcp:0"], None, Limits(),
                              clock=Clock())
        self.assertIn("server.key", str(e))

    def test_systemdWithoutSocket(self) -> None:
        """
        A systemd: listener without an inherited socket says so.
        """
        path = self.mktemp()
        e = self.assertRaises(StartupError, relay_service, path, ["systemd:domain=INET:index=0"],
                              None, Limits(), clock=Clock())
        self.assertIn("LISTEN_FDS", str(e))

    def test_makeServiceExitsCleanly(self) -> None:
        """
        C{makeService} turns a start-up error into one line on standard
        error and exit status 1, not a traceback.
        """
        import io
        import sys
        path = self.mktemp()
        os.makedirs(path)
        with open(os.path.join(path, "junk"), "w") as f:
            f.write("x")
        options = Options()
        options.parseOptions(["--data-dir", path])
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        e = self.assertRaises(SystemExit, makeService, options)
        self.assertEqual(e.code, 1)
        self.assertTrue(err.getvalue().startswith("twistd securechat: error: "))
        self.assertEqual(err.getvalue().count("\n"), 1)


class ReloadTests(unittest.TestCase):
    """
    Users and CRL re-read while running.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.data = DataDir(self.path)
        self.data.init(["localhost"], NOW)
        self.clock = Clock()
        # The service installs a SIGHUP handler when it starts: record it
        # instead, so no process-wide handler is installed by a test.
        self.handlers: dict[int, Any] = {signal.SIGHUP: signal.SIG_DFL}

        def fake_signal(signum: int, handler: Any) -> Any:
            previous, self.handlers[signum] = self.handlers.get(signum), handler
            return previous
        self.patch(signal, "signal", fake_signal)
        self.service = relay_service(self.path, [], None, Limits(), clock=self.clock)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.alice = ed25519.Ed25519PrivateKey.generate()

    def test_newUserSeenWithoutRestart(self) -> None:
        """
        A user added to users.json is known within the reload interval.
        """
        self.assertIsNone(self.service.relay.directory.lookup("alice"))
        self.data.add_user("alice", self.alice.public_key(), NOW)
        self.clock.advance(2)
        entry = self.service.relay.directory.lookup("alice")
        self.assertIsNotNone(entry)

    def test_revokedOnlineUserDisconnected(self) -> None:
        """
        Revoking a logged-in user with securechat-admin's code disconnects it
        at the next reload, with ACCESS_REVOKED, and refuses its next login.
        """
        from tests.relay_harness import RecordingClient
        from securechat.crypto.handshake import CLIENT_SERVER, Config, Role
        from securechat.protocol import SecureChatProtocol
        from securechat.wire.messages import UserIdentity
        from securechat.wire.relay import FROM_SERVER

        self.data.add_user("alice", self.alice.public_key(), NOW)
        self.clock.advance(2)
        network = Network(self.clock)
        factory = RelayFactory(self.service.relay)
        server_key = self.service.relay.credentials.private_key.public_key()

        def connect() -> RecordingClient:
            client = RecordingClient("alice")
            client.verify_peer = lambda identity: server_key  # type: ignore[method-assign]
            proto = SecureChatProtocol(
                Config(CLIENT_SERVER, Role.INITIATOR, self.alice, UserIdentity("alice"),
                       registry=FROM_SERVER), client, self.clock, handshake_timeout=1e9)
            network.connect(proto, factory.buildProtocol(None))
            return client

        online = connect()
        self.assertTrue(online.logged_in)
        self.data.revoke_user("alice", NOW)
        self.clock.advance(2)
        network.pump()
        self.assertIsInstance(online.error, PeerAlert)
        self.assertEqual(online.error.peer_alert, Alert.ACCESS_REVOKED)
        again = connect()
        self.assertFalse(again.logged_in)

    def test_crlReloaded(self) -> None:
        """
        A reissued CRL is what new connections staple.
        """
        before = self.service.relay.credentials.identity.crl
        self.data.refresh_crl(NOW + datetime.timedelta(seconds=5))
        self.clock.advance(2)
        self.assertNotEqual(self.service.relay.credentials.identity.crl, before)

    def test_corruptFileKeepsPrevious(self) -> None:
        """
        A users.json mangled while running is logged and the previous
        directory kept; the relay goes on.
        """
        self.data.add_user("alice", self.alice.public_key(), NOW)
        self.clock.advance(2)
        atomic_write(self.data.users_path, b"{broken")
        self.clock.advance(2)
        self.assertIsNotNone(self.service.relay.directory.lookup("alice"))

    def test_forcedRefresh(self) -> None:
        """
        C{refresh(force=True)} (what SIGHUP does) re-reads at once.
        """
        self.data.add_user("alice", self.alice.public_key(), NOW)
        self.service.refresh(force=True)
        self.assertIsNotNone(self.service.relay.directory.lookup("alice"))


    def test_sighupReloadsAtOnce(self) -> None:
        """
        README: SIGHUP re-reads the user directory and the CRL at once (no
        clock advance): the service registers a SIGHUP handler when it
        starts, the handler hands a forced refresh to the reactor
        (C{callFromThread}, as a signal handler must), and stopping the
        service puts the previous handler back.
        """
        from twisted.internet import reactor
        handler = self.handlers[signal.SIGHUP]
        self.assertNotEqual(handler, signal.SIG_DFL)
        calls: list[Any] = []
        self.patch(reactor, "callFromThread", lambda f, *a: calls.append((f, a)))
        self.data.add_user("alice", self.alice.public_key(), NOW)
        crl = self.service.relay.credentials.identity.crl
        self.data.refresh_crl(NOW + datetime.timedelta(seconds=5))
        handler(signal.SIGHUP, None)
        self.assertIsNone(self.service.relay.directory.lookup("alice"))  # not from the handler itself
        [(f, args)] = calls
        f(*args)
        self.assertIsNotNone(self.service.relay.directory.lookup("alice"))
        self.assertNotEqual(self.service.relay.credentials.identity.crl, crl)
        # Forced: read again even when the files' stamps did not change
        # (an edit that kept inode, size and mtime).
        credentials = self.service.relay.credentials
        handler(signal.SIGHUP, None)
        f, args = calls[-1]
        f(*args)
        self.assertIsNot(self.service.relay.credentials, credentials)
        self.service.stopService()
        self.assertEqual(self.handlers[signal.SIGHUP], signal.SIG_DFL)


class MetricsTests(unittest.TestCase):
    """
    The HTTP resources.
    """

    def test_metricsAndHealth(self) -> None:
        """
        /metrics serves the relay's counters in the Prometheus format;
        /health says ok while running and 503 otherwise.
        """
        from securechat.server.metrics import RelayMetrics
        metrics = RelayMetrics()
        metrics.connections += 1
        running = [True]
        root = metrics_root(metrics, lambda: running[0])
        request = DummyRequest([b""])
        body = root.children[b"metrics"].render_GET(request)
        text = body.decode()
        for name in ("securechat_connections_total 1.0", "securechat_sessions", "securechat_queued_bytes",
                     "securechat_relayed_messages_total", "securechat_refusals", "securechat_queue_drops_total"):
            self.assertIn(name, text)
        health = root.children[b"health"]
        self.assertEqual(health.render_GET(DummyRequest([b""])), b"ok\n")
        running[0] = False
        request = DummyRequest([b""])
        self.assertEqual(health.render_GET(request), b"not ready\n")
        self.assertEqual(request.responseCode, 503)
