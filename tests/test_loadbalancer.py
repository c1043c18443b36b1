"""
The HAProxy example (etc/haproxy-securechat.cfg) in front of real relay
processes: plain TCP passes the relay's handshake through, and the health
check on each relay's /health takes a stopped relay out.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from twisted.trial import unittest

from tests.processes import ROOT, Process
from tests.services import need_service

CONFIG = os.path.join(ROOT, "etc", "haproxy-securechat.cfg")


def haproxy_binary(test: unittest.TestCase) -> str:
    """
    The haproxy binary (in /usr/sbin on Debian, which need not be on a
    user's PATH), or skip loudly / fail (L{need_service}).
    """
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which("haproxy", path=path)
    need_service(test, [] if found else ["haproxy"], "the HAProxy example configuration",
                 "apt-get install haproxy")
    assert found is not None
    return found


def free_port() -> int:
    """
    A loopback port free a moment ago (for HAProxy's and the metrics
    listeners, whose ports must be known before they start).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, process: Process, timeout: float = 30.0) -> None:
    """
    Poll (bounded) until something accepts on loopback C{port}.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.proc.poll() is not None:
                try:
                    process.wait(1)
                except AssertionError:
                    pass
                raise AssertionError(f"nothing listens on {port}; {process.name} said:\n"
                                     + process.output()) from None
            time.sleep(0.05)


class ExampleConfigTests(unittest.TestCase):
    """
    etc/haproxy-securechat.cfg as shipped.
    """

    def test_haproxyAcceptsItWithoutWarning(self) -> None:
        """
        C{haproxy -c} finds the example valid, without a warning.
        """
        result = subprocess.run([haproxy_binary(self), "-c", "-f", CONFIG], capture_output=True,
                                text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
        self.assertNotIn("WARNING", result.stderr + result.stdout)
        self.assertIn("Configuration file is valid", result.stdout)

    def test_plainTcpWithHealthChecksAndLongTimeouts(self) -> None:
        """
        The example balances in TCP mode (the handshake ends at the relay),
        by fewest connections, checks each relay's /health, and keeps quiet
        sessions longer than the relay's idle timeout (300 s).
        """
        with open(CONFIG) as f:
            lines = [line.split("#")[0].strip() for line in f]
        self.assertIn("mode tcp", lines)
        self.assertNotIn("mode http", lines)
        self.assertIn("balance leastconn", lines)
        self.assertIn("option httpchk GET /health", lines)
        self.assertIn("http-check expect string ok", lines)
        for timeout in ("client", "server", "tunnel"):
            self.assertIn(f"timeout {timeout} 10m", lines)
        self.assertFalse([line for line in lines if line.startswith("bind") and "ssl" in line])


class BalancedRelaysTests(unittest.TestCase):
    """
    HAProxy, configured from the example, in front of two relay processes.
    """

    def test_loginThroughBalancerAndFailover(self) -> None:
        """
        A user logs in through HAProxy (the relay's handshake passes
        through untouched); when one relay stops, its health check fails,
        HAProxy takes it out, and two users who connect then both reach the
        other and chat end to end.
        """
        from tests.test_endtoend import Deployment, listening_port, open_chat

        haproxy = haproxy_binary(self)
        d = Deployment(self)
        metrics = [free_port(), free_port()]
        relays = [d.relay("--listen", "tcp:0:interface=127.0.0.1", "--metrics",
                          f"tcp:{port}:interface=127.0.0.1") for port in metrics]
        ports = [listening_port(relay) for relay in relays]
        front = free_port()
        with open(CONFIG) as f:
            config = f.read()
        replacements = {
            "log /dev/log local0": "log stdout format raw local0",
            "bind :7070": f"bind 127.0.0.1:{front}",
            "127.0.0.1:7071 check port 9091": f"127.0.0.1:{ports[0]} check port {metrics[0]}",
            "127.0.0.1:7072 check port 9092": f"127.0.0.1:{ports[1]} check port {metrics[1]}",
            # The same checks, faster, so that the test is short.
            "inter 2s": "inter 200ms",
            # Within the file descriptors a test may have.
            "maxconn 100000": "maxconn 1000",
        }
        for old, new in replacements.items():
            self.assertIn(old, config)
            config = config.replace(old, new)
        work = tempfile.mkdtemp(prefix="sc-haproxy-")
        self.addCleanup(shutil.rmtree, work, True)
        path = os.path.join(work, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(config)
        balancer = Process(self, [haproxy, "-db", "-f", path], "haproxy", stdin=False)
        wait_listening(front, balancer)
        server = f"tcp:127.0.0.1:{front}"
        first = d.client("alice", server)
        first.expect(r"\* logged in as alice", timeout=30)
        first.send("!exit")
        self.assertEqual(first.wait(), 0)
        relays[0].stop()
        balancer.expect(r"Server securechat_relays/relay1 is DOWN")
        alice, bob = d.client("alice", server), d.client("bob", server)
        open_chat(alice, bob)
        alice.send("through the balancer")
        bob.expect(r"alice: through the balancer")
        relays[1].expect(r"user bob logged in from 127\.0\.0\.1")
        for user in (alice, bob):
            user.send("!exit")
            self.assertEqual(user.wait(), 0)
