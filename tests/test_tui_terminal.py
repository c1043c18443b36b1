"""
The full-screen interface on a real terminal: a real relay and three real
C{securechat-client} processes, each in its own C{tmux} session (a private
tmux server, killed at the end), typed at with C{send-keys} and read with
C{capture-pane}.  Every wait is bounded; nothing is left running.

Without tmux the test skips, loudly, unless SECURECHAT_REQUIRE_SERVICES=1
(set by .ci/run, which installs tmux): then it fails.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from twisted.trial import unittest

from tests.processes import ROOT, TIMEOUT, admin, environment
from tests.test_endtoend import Deployment, listening_port

TMUX = shutil.which("tmux")
REQUIRED = os.environ.get("SECURECHAT_REQUIRE_SERVICES") == "1"


class Tmux:
    """
    A private tmux server (its own socket), one session per client.
    """

    def __init__(self, test: unittest.TestCase, directory: str) -> None:
        assert TMUX is not None
        self.socket = os.path.join(directory, "tmux.sock")
        test.addCleanup(self.kill)

    def run(self, *args: str) -> str:
        result = subprocess.run([TMUX, "-S", self.socket, *args], capture_output=True,
                                text=True, timeout=TIMEOUT)
        if result.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def start(self, name: str, argv: list[str]) -> None:
        env = environment()
        command = " ".join(shlex.quote(a) for a in [
            "env", f"PYTHONPATH={env['PYTHONPATH']}", "TERM=screen", *argv])
        # The pane outlives the client long enough to show its exit status.
        # "stty -a" then shows whether the terminal's settings were restored.
        shell = (f"cd {shlex.quote(ROOT)} && {command}; echo \"exited $?\"; "
                 "stty -a | tr ' ' '\\n' | grep -x -- '-\\?isig'; sleep 60")
        self.run("new-session", "-d", "-s", name, "-x", "120", "-y", "30", shell)

    def keys(self, name: str, *keys: str) -> None:
        self.run("send-keys", "-t", name, *keys)

    def type(self, name: str, text: str, enter: bool = True) -> None:
        self.run("send-keys", "-t", name, "-l", text)
        if enter:
            self.keys(name, "Enter")

    def screen(self, name: str) -> list[str]:
        return self.run("capture-pane", "-p", "-t", name).splitlines()

    def expect(self, name: str, pattern: str, row: int | None = None) -> list[str]:
        """
        Wait (bounded) until C{name}'s screen, or its row C{row}, matches.
        """
        deadline = time.monotonic() + TIMEOUT
        regex = re.compile(pattern, re.MULTILINE)
        while True:
            rows = self.screen(name)
            text = "\n".join(rows) if row is None else (rows[row] if len(rows) > abs(row) else "")
            if regex.search(text):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: no {pattern!r} on screen within {TIMEOUT}s:\n"
                                     + "\n".join(rows))
            time.sleep(0.1)  # polling a real terminal, bounded by the deadline

    def kill(self) -> None:
        subprocess.run([TMUX, "-S", self.socket, "kill-server"], capture_output=True,
                       timeout=TIMEOUT)


class FullScreenTerminalTests(unittest.TestCase):
    """
    Two (then three) users chat through the full-screen interface.
    """

    def setUp(self) -> None:
        if TMUX is None:
            message = "tmux is not installed: the full-screen interface was NOT tested on a " \
                      "real terminal (install tmux; .ci/run does)"
            if REQUIRED:
                self.fail(message)
            raise unittest.SkipTest(message)

    def test_chatInTmux(self) -> None:
        """
        alice and bob chat in windows; an incoming line does not disturb
        alice's half-typed line; pasted lines arrive in order; carol's request opens its own window,
        which alice switches to with Alt-3 and accepts; a resized terminal
        is redrawn; Ctrl-C ends both chats with authenticated ends, the
        client exits with 0 and the terminal's settings are restored.
        """
        d = Deployment(self)
        admin(d.data, "new-user", "carol", "--out", os.path.join(d.dir, "keys"),
              "--passphrase-file", d.passfiles["alice"])
        d.keys["carol"] = os.path.join(d.dir, "keys", "carol.key")
        d.passfiles["carol"] = d.passfiles["alice"]
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1")
        server = f"tcp:127.0.0.1:{listening_port(relay)}"
        tmux = Tmux(self, d.dir)
        for name in ("alice", "bob", "carol"):
            tmux.start(name, [
                sys.executable, "-m", "securechat.client",
                "--config", os.path.join(d.dir, "no-such-config.ini"),
                "--server", server, "--ca", d.ca, "--user", name, "--key", d.keys[name],
                "--passphrase-file", d.passfiles[name],
                "--known-peers", os.path.join(d.dir, f"{name}.known_peers")])
        for name in ("alice", "bob", "carol"):
            tmux.expect(name, rf"{name}@{re.escape(server[4:])} connected \| \[1:status\]", -2)

        tmux.type("alice", "/chat bob")
        tmux.expect("alice", r"\[2:bob\] requested", -2)
        tmux.expect("bob", r"alice wants to chat")
        tmux.type("bob", "/accept alice")
        tmux.expect("alice", r"\[2:bob\] e2e encrypted SHA256:\S{8}", -2)
        tmux.expect("bob", r"\[2:alice\] e2e encrypted SHA256:\S{8}", -2)
        tmux.type("alice", "hello bob")
        tmux.expect("bob", r"<alice> hello bob")

        tmux.type("alice", "half-typed line", enter=False)
        tmux.type("bob", "interrupting you")
        rows = tmux.expect("alice", r"<bob> interrupting you")
        self.assertEqual(rows[-1].rstrip(), "[bob] half-typed line", rows)
        tmux.type("alice", " ends here")
        tmux.expect("bob", r"<alice> half-typed line ends here")

        # A paste of several lines (tmux pastes each newline as Enter).
        tmux.run("set-buffer", "pasted one\npasted two\npasted three\n")
        tmux.run("paste-buffer", "-t", "alice")
        rows = tmux.expect("bob", r"<alice> pasted three")
        pasted = [row for row in rows if "<alice> pasted" in row]
        self.assertEqual([row.split("<alice> ")[1].rstrip() for row in pasted],
                         ["pasted one", "pasted two", "pasted three"])

        tmux.type("carol", "/chat alice")
        tmux.expect("alice", r"act: 1,3:carol\(1\)", -2)
        tmux.keys("alice", "M-3")
        tmux.expect("alice", r"\[3:carol\] asks to chat", -2)
        tmux.type("alice", "/accept")
        tmux.expect("carol", r"\[2:alice\] e2e encrypted", -2)
        tmux.type("carol", "hi alice")
        tmux.expect("alice", r"<carol> hi alice")
        tmux.keys("alice", "M-2")
        rows = tmux.expect("alice", r"\[2:bob\] e2e encrypted", -2)
        self.assertNotIn("hi alice", "\n".join(rows))

        tmux.run("resize-window", "-t", "alice", "-x", "70", "-y", "12")
        rows = tmux.expect("alice", r"^ alice@.* connected \| \[2:bob\]", -2)
        self.assertEqual(len(rows), 12, rows)
        self.assertTrue(rows[-1].startswith("[bob]"), rows)

        tmux.keys("alice", "C-c")
        tmux.expect("bob", r"chat with alice ended by alice \(5 messages received\)")
        tmux.expect("carol", r"chat with alice ended by alice \(0 messages received\)")
        tmux.expect("alice", r"^exited 0\nisig$")  # and Ctrl-C is a signal again
        relay.stop()
        self.assertNotIn("Traceback", relay.output())
