"""
A throwaway Redis for the tests of several relay processes (DESIGN §9):
C{redis-server} on a unix socket in a temporary directory, no TCP port, no
persistence, started by the test and stopped by PID when it ends.  Where
C{redis-server} is missing the test is skipped loudly, or fails under
C{SECURECHAT_REQUIRE_SERVICES=1} (L{tests.services.need_service}).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from twisted.trial import unittest

from tests.services import need_service

REDIS_SERVER = shutil.which("redis-server")
STARTUP = 10.0


def need_redis(test: unittest.TestCase) -> None:
    """Skip (loudly) or fail C{test} when redis-server or txredisapi is missing."""
    missing = [] if REDIS_SERVER else ["redis-server"]
    try:
        import txredisapi  # noqa: F401
    except ImportError:
        missing.append("txredisapi")
    need_service(test, missing, "running several relay processes on Redis",
                 "apt-get install redis-server; pip install '.[test]'")


class RedisServer:
    """One redis-server, on C{self.socket}; L{stop} and L{start} again keep the path."""

    def __init__(self, test: unittest.TestCase) -> None:
        need_redis(test)
        self.dir = tempfile.mkdtemp(prefix="sc-redis-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.socket = os.path.join(self.dir, "redis.sock")
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None
        test.addCleanup(self.stop)
        self.start()

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
             "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}")
            if self.ping():
                return
            time.sleep(0.02)
        raise AssertionError(f"redis-server did not answer on {self.socket} within {STARTUP}s")

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1.0)
                s.connect(self.socket)
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes | int | None:
        """
        Run one command whose reply is a status, an integer or a string
        (GET, EXISTS, ...), for checks of what is in Redis.
        """
        request = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5.0)
            s.connect(self.socket)
            s.sendall(request)
            reply = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    raise AssertionError(f"redis-server closed the connection: {reply!r}")
                reply += chunk
                head, sep, rest = reply.partition(b"\r\n")
                if not sep:
                    continue
                kind, value = head[:1], head[1:]
                if kind in (b"+", b"-"):
                    return value
                if kind == b":":
                    return int(value)
                if kind == b"$":
                    size = int(value)
                    if size < 0:
                        return None
                    if len(rest) >= size + 2:
                        return rest[:size]
                    continue
                raise AssertionError(f"reply not handled here: {reply!r}")

    def stop(self) -> None:
        """Stop it (by PID), at once, as a crash or a restart would."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        if os.path.exists(self.socket):
            os.unlink(self.socket)
