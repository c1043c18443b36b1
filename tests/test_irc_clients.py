"""
The IRC gateway with real IRC clients from Debian: C{weechat-headless}
(scripted with C{--run}, read from its log files) and irssi (in a private
tmux server, read from its log files), each as alice through her gateway
(C{securechat-client --irc}), chatting with bob on the line terminal
through a real relay (C{twistd securechat}), all on loopback.  Every wait
polls with a deadline; every process is stopped by PID at the end.

Without weechat-headless, irssi or tmux a test skips, loudly, unless
SECURECHAT_REQUIRE_SERVICES=1 (set by .ci/run, which installs them): then
it fails.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import time

from twisted.trial import unittest

from tests.processes import TIMEOUT, Process, admin, client
from tests.test_endtoend import Deployment, listening_port
from tests.test_tui_terminal import Tmux

WEECHAT = shutil.which("weechat-headless")
IRSSI = shutil.which("irssi")
TMUX = shutil.which("tmux")
REQUIRED = os.environ.get("SECURECHAT_REQUIRE_SERVICES") == "1"
PASSWORD = "irc-gateway-password"


def need(test: unittest.TestCase, *tools: tuple[str, str | None]) -> None:
    """Skip loudly (fail under SECURECHAT_REQUIRE_SERVICES=1) without a tool."""
    missing = [name for name, path in tools if path is None]
    if missing:
        message = (f"{', '.join(missing)} not installed: the IRC gateway was NOT tested with a "
                   "real IRC client (apt-get install weechat-headless irssi tmux; .ci/run does)")
        if REQUIRED:
            test.fail(message)
        raise unittest.SkipTest(message)


def wait_for_file(pattern: str, regex: str, what: str) -> str:
    """
    Poll (bounded) until a file matching the glob C{pattern} holds a line
    matching C{regex}; return that line.
    """
    deadline = time.monotonic() + TIMEOUT
    compiled = re.compile(regex)
    seen = ""
    while True:
        for path in glob.glob(pattern):
            with open(path, encoding="utf-8", errors="replace") as f:
                seen = f.read()
            for line in seen.splitlines():
                if compiled.search(line):
                    return line
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: no line matching {regex!r} in {pattern} within "
                                 f"{TIMEOUT}s; last seen:\n{seen[-3000:]}")
        time.sleep(0.1)  # polling a real client's log, bounded by the deadline


def ask_gateway(port: int, command: str, answer: str) -> str:
    """
    Register with the gateway over a plain socket, send C{command} to the
    service nick, and wait (bounded) for a line matching C{answer}.
    """
    deadline = time.monotonic() + TIMEOUT
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"PASS {PASSWORD}\r\nNICK alice\r\nUSER alice 0 * :alice\r\n"
                     f"PRIVMSG securechat :{command}\r\n".encode())
        data = b""
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            for line in data.decode("utf-8", "replace").splitlines():
                if re.search(answer, line):
                    sock.sendall(b"QUIT\r\n")
                    return line
    raise AssertionError(f"the gateway did not answer {command!r} with {answer!r}:\n"
                         + data.decode("utf-8", "replace")[-3000:])


class IrcDeployment(Deployment):
    """A relay, bob's line terminal, and alice's gateway."""

    def __init__(self, test: unittest.TestCase) -> None:
        super().__init__(test)
        self.password_file = os.path.join(self.dir, "irc.pass")
        with open(self.password_file, "w") as f:
            f.write(PASSWORD + "\n")
        relay = self.relay("--listen", "tcp:0:interface=127.0.0.1")
        self.server = f"tcp:127.0.0.1:{listening_port(relay)}"
        self.relay_process = relay

    def gateway(self) -> tuple[Process, int]:
        """alice's gateway, logged in; with the port it listens on."""
        gateway = client(self.test, "alice", self.server, self.ca, self.keys["alice"],
                         self.passfiles["alice"], self.dir, "--irc", "tcp:0:interface=127.0.0.1",
                         "--irc-password-file", self.password_file)
        port = int(gateway.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        gateway.expect(r"\* logged in to the relay as alice")
        return gateway, port

    def bob(self) -> Process:
        bob = self.client("bob", self.server)
        bob.expect(r"\* logged in as bob")
        return bob

    def carol(self) -> Process:
        """carol, a new user, on the line terminal."""
        carol_pass = os.path.join(self.dir, "carol.pass")
        with open(carol_pass, "w") as f:
            f.write("carol's passphrase\n")
        admin(self.data, "new-user", "carol", "--out", os.path.join(self.dir, "keys"),
              "--passphrase-file", carol_pass)
        self.keys["carol"] = os.path.join(self.dir, "keys", "carol.key")
        self.passfiles["carol"] = carol_pass
        carol = self.client("carol", self.server)
        carol.expect(r"\* logged in as carol")
        return carol

    def team(self, bob: Process, carol: Process) -> None:
        """bob makes #team and adds alice and carol."""
        bob.send("!group create team")
        bob.expect(r"\* #team: bob created the group")
        bob.send("!group add team alice")
        bob.expect(r"\* #team: bob added alice \(change 2")
        bob.send("!group add team carol")
        bob.expect(r"\* #team: bob added carol \(change 3")
        carol.expect(r"\* #team: bob added carol \(change 3")

    def letter_while_away(self) -> str:
        """
        alice's gateway logs in once (her prekeys go up) and stops; bob
        sends her a letter, stored by the relay; bob leaves.
        """
        gateway, port = self.gateway()
        ask_gateway(port, "users", r"NOTICE alice :users: ")  # answered after the prekey upload
        gateway.stop()
        bob = self.bob()
        bob.send("!letter alice a letter while you were away")
        letter = bob.expect(r"\* letter ([0-9a-f]{8}) to alice stored by the relay").group(1)
        bob.send("!exit")
        self.test.assertEqual(bob.wait(), 0, bob.output())
        return letter


class WeeChatTests(unittest.TestCase):
    """alice in weechat-headless."""

    def setUp(self) -> None:
        need(self, ("weechat-headless", WEECHAT))

    def weechat(self, d: IrcDeployment, port: int, command: str) -> tuple[Process, str]:
        """
        weechat-headless as alice: a server for the gateway (password,
        nick), C{command} run once registered (the server's own
        C{command} option: no fixed wait), every buffer logged at once.
        """
        assert WEECHAT is not None
        home = os.path.join(d.dir, "weechat")
        os.makedirs(home)
        run = "; ".join([
            "/set logger.file.flush_delay 0",
            "/set logger.file.auto_log on",
            "/set irc.look.buffer_open_before_autojoin off",
            # The README's commands, with the port the gateway got.
            f"/server add sc 127.0.0.1/{port} -notls -password={PASSWORD} -nicks=alice",
            f"/set irc.server.sc.command \"{command}\"",
            "/connect sc",
        ])
        process = Process(self, [WEECHAT, "--dir", home, "--stdout", "--run", run], "weechat",
                          stdin=False)
        return process, os.path.join(home, "logs")

    def test_chatWithTerminalUser(self) -> None:
        """
        alice in WeeChat sends bob a line (/msg through the gateway, once
        registered); bob on the terminal client accepts and reads it; his
        answer reaches WeeChat's query buffer from bob; /me arrives as an
        action.
        """
        d = IrcDeployment(self)
        bob = d.bob()
        gateway, port = d.gateway()
        _, logs = self.weechat(d, port, "/msg bob hello from weechat")
        bob.expect(r"\* alice wants to chat")
        bob.send("!accept alice")
        bob.expect(r"\] alice: hello from weechat$")
        bob.send("alice: hi weechat, bob here")
        bob.send("//me waves")  # the current chat: "/me waves" travels, an action
        wait_for_file(os.path.join(logs, "irc.sc.bob.weechatlog"), r"\tbob\thi weechat, bob here$",
                      "weechat")
        wait_for_file(os.path.join(logs, "irc.sc.bob.weechatlog"), r"\s\*\tbob waves$", "weechat")
        gateway.stop()  # SIGTERM: the chat ends with alice's authenticated end
        bob.expect(r"\* chat with alice ended by alice \(1 messages received\)")
        self.assertNotIn("hello from weechat", d.relay_process.output())
        self.assertNotIn("hello from weechat", gateway.output())

    def test_letterForOfflineIrcUser(self) -> None:
        """
        bob writes alice a letter while her gateway is down; when it is up
        again, WeeChat shows it from bob, marked as a letter with its time.
        """
        d = IrcDeployment(self)
        letter = d.letter_while_away()
        _, port = d.gateway()
        _, logs = self.weechat(d, port, "/msg securechat status")
        line = wait_for_file(os.path.join(logs, "irc.sc.bob.weechatlog"),
                             rf"\tbob\t\[letter {letter}, written .* UTC\] a letter while you "
                             "were away$", "weechat")
        self.assertIn(letter, line)


    def test_channelWithThreeMembers(self) -> None:
        """
        bob (terminal) makes #team with alice (gateway) and carol
        (terminal); WeeChat, connecting then, is joined to #team; its line
        to the channel reaches bob and carol, and bob's answer is in
        WeeChat's #team buffer from bob.  The relay sees no text.
        """
        d = IrcDeployment(self)
        bob, carol = d.bob(), d.carol()
        gateway, port = d.gateway()
        d.team(bob, carol)
        # The gateway has taken all three changes once it counts 3 members.
        deadline = time.monotonic() + TIMEOUT
        answer = r"NOTICE alice :(no group team|\* #team: \d+ members)"
        while "3 members" not in ask_gateway(port, "members team", answer):
            self.assertLess(time.monotonic(), deadline, "the gateway never took the changes")
        _, logs = self.weechat(d, port, "/msg #team hello from weechat")
        bob.expect(r"\] #team <alice> hello from weechat")
        carol.expect(r"\] #team <alice> hello from weechat")
        bob.send("!g team hi weechat, bob here")
        wait_for_file(os.path.join(logs, "irc.sc.#team.weechatlog"),  # bob owns it: @bob
                      r"\t@bob\thi weechat, bob here$", "weechat")
        self.assertNotIn("hello from weechat", d.relay_process.output())
        self.assertNotIn("hi weechat", d.relay_process.output())


class IrssiTests(unittest.TestCase):
    """alice in irssi, on a real terminal (tmux)."""

    def setUp(self) -> None:
        need(self, ("irssi", IRSSI), ("tmux", TMUX))

    def irssi(self, d: IrcDeployment, port: int) -> tuple[Tmux, str]:
        """irssi as alice, connected to the gateway, logging every window."""
        assert IRSSI is not None
        home = os.path.join(d.dir, "irssi")
        logs = os.path.join(home, "logs")
        os.makedirs(logs)
        with open(os.path.join(home, "config"), "w") as f:
            f.write('settings = {\n  core = { real_name = "alice"; user_name = "alice"; '
                    'nick = "alice"; };\n  "fe-common/core" = { autolog = "yes"; '
                    f'autolog_path = "{logs}/$0.log"; autolog_level = "all"; }};\n}};\n')
        tmux = Tmux(self, d.dir)
        tmux.start("irssi", [IRSSI, f"--home={home}"])
        tmux.expect("irssi", r"Irssi")
        tmux.type("irssi", f"/connect 127.0.0.1 {port} {PASSWORD} alice")  # as in the README
        tmux.expect("irssi", r"Welcome to the securechat gateway")
        return tmux, logs

    def test_chatWithTerminalUser(self) -> None:
        """
        alice in irssi asks bob to chat with /msg; bob accepts and reads
        it; his answer reaches irssi from bob; /quit ends the chat cleanly
        (bob sees alice's authenticated end).
        """
        d = IrcDeployment(self)
        bob = d.bob()
        _, port = d.gateway()
        tmux, logs = self.irssi(d, port)
        tmux.type("irssi", "/msg bob hello from irssi")
        bob.expect(r"\* alice wants to chat")
        bob.send("!accept alice")
        bob.expect(r"\] alice: hello from irssi$")
        bob.send("alice: hi irssi, bob here")
        wait_for_file(os.path.join(logs, "bob.log"), r"<.?bob> hi irssi, bob here$", "irssi")
        tmux.type("irssi", "/quit")
        bob.expect(r"\* chat with alice ended by alice \(1 messages received\)")

    def test_letterForOfflineIrcUser(self) -> None:
        """A letter sent while alice's gateway was down reaches irssi, marked as a letter."""
        d = IrcDeployment(self)
        letter = d.letter_while_away()
        _, port = d.gateway()
        _, logs = self.irssi(d, port)
        wait_for_file(os.path.join(logs, "bob.log"),
                      rf"<.?bob> \[letter {letter}, written .* UTC\] a letter while you were away$",
                      "irssi")

    def test_channelWithThreeMembers(self) -> None:
        """
        With irssi connected, bob (terminal) makes #team with alice and
        carol: irssi is joined to #team; its line there reaches bob and
        carol, and bob's answer is in irssi's #team log.
        """
        d = IrcDeployment(self)
        bob, carol = d.bob(), d.carol()
        _, port = d.gateway()
        tmux, logs = self.irssi(d, port)
        d.team(bob, carol)
        channel_log = os.path.join(logs, "#team.log")
        wait_for_file(channel_log, r"alice .* has joined #team", "irssi")
        wait_for_file(channel_log, r"bob added carol \(change 3", "irssi")
        tmux.type("irssi", "/msg #team hello from irssi")
        bob.expect(r"\] #team <alice> hello from irssi")
        carol.expect(r"\] #team <alice> hello from irssi")
        bob.send("!g team hi irssi, bob here")
        wait_for_file(channel_log, r"<@bob> hi irssi, bob here$", "irssi")
        self.assertNotIn("hello from irssi", d.relay_process.output())
