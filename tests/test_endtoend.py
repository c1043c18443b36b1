"""
End-to-end tests with real processes on loopback: C{twistd -n securechat},
users registered with C{securechat-admin} (and a key made by the C{openssl}
command line), and two C{securechat-client} processes driven through pipes,
chatting end to end over tcp:, ssl:, unix: and systemd socket activation.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from typing import Callable

from twisted.trial import unittest

from tests.processes import ROOT, Process, admin, client, twistd

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")


def refused_port(test: unittest.TestCase) -> int:
    """
    A loopback port where nothing listens, held (bound, never listening)
    until the test ends, so no other process can take it meanwhile.
    """
    s = socket.socket()
    test.addCleanup(s.close)
    s.bind(("127.0.0.1", 0))
    return int(s.getsockname()[1])


class Deployment:
    """
    A data directory with alice (key from securechat-admin new-user) and bob
    (RSA key from the openssl command line).
    """

    def __init__(self, test: unittest.TestCase) -> None:
        self.test = test
        self.dir = tempfile.mkdtemp(prefix="sc-e2e-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.data = os.path.join(self.dir, "data")
        admin(self.data, "init", "--server-name", "localhost", "--server-name", "127.0.0.1")
        self.ca = os.path.join(self.data, "ca", "ca.pem")
        self.passfiles = {}
        for name, secret in (("alice", "alice's passphrase"), ("bob", "bobs-rsa-pass")):
            path = os.path.join(self.dir, f"{name}.pass")
            with open(path, "w") as f:
                f.write(secret + "\n")
            self.passfiles[name] = path
        keys_dir = os.path.join(self.dir, "keys")
        admin(self.data, "new-user", "alice", "--out", keys_dir, "--passphrase-file",
              self.passfiles["alice"])
        self.keys = {"alice": os.path.join(keys_dir, "alice.key"),
                     "bob": os.path.join(self.dir, "bob.key")}
        subprocess.run(["openssl", "genrsa", "-aes256", "-passout", "pass:bobs-rsa-pass",
                        "-out", self.keys["bob"], "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", self.keys["bob"], "-passin", "pass:bobs-rsa-pass",
                        "-pubout", "-out", os.path.join(self.dir, "bob.pub")],
                       check=True, capture_output=True)
        admin(self.data, "add-user", "bob", os.path.join(self.dir, "bob.pub"))

    def relay(self, *options: str, wrapper: tuple[str, ...] = ()) -> Process:
        return twistd(self.test, self.data, *options, wrapper=wrapper)

    def client(self, name: str, server: str, *extra: str) -> Process:
        return client(self.test, name, server, self.ca, self.keys[name], self.passfiles[name],
                      self.dir, *extra)


def open_chat(alice: Process, bob: Process) -> None:
    """
    Wait for both to log in, then alice asks bob and bob accepts.
    """
    alice.expect(r"\* logged in as alice")
    bob.expect(r"\* logged in as bob")
    alice.send("!chat bob")
    bob.expect(r"wants to chat")
    bob.send("!accept alice")
    alice.expect(r"end-to-end encrypted")


def listening_port(relay: Process) -> int:
    return int(relay.expect(r"RelayFactory.* starting on (\d+)").group(1))


class ChatEndToEndTests(unittest.TestCase):
    """
    A whole chat between two real clients through a real relay.
    """

    def chat(self, deployment: Deployment, relay: Process, server: str, *extra: str,
             before_stop: Callable[[], None] | None = None) -> None:
        alice = deployment.client("alice", server, *extra)
        bob = deployment.client("bob", server, *extra)
        alice.expect(r"\* logged in as alice")
        bob.expect(r"\* logged in as bob")
        alice.send("!online")
        alice.expect(r"\* online: alice, bob")
        alice.send("!chat bob")
        bob.expect(r"\* alice wants to chat")
        bob.send("!accept alice")
        alice.expect(r"securing the chat with bob, key SHA256:\S+ \(first chat")
        alice.expect(r"chat with bob is end-to-end encrypted")
        bob.expect(r"chat with alice is end-to-end encrypted")
        alice.send("hello bob, this is secret")
        bob.expect(r"\] alice: hello bob, this is secret")
        bob.send("hi alice, also secret")
        alice.expect(r"\] bob: hi alice, also secret")
        alice.send("!stop")
        bob.expect(r"chat with alice ended by alice \(1 messages received\)")
        alice.expect(r"chat with bob ended")
        alice.send("!exit")
        bob.send("!exit")
        self.assertEqual(alice.wait(), 0, alice.output())
        self.assertEqual(bob.wait(), 0, bob.output())
        relay.expect(r"user alice logged in")
        relay.expect(r"chat started: alice and bob")
        gone = {relay.expect(r"user (alice|bob) disconnected: logged out").group(1)
                for _ in range(2)}
        self.assertEqual(gone, {"alice", "bob"})
        if before_stop is not None:
            before_stop()
        relay.stop()
        self.assertNotIn("secret", relay.output())
        self.assertNotIn("Traceback", relay.output())

    def test_tcp(self) -> None:
        """
        Over tcp:, alice (key from securechat-admin new-user) and bob (RSA
        key from openssl, encrypted) log in, list who is online, chat both
        ways end to end, stop and log out; the relay's log shows the events
        and none of the text, and its /metrics counted them.
        """
        import urllib.request

        d = Deployment(self)
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1",
                        "--metrics", "tcp:0:interface=127.0.0.1")
        port = listening_port(relay)
        metrics_port = int(relay.expect(r"Site starting on (\d+)").group(1))
        scraped: list[str] = []

        def scrape() -> None:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                scraped.append(response.read().decode())
        self.chat(d, relay, f"tcp:127.0.0.1:{port}", before_stop=scrape)
        text = scraped[0]
        self.assertRegex(text, r"securechat_handshakes_total 2\.0")
        self.assertRegex(text, r"securechat_sessions 0\.0")
        self.assertRegex(text, r'securechat_chat_requests_total\{outcome="accepted"\} 1\.0')
        # handshake (2 flights) and READY, then two lines and alice's END
        self.assertRegex(text, r"securechat_relayed_messages_total [4-9]\.0")

    def test_tls(self) -> None:
        """
        Over an ssl: listener (TLS outside the protocol) with the data
        directory's server certificate, the clients connect with
        C{--server ssl:HOST:PORT} alone: they verify the relay's TLS
        certificate against the same CA (C{--ca}) for the relay's name, and
        chat the same way.
        """
        d = Deployment(self)
        server = os.path.join(d.data, "server")
        relay = d.relay("--listen", f"ssl:0:interface=127.0.0.1:privateKey={server}/server.key:"
                        f"certKey={server}/server.pem")
        port = listening_port(relay)
        self.chat(d, relay, f"ssl:127.0.0.1:{port}", "--server-name", "localhost")

    def test_unixSocket(self) -> None:
        """
        Over a unix: socket.
        """
        d = Deployment(self)
        path = os.path.join(d.dir, "relay.sock")
        relay = d.relay("--listen", f"unix:{path}")
        relay.expect(r"starting on .*relay\.sock")
        self.chat(d, relay, f"unix:{path}", "--server-name", "localhost")

    def test_socketActivation(self) -> None:
        """
        Under systemd-socket-activate with the systemd: endpoint.
        """
        self.assertIsNotNone(SOCKET_ACTIVATE, "systemd-socket-activate is installed by .ci/run")
        d = Deployment(self)
        # A unix socket: no port to pick (the relay adopts whatever socket
        # systemd passes; the socket unit in etc/ uses the same code path).
        path = os.path.join(d.dir, "activated.sock")
        relay = d.relay("--listen", "systemd:domain=UNIX:index=0",
                        # it clears the environment: pass on what the child needs
                        wrapper=(SOCKET_ACTIVATE, "-l", path,  # type: ignore[arg-type]
                                 f"--setenv=PYTHONPATH={ROOT}", "--setenv=PYTHONUNBUFFERED=1",
                                 f"--setenv=HOME={d.dir}",
                                 # systemd always names its sockets (LISTEN_FDNAMES),
                                 # and Twisted relies on it
                                 "--fdname=securechat", "--"))
        self.chat(d, relay, f"unix:{path}", "--server-name", "localhost")


class OperatorEndToEndTests(unittest.TestCase):
    """
    What the operator does to a running relay, and what users see.
    """

    def test_revocationWithoutRestart(self) -> None:
        """
        Revoking an online user with securechat-admin disconnects it within
        seconds, without restarting the relay; its client exits saying
        access was revoked, and it cannot log in again.
        """
        d = Deployment(self)
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1")
        server = f"tcp:127.0.0.1:{listening_port(relay)}"
        alice = d.client("alice", server)
        alice.expect(r"\* logged in as alice")
        admin(d.data, "revoke", "alice")
        alice.expect(r"disconnected: .*ACCESS_REVOKED")
        self.assertEqual(alice.wait(), 1)
        again = d.client("alice", server)
        again.expect(r"the relay refused the login")
        self.assertEqual(again.wait(), 1)
        relay.expect(r"user alice revoked: disconnecting")

    def test_reconnectAfterRelayRestart(self) -> None:
        """
        When the relay stops, the client says so and keeps trying with
        backoff; when it is back, the client logs in again by itself.
        """
        d = Deployment(self)
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1")
        port = listening_port(relay)  # the restarted relay listens there again
        alice = d.client("alice", f"tcp:127.0.0.1:{port}")
        alice.expect(r"\* logged in as alice")
        relay.stop()
        alice.expect(r"disconnected: .*SHUTTING_DOWN")
        alice.expect(r"\* reconnecting")
        again = d.relay("--listen", f"tcp:{port}:interface=127.0.0.1")
        listening_port(again)
        alice.expect(r"\* logged in as alice")
        alice.send("!exit")
        self.assertEqual(alice.wait(), 0)

    def test_partnerCtrlC(self) -> None:
        """
        When bob's client is stopped with Ctrl-C mid-chat, alice is told
        that bob went offline (with what arrived), not that the chat was
        truncated.
        """
        d = Deployment(self)
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1")
        server = f"tcp:127.0.0.1:{listening_port(relay)}"
        alice, bob = d.client("alice", server), d.client("bob", server)
        open_chat(alice, bob)
        bob.expect(r"chat with alice is end-to-end encrypted")
        bob.send("one")
        alice.expect(r"\] bob: one")
        bob.proc.send_signal(signal.SIGINT)
        alice.expect(r"\* chat with bob ended: bob went offline \(1 messages received; ")
        self.assertNotIn("TRUNCATED", alice.output())
        alice.send("!exit")
        self.assertEqual(alice.wait(), 0, alice.output())

    def test_pipedScript(self) -> None:
        """
        A script piped in whose input ends at once (before the login) runs
        after the login, its answers are shown, and the client exits 0.
        """
        d = Deployment(self)
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1")
        alice = d.client("alice", f"tcp:127.0.0.1:{listening_port(relay)}")
        alice.send("!online")
        alice.send("!chat nobody")
        assert alice.proc.stdin is not None
        alice.proc.stdin.close()
        alice.expect(r"\* logged in as alice")
        alice.expect(r"\* online: alice$")
        alice.expect(r"\* there is no user nobody")
        self.assertEqual(alice.wait(), 0, alice.output())

    def test_pipedScriptNeverLoggedIn(self) -> None:
        """
        A script for a relay that cannot be reached says how many lines
        were not run, and the client exits 1.
        """
        d = Deployment(self)
        alice = d.client("alice", f"tcp:127.0.0.1:{refused_port(self)}")
        alice.send("!online")
        assert alice.proc.stdin is not None
        alice.proc.stdin.close()
        alice.expect(r"cannot reach the relay")
        alice.expect(r"! never logged in; 1 lines not run")
        self.assertEqual(alice.wait(), 1)

    def test_wrongServerName(self) -> None:
        """
        A client expecting another name refuses the relay's certificate,
        says which check failed, and exits 1.
        """
        d = Deployment(self)
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1")
        server = f"tcp:127.0.0.1:{listening_port(relay)}"
        alice = d.client("alice", server, "--server-name", "chat.example.org")
        alice.expect(r"certificate was rejected: .*name-mismatch")
        self.assertEqual(alice.wait(), 1)

    def test_unreachable(self) -> None:
        """
        A relay that is not there is one clear line and exit status 1.
        """
        d = Deployment(self)
        alice = d.client("alice", f"tcp:127.0.0.1:{refused_port(self)}")
        alice.expect(r"cannot reach the relay")
        self.assertEqual(alice.wait(), 1)

    def test_embeddedDefaults(self) -> None:
        """
        C{twistd -n securechat} with no data directory option creates its
        data directory under $HOME (a temporary one, in the child's
        environment only) and says how to add users.  It listens on port 0
        here (the default, 127.0.0.1:7070, is checked by
        L{tests.test_tap.OptionsTests.test_defaults}) so the test never
        needs a fixed port.
        """
        from tests.processes import BIN, environment
        home = tempfile.mkdtemp(prefix="sc-home-")
        self.addCleanup(shutil.rmtree, home, True)
        relay = Process(self, [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "securechat",
                               "--listen", "tcp:0:interface=127.0.0.1"],
                        "relay", stdin=False, env=environment(HOME=home))
        port = listening_port(relay)
        self.assertGreater(port, 0)
        relay.expect(r"created now.*listening on 127.0.0.1:%d.*Add a user: \S*securechat-admin --data-dir"
                     % port)
        self.assertTrue(os.path.exists(os.path.join(home, ".local", "share", "securechat", "ca", "ca.pem")))


class DeploymentFileTests(unittest.TestCase):
    """
    The systemd units.
    """

    def test_systemdAnalyzeVerify(self) -> None:
        """
        C{systemd-analyze verify} accepts the service and socket units, and
        the daily CRL refresh service and timer, without a warning (paths
        adjusted in a temporary copy).
        """
        analyze = shutil.which("systemd-analyze")
        self.assertIsNotNone(analyze, "systemd-analyze is installed by .ci/run")
        tmp = tempfile.mkdtemp(prefix="sc-units-")
        self.addCleanup(shutil.rmtree, tmp, True)
        units = ("securechat.service", "securechat.socket", "securechat-refresh-crl.service",
                 "securechat-refresh-crl.timer")
        for unit in units:
            with open(os.path.join(ROOT, "etc", unit)) as f:
                text = f.read()
            for tool in ("twistd", "securechat-admin"):
                text = text.replace(f"/opt/securechat/bin/{tool}", shutil.which("true") or "/bin/true")
            with open(os.path.join(tmp, unit), "w") as f:
                f.write(text)
        result = subprocess.run(
            [analyze, "verify", *(os.path.join(tmp, unit) for unit in units)],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr.strip(), "", result.stderr)

    def test_templateUnitVerify(self) -> None:
        """
        C{systemd-analyze verify} accepts the template unit for several
        processes (C{securechat@.service}), as a template and as an
        instance (C{%i} expanded), without a warning.
        """
        analyze = shutil.which("systemd-analyze")
        self.assertIsNotNone(analyze, "systemd-analyze is installed by .ci/run")
        tmp = tempfile.mkdtemp(prefix="sc-units-")
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(os.path.join(ROOT, "etc", "securechat@.service")) as f:
            text = f.read()
        self.assertIn("/opt/securechat/bin/twistd ", text)
        text = text.replace("/opt/securechat/bin/twistd", shutil.which("true") or "/bin/true")
        template = os.path.join(tmp, "securechat@.service")
        with open(template, "w") as f:
            f.write(text)
        instance = os.path.join(tmp, "securechat@2.service")
        os.symlink("securechat@.service", instance)
        for unit in (template, instance):
            result = subprocess.run([analyze, "verify", unit], capture_output=True, text=True,
                                    timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertEqual(result.stderr.strip(), "", result.stderr)

    def test_templateOptionFilesParse(self) -> None:
        """
        The options the template unit passes (C{$SECURECHAT_OPTIONS} from
        the shared file, C{$SECURECHAT_INSTANCE_OPTIONS} from the process's
        own) are read from the files the example files say, and, as the
        examples give them, are options C{twistd securechat} accepts, also
        in their load-balancer variants (commented out).
        """
        import re
        import shlex

        from securechat.tap import Options
        with open(os.path.join(ROOT, "etc", "securechat@.service")) as f:
            unit = f.read()
        self.assertIn("EnvironmentFile=/etc/default/securechat-relays\n", unit)
        self.assertIn("EnvironmentFile=-/etc/default/securechat@%i\n", unit)
        self.assertRegex(unit, r"(?m)^ExecStart=.* \$SECURECHAT_OPTIONS \$SECURECHAT_INSTANCE_OPTIONS$")

        def settings(name: str, installed: str, variable: str) -> list[str]:
            with open(os.path.join(ROOT, "etc", name)) as f:
                text = f.read()
            self.assertTrue(text.startswith(f"# {installed}:"), name)
            found = re.findall(rf"(?m)^#?\s*{variable}=(.*)$", text)
            self.assertGreaterEqual(len(found), 2, name)
            return found
        shared = settings("securechat-relays.env.example", "/etc/default/securechat-relays",
                          "SECURECHAT_OPTIONS")
        own = settings("securechat@.env.example", "/etc/default/securechat@N",
                       "SECURECHAT_INSTANCE_OPTIONS")
        # The first of each is the SO_REUSEPORT set-up, the second the
        # load balancer's.
        for common, instance in zip(shared, own):
            options = Options()
            options.exit_on_usage_error = False
            options.parseOptions(["--data-dir", "/var/lib/securechat",
                                  *shlex.split(common), *shlex.split(instance)])
            self.assertIsNotNone(options["metrics"])
        self.assertIn("--reuse-port", shared[0])
        self.assertNotIn("--reuse-port", shared[1])


class CrashSafetyTests(unittest.TestCase):
    """
    The relay killed with SIGKILL during traffic.
    """

    def test_sigkillDuringTraffic(self) -> None:
        """
        Kill -9 the relay while two users chat and the operator registers
        users: on restart every registration is intact and readable, the
        clients reconnect by themselves and chat again.
        """
        from securechat.datadir import DataDir

        d = Deployment(self)
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1")
        port = listening_port(relay)  # the restarted relay listens there again
        server = f"tcp:127.0.0.1:{port}"
        alice, bob = d.client("alice", server), d.client("bob", server)
        open_chat(alice, bob)
        for i in range(20):
            alice.send(f"line {i}")
        for i in range(3):
            admin(d.data, "new-user", f"user{i}", "--out", os.path.join(d.dir, "more"),
                  "--no-passphrase")
        bob.expect(r"alice: line 19")
        relay.proc.kill()
        relay.wait()
        data = DataDir(d.data)
        users = data.load_users()
        self.assertEqual(users.names(), ["alice", "bob", "user0", "user1", "user2"])
        data.server_credentials()
        data.load_state()
        alice.expect(r"disconnected")
        again = d.relay("--listen", f"tcp:{port}:interface=127.0.0.1")
        listening_port(again)
        open_chat(alice, bob)
        alice.send("after the crash")
        bob.expect(r"alice: after the crash")
        for user in (alice, bob):
            user.send("!exit")
            self.assertEqual(user.wait(), 0)


class FailedStartTests(unittest.TestCase):
    """
    A relay that cannot start says why in exactly one line on standard
    error, and nothing that suggests it is running.
    """

    def run_twistd(self, *argv: str) -> subprocess.CompletedProcess[str]:
        from tests.processes import BIN, TIMEOUT, environment
        return subprocess.run(
            [os.path.join(BIN, "twistd"), "--nodaemon", "--pidfile=", "securechat", *argv],
            capture_output=True, text=True, env=environment(), cwd="/", timeout=TIMEOUT)

    def test_busyPortOneLine(self) -> None:
        """
        A busy port: one line naming the address and the reason, and no
        "listening on" hint before it.
        """
        d = Deployment(self)
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = self.run_twistd("--data-dir", d.data, "--listen", f"tcp:{port}:interface=127.0.0.1")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr, f"twistd securechat: error: cannot listen on 127.0.0.1:{port}: "
                                        "Address already in use\n")
        self.assertNotIn("listening on", result.stdout)

    def test_usageErrorOneLine(self) -> None:
        """
        A bad option: one line, exit status 2, no usage text.
        """
        result = self.run_twistd("--listen", "tcp:notaport")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
        self.assertIn("twistd securechat: error: --listen: bad endpoint 'tcp:notaport'", result.stderr)
        self.assertEqual(result.stdout, "")
