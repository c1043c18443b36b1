"""
Real processes for the end-to-end tests: C{twistd securechat},
C{securechat-client} and C{securechat-admin}, on loopback, each bounded in
time and stopped by PID when the test ends.

Subprocesses get C{PYTHONPATH} set to the working tree, so they run the code
under test and find its twistd plugin.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from typing import Sequence

from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
TIMEOUT = 30.0


def environment(**overrides: str) -> dict[str, str]:
    """
    The environment of a child process: ours, with the working tree on
    C{PYTHONPATH}, no data directory override, and C{overrides} (for
    example C{HOME}: the test's own environment is never changed).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("SECURECHAT_DATA_DIR", None)
    env.update(overrides)
    return env


class Process:
    """
    A child process whose output is read line by line, expect-style.
    """

    def __init__(self, test: unittest.TestCase, argv: Sequence[str], name: str,
                 stdin: bool = True, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or environment(),
            cwd=ROOT)
        self.lines: list[str] = []
        self._buffer = b""
        self._seen = 0
        test.addCleanup(self.stop)

    def _read(self, deadline: float) -> bool:
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return False
        finally:
            selector.close()
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            return False
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        self.lines.extend(line.decode("utf-8", "replace") for line in complete)
        return True

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """
        Wait for a line (after those already matched) matching C{pattern}.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self._seen, len(self.lines)):
                match = regex.search(self.lines[i])
                if match:
                    self._seen = i + 1
                    return match
            if not self._read(deadline):
                if time.monotonic() >= deadline or self.proc.poll() is not None:
                    raise AssertionError(
                        f"{self.name}: no line matching {pattern!r} within {timeout}s; output:\n"
                        + "\n".join(self.lines[-40:]))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = TIMEOUT) -> int:
        """
        Wait for the process to exit (reading its output); return its status.
        """
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(min(deadline, time.monotonic() + 0.2))
        while self._read(time.monotonic() + 0.1):
            pass
        status = self.proc.poll()
        if status is None:
            raise AssertionError(f"{self.name} did not exit; output:\n" + "\n".join(self.lines[-40:]))
        return status

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        """
        Stop the process (by PID) if it still runs.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def admin(data_dir: str, *argv: str) -> str:
    """
    Run C{securechat-admin}; return its output, failing loudly if it fails.
    """
    result = subprocess.run(
        [sys.executable, "-m", "securechat.admin", "--data-dir", data_dir, *argv],
        capture_output=True, text=True, env=environment(), cwd=ROOT, timeout=TIMEOUT)
    if result.returncode != 0:
        raise AssertionError(f"securechat-admin {' '.join(argv)} failed: {result.stderr}")
    return result.stdout


def twistd(test: unittest.TestCase, data_dir: str, *options: str,
           wrapper: Sequence[str] = ()) -> Process:
    """
    Start C{twistd -n securechat} with C{options}.
    """
    return Process(test, [*wrapper, os.path.join(BIN, "twistd"), "--nodaemon", "--pidfile=",
                          "securechat", "--data-dir", data_dir, *options], "relay", stdin=False)


def client(test: unittest.TestCase, name: str, server: str, ca: str, key: str,
           passphrase_file: str | None, workdir: str, *extra: str) -> Process:
    argv = [sys.executable, "-m", "securechat.client",
            "--config", os.path.join(workdir, "no-such-config.ini"),
            "--server", server, "--ca", ca, "--user", name, "--key", key,
            "--known-peers", os.path.join(workdir, f"{name}.known_peers"), *extra]
    if passphrase_file:
        argv += ["--passphrase-file", passphrase_file]
    return Process(test, argv, name)
