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

from securechat.datadir import DataDir
from securechat.datafiles import CorruptDataDir, atomic_write
from securechat.errors import Alert, PeerAlert
from securechat.server.limits import Limits
from securechat.server.metrics import metrics_root
from securechat.server.relay import RelayFactory
from securechat.server.service import StartupError, relay_service
from securechat.server.store.sqlite import SQLiteMailboxStore
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

    def test_letterCommitsFromTheStore(self) -> None:
        """
        /metrics' securechat_letter_commits is the SQLite store's count of
        group commits, read when scraped.
        """
        path = os.path.join(self.mktemp(), "data")
        service = relay_service(path, [], None, Limits(), clock=Clock())
        store = service.store
        assert isinstance(store, SQLiteMailboxStore)
        self.addCleanup(store.close)
        self.assertEqual(service.relay.metrics.letter_commits_source(), 0)
        store.letter_commits = 7
        self.assertIn("securechat_letter_commits_total 7.0",
                      service.relay.metrics.render().decode())

    def test_websocketListener(self) -> None:
        """
        C{--listen-websocket} adds an HTTP listener whose /relay is the
        WebSocket, named in the start-up hint; without
        C{--websocket-origin} the relay warns that pages are refused.
        """
        from twisted.logger import globalLogPublisher, formatEvent
        seen: list[str] = []

        def observer(event: dict) -> None:  # type: ignore[type-arg]
            seen.append(formatEvent(event))
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        path = os.path.join(self.mktemp(), "data")
        service = relay_service(path, ["tcp:0:interface=127.0.0.1"], None, Limits(), clock=Clock(),
                                websocket=["tcp:0:interface=127.0.0.1"])
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        port = service.websocket_listeners[0]._waitingForPort.result.getHost().port
        self.assertIn(f", WebSocket on 127.0.0.1:{port}/relay.", service.hint())
        self.assertTrue([line for line in seen if "no --websocket-origin given" in line])

    def test_webListener(self) -> None:
        """
        C{--web} adds the web listener, named in the start-up hint; without
        it there is none.
        """
        path = os.path.join(self.mktemp(), "data")
        service = relay_service(path, [], None, Limits(), clock=Clock())
        self.assertIsNone(service.web_listener)
        service = relay_service(path, [], None, Limits(), clock=Clock(),
                                web="tcp:0:interface=127.0.0.1")
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        port = service.web_listener._waitingForPort.result.getHost().port
        self.assertIn(f", web page on 127.0.0.1:{port}/.", service.hint())

    def test_badWebsocketEndpoint(self) -> None:
        """
        A WebSocket endpoint that cannot be used stops start-up, naming it.
        """
        path = os.path.join(self.mktemp(), "data")
        e = self.assertRaises(StartupError, relay_service, path, [], None, Limits(),
                              clock=Clock(), websocket=["tcp:port=notaport"])
        self.assertIn("cannot use --listen-websocket 'tcp:port=notaport'", str(e))

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
        # The relay's wall clock, a minute on: what the tests write "now" is
        # valid for it.
        self.service = relay_service(self.path, [], None, Limits(), clock=self.clock,
                                     now=lambda: NOW + datetime.timedelta(minutes=1))
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
        from securechat.crypto.config import CLIENT_SERVER, Config, Role
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
        A reissued CRL is what new connections staple, from the second
        check after it is written (the first finds it new, the second
        finds it settled).
        """
        before = self.service.relay.credentials.identity.crl
        self.data.refresh_crl(NOW + datetime.timedelta(seconds=5))
        self.clock.advance(2)
        self.assertEqual(self.service.relay.credentials.identity.crl, before)
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
        # Not from the handler itself (the user directory is re-read at every
        # lookup anyway, so the CRL shows it).
        self.assertEqual(self.service.relay.credentials.identity.crl, crl)
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


    def test_healthFollowsTheClusterLink(self) -> None:
        """
        With --cluster, /health says ok only while the process runs and its
        link to Redis is up: a process that refuses logins (UNAVAILABLE) is
        taken out by a load balancer's health check.
        """
        from securechat.server.metrics import RelayMetrics
        from securechat.server.service import relay_health

        class Running:
            running = 1

        class Link:
            linked = False

        service, link = Running(), Link()
        health = metrics_root(RelayMetrics(), relay_health(service, link)).children[b"health"]
        request = DummyRequest([b""])
        self.assertEqual(health.render_GET(request), b"not ready\n")
        self.assertEqual(request.responseCode, 503)
        link.linked = True
        self.assertEqual(health.render_GET(DummyRequest([b""])), b"ok\n")
        service.running = 0
        self.assertEqual(health.render_GET(DummyRequest([b""])), b"not ready\n")
        alone = metrics_root(RelayMetrics(), relay_health(Running())).children[b"health"]
        self.assertEqual(alone.render_GET(DummyRequest([b""])), b"ok\n")


class OperatorStartupTests(unittest.TestCase):
    """
    What the operator sees when the relay starts or refuses to.
    """

    def test_mistypedDataDirNotCreated(self) -> None:
        """
        An explicit --data-dir that does not exist is refused with the
        command that creates it, and nothing is created; with --init it is
        created (the default directory is still created unasked).
        """
        import io
        import sys
        path = os.path.abspath(os.path.join(self.mktemp(), "typo"))
        options = Options()
        options.parseOptions(["--data-dir", path, "--listen", "tcp:0:interface=127.0.0.1"])
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        e = self.assertRaises(SystemExit, makeService, options)
        self.assertEqual(e.code, 1)
        self.assertIn(f"{path} does not exist: create the CA there with", err.getvalue())
        self.assertIn(f"--data-dir {path} init --server-name NAME", err.getvalue())
        self.assertEqual(err.getvalue().count("\n"), 1)
        self.assertFalse(os.path.exists(path))
        options = Options()
        options.parseOptions(["--data-dir", path, "--init", "--listen", "tcp:0:interface=127.0.0.1"])
        makeService(options)
        self.assertTrue(DataDir(path).initialized())

    def test_unsafeDataDirRefused(self) -> None:
        """
        The relay refuses to start on a users.json others can write, or a
        readable server key unless --allow-readable-keys is given, naming
        the file and the fix.
        """
        path = self.mktemp()
        data = DataDir(path)
        data.init(["localhost"], NOW)
        os.chmod(data.users_path, 0o666)
        e = self.assertRaises(CorruptDataDir, relay_service, path, [], None, Limits(), clock=Clock())
        self.assertIn(f"chmod go-w {data.users_path}", str(e))
        os.chmod(data.users_path, 0o600)
        os.chmod(data.server_key_path, 0o644)
        e = self.assertRaises(CorruptDataDir, relay_service, path, [], None, Limits(), clock=Clock())
        self.assertIn(f"chmod 600 {data.server_key_path}", str(e))
        relay_service(path, [], None, Limits(), clock=Clock(), allow_readable_keys=True)

    def test_systemdWithoutNames(self) -> None:
        """
        A socket manager that passes sockets but no LISTEN_FDNAMES is named
        as the problem (Twisted adopts sockets only with their names), with
        what to set.
        """
        from securechat.server import service as service_module
        self.patch(service_module, "inherited_sockets", lambda: 1)
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "LISTEN_FDNAMES"})
        path = self.mktemp()
        e = self.assertRaises(StartupError, relay_service, path, ["systemd:domain=INET:index=0"],
                              None, Limits(), clock=Clock())
        self.assertIn("passed 1 socket(s) but no names (LISTEN_FDNAMES)", str(e))
        self.assertIn("FileDescriptorName=", str(e))
        self.assertIn("--fdname=NAME", str(e))

    def test_systemdWrongName(self) -> None:
        """
        A systemd: name= the socket manager did not pass is named, with the
        names it did pass.
        """
        from securechat.server.startup import systemd_problem
        text = systemd_problem("systemd:domain=INET:name=chat", {"LISTEN_FDNAMES": "securechat"}, 1)
        self.assertIn("no socket named 'chat'; the socket manager passed securechat", text)

    def test_hintCommandsWork(self) -> None:
        """
        The start-up hint, logged once listening, names the admin tool by
        a path that works outside the virtualenv's PATH, the real port, and
        --server-name when the address is not in the certificate.
        """
        import sys
        from twisted.logger import globalLogPublisher
        from securechat.server.startup import tool_command
        path = self.mktemp()
        DataDir(path).init(["chat.example.org"], NOW)
        service = relay_service(path, ["tcp:0:interface=127.0.0.1"], None, Limits(), clock=Clock())
        seen: list[str] = []

        def observer(event: dict) -> None:  # type: ignore[type-arg]
            if "hint" in event:
                seen.append(event["hint"])
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        port = service.listeners[0]._waitingForPort.result.getHost().port
        self.assertEqual(len(seen), 1)
        hint = seen[0]
        admin = tool_command("securechat-admin", "securechat.admin")
        self.assertTrue(admin.startswith(os.path.dirname(sys.executable)), admin)
        self.assertIn(f"Add a user: {admin} --data-dir {DataDir(path).path} new-user", hint)
        self.assertIn(f"listening on 127.0.0.1:{port}", hint)
        self.assertIn(f"--server tcp:127.0.0.1:{port} --server-name chat.example.org", hint)
        self.assertNotIn("PORT", hint)

    def test_clientOptionForLocalhost(self) -> None:
        """
        For a certificate that names the listening address, no
        --server-name is needed; a wildcard address is replaced by the
        certificate's first name.
        """
        from twisted.internet.address import IPv4Address
        from securechat.server.startup import client_server_option
        self.assertEqual(client_server_option([IPv4Address("TCP", "127.0.0.1", 7070)],
                                              ["localhost", "127.0.0.1"]),
                         "--server tcp:127.0.0.1:7070")
        self.assertEqual(client_server_option([IPv4Address("TCP", "0.0.0.0", 7070)],
                                              ["chat.example.org"]),
                         "--server tcp:chat.example.org:7070")

    def test_toolCommandWithoutScript(self) -> None:
        """
        Without the console script beside the interpreter, the hint uses
        `python -m` with the running interpreter.
        """
        import sys
        from securechat.server import startup
        self.patch(sys, "executable", os.path.join(os.path.abspath(self.mktemp()), "python3"))
        self.assertEqual(startup.tool_command("securechat-admin", "securechat.admin"),
                         f"{sys.executable} -m securechat.admin")


class ImmediateUserChangesTests(unittest.TestCase):
    """
    What securechat-admin does takes effect before it returns: the relay
    checks users.json at every lookup.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.data = DataDir(self.path)
        self.data.init(["localhost"], NOW)
        self.clock = Clock()
        self.service = relay_service(self.path, [], None, Limits(), clock=self.clock)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.alice = ed25519.Ed25519PrivateKey.generate()

    def connect(self, key: ed25519.Ed25519PrivateKey) -> object:
        from tests.relay_harness import RecordingClient
        from securechat.crypto.config import CLIENT_SERVER, Config, Role
        from securechat.protocol import SecureChatProtocol
        from securechat.wire.messages import UserIdentity
        from securechat.wire.relay import FROM_SERVER
        network = Network(self.clock)
        server_key = self.service.relay.credentials.private_key.public_key()
        client = RecordingClient("alice")
        client.verify_peer = lambda identity: server_key  # type: ignore[method-assign]
        proto = SecureChatProtocol(
            Config(CLIENT_SERVER, Role.INITIATOR, key, UserIdentity("alice"), registry=FROM_SERVER),
            client, self.clock, handshake_timeout=1e9)
        network.connect(proto, RelayFactory(self.service.relay).buildProtocol(None))
        network.pump()
        self.network = network
        return client

    def test_newUserLogsInAtOnce(self) -> None:
        """
        A user registered a moment ago (no time passes) can log in.
        """
        self.data.add_user("alice", self.alice.public_key(), NOW)
        self.assertTrue(self.connect(self.alice).logged_in)  # type: ignore[attr-defined]

    def test_revokedRefusedAtOnce(self) -> None:
        """
        A user revoked a moment ago is refused at the next login.
        """
        self.data.add_user("alice", self.alice.public_key(), NOW)
        self.data.revoke_user("alice", NOW)
        self.assertFalse(self.connect(self.alice).logged_in)  # type: ignore[attr-defined]

    def test_letterLookupChecksOncePerTurn(self) -> None:
        """
        The per-letter lookup (C{lookup_recent}) checks users.json at most
        once per reactor turn: a change later in the same turn is seen by
        it from the next turn on, and by a login's lookup at once.
        """
        directory = self.service.relay.directory
        self.assertIsNone(directory.lookup_recent("alice"))
        self.data.add_user("alice", self.alice.public_key(), NOW)
        self.assertIsNone(directory.lookup_recent("alice"))
        self.clock.advance(0)
        entry = directory.lookup_recent("alice")
        assert entry is not None
        self.assertFalse(entry.revoked)
        self.data.revoke_user("alice", NOW)
        entry = directory.lookup_recent("alice")
        assert entry is not None
        self.assertFalse(entry.revoked)
        entry = directory.lookup("alice")
        assert entry is not None
        self.assertTrue(entry.revoked)

    def test_letterLookupReusesEntryUntilFileChanges(self) -> None:
        """
        The per-letter lookup answers the same entry letter after letter
        (no new object per letter), and a fresh one, revoked, once the
        file changed and was read again.
        """
        directory = self.service.relay.directory
        self.data.add_user("alice", self.alice.public_key(), NOW)
        self.clock.advance(0)
        first = directory.lookup_recent("alice")
        assert first is not None
        self.assertIs(directory.lookup_recent("alice"), first)
        self.data.revoke_user("alice", NOW)
        self.clock.advance(0)
        entry = directory.lookup_recent("alice")
        assert entry is not None
        self.assertTrue(entry.revoked)
        self.assertIsNone(directory.lookup_recent("nobody"))

    def test_rekeyEndsOldKeySession(self) -> None:
        """
        After rekey the old key is refused at once, the new one accepted,
        and a session under the old key is ended at the next reload.
        """
        self.data.add_user("alice", self.alice.public_key(), NOW)
        online = self.connect(self.alice)
        self.assertTrue(online.logged_in)  # type: ignore[attr-defined]
        network = self.network
        new = ed25519.Ed25519PrivateKey.generate()
        self.data.rekey_user("alice", new.public_key(), NOW)
        self.assertFalse(self.connect(self.alice).logged_in)  # type: ignore[attr-defined]
        self.clock.advance(2)
        network.pump()
        self.assertIsInstance(online.error, PeerAlert)  # type: ignore[attr-defined]
        self.assertEqual(online.error.peer_alert, Alert.ACCESS_REVOKED)  # type: ignore[attr-defined]
        self.assertTrue(self.connect(new).logged_in)  # type: ignore[attr-defined]

    def test_brokenFileKeptPrevious(self) -> None:
        """
        A users.json broken while running is logged once and the previous
        directory kept at lookups.
        """
        self.data.add_user("alice", self.alice.public_key(), NOW)
        self.assertIsNotNone(self.service.relay.directory.lookup("alice"))
        atomic_write(self.data.users_path, b"{broken")
        self.assertIsNotNone(self.service.relay.directory.lookup("alice"))
        self.assertIsNotNone(self.service.relay.directory.lookup("alice"))
        self.flushLoggedErrors()
