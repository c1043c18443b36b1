"""
C{securechat-client --irc}: the loopback rule, the password file, the
options (L{securechat.client.irc.listen}, L{securechat.client.cli}).
"""

from __future__ import annotations

import os

from twisted.internet.testing import MemoryReactor
from twisted.trial import unittest

from securechat.client.cli import IRC_DEFAULT_ENDPOINT, parser, settings
from securechat.client.config import ClientError
from securechat.client.irc.connection import IrcConnection
from securechat.client.irc.gateway import IrcGateway
from securechat.client.irc.listen import check_local, check_user, listen, read_password


class LoopbackTests(unittest.TestCase):
    """Only this machine may reach the gateway unless told otherwise."""

    def test_defaultIsLoopback(self) -> None:
        """The default endpoint is port 6667 on 127.0.0.1, and accepted."""
        self.assertEqual(IRC_DEFAULT_ENDPOINT, "tcp:6667:interface=127.0.0.1")
        check_local(IRC_DEFAULT_ENDPOINT)

    def test_loopbackForms(self) -> None:
        """127.x, ::1 (escaped), localhost and unix: are local."""
        for ok in ("tcp:0:interface=127.0.0.2", r"tcp6:6667:interface=\:\:1",
                   "tcp:6667:interface=localhost", "unix:/tmp/irc.sock"):
            check_local(ok)

    def test_everyInterfaceRefused(self) -> None:
        """tcp:6667 (every interface) is refused, saying how to fix it."""
        with self.assertRaises(ClientError) as e:
            check_local("tcp:6667")
        self.assertIn("would listen on every interface, reachable from other machines; add "
                      "interface=127.0.0.1", str(e.exception))

    def test_publicInterfaceRefused(self) -> None:
        """A non-loopback interface is refused, named."""
        with self.assertRaises(ClientError) as e:
            check_local("tcp:6667:interface=192.0.2.7")
        self.assertIn("would listen on interface 192.0.2.7", str(e.exception))

    def test_unknownKindRefused(self) -> None:
        """An endpoint kind whose reach cannot be told is refused."""
        with self.assertRaises(ClientError) as e:
            check_local("systemd:domain=INET:index=0")
        self.assertIn("cannot tell whether --irc", str(e.exception))

    def test_allowRemote(self) -> None:
        """--irc-allow-remote lets any endpoint through."""
        check_local("tcp:6667", allow_remote=True)


class PasswordTests(unittest.TestCase):
    """PASS is required, from a file."""

    def test_required(self) -> None:
        """No password file: refused, saying what to give."""
        with self.assertRaises(ClientError) as e:
            read_password(None)
        self.assertIn("--irc needs --irc-password-file", str(e.exception))

    def test_missingFile(self) -> None:
        """A password file that cannot be read is refused, named."""
        with self.assertRaises(ClientError) as e:
            read_password("/nonexistent/irc.pass")
        self.assertIn("cannot read the IRC password file /nonexistent/irc.pass", str(e.exception))

    def test_emptyFile(self) -> None:
        """An empty password file is refused."""
        path = self.mktemp()
        open(path, "w").close()
        with self.assertRaises(ClientError) as e:
            read_password(path)
        self.assertIn("is empty", str(e.exception))

    def test_firstLine(self) -> None:
        """The password is the file's first line, without its newline."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("s3cret\nignored\n")
        self.assertEqual(read_password(path), b"s3cret")

    def test_serviceUserRefused(self) -> None:
        """The user named like the service nick cannot run a gateway."""
        with self.assertRaises(ClientError) as e:
            check_user("securechat")
        self.assertIn("is the gateway's service nick", str(e.exception))


class OptionTests(unittest.TestCase):
    """The command line."""

    def test_ircDefault(self) -> None:
        """--irc alone listens on the default endpoint; the flags parse."""
        args = parser().parse_args(["--irc", "--irc-accept-pinned"])
        self.assertEqual(args.irc, IRC_DEFAULT_ENDPOINT)
        self.assertTrue(args.irc_accept_pinned)
        self.assertIsNone(parser().parse_args([]).irc)

    def test_passwordFileFromConfig(self) -> None:
        """irc-password-file may be set in the config file (a path, ~ expanded)."""
        config = self.mktemp()
        with open(config, "w") as f:
            f.write("[securechat]\nuser = alice\nca = ca.pem\nkey = k.pem\n"
                    "irc-password-file = ~/irc.pass\n")
        conf = settings(["--config", config, "--irc", "unix:/tmp/x.sock"])
        self.assertEqual(conf["irc-password-file"], os.path.expanduser("~/irc.pass"))
        self.assertEqual(conf["irc"], "unix:/tmp/x.sock")

    def test_helpMentionsIrc(self) -> None:
        """--help describes --irc and its password file."""
        text = parser().format_help()
        self.assertIn("--irc [ENDPOINT]", text)
        self.assertIn("--irc-password-file", text)

    def test_listenBuildsConnections(self) -> None:
        """listen() listens on the endpoint with a factory of IrcConnections."""
        reactor = MemoryReactor()
        gateway = IrcGateway("alice")
        listen(reactor, "tcp:0:interface=127.0.0.1", gateway, b"pw")
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual(interface, "127.0.0.1")
        self.assertIsInstance(factory.buildProtocol(None), IrcConnection)

    def test_runRefusesBeforeConnecting(self) -> None:
        """
        securechat-client --irc refuses a reachable endpoint or a missing
        password file at start, in one line, before reading keys or
        connecting anywhere.
        """
        from securechat.client.cli import run
        base = ["--config", self.mktemp(), "--user", "alice", "--ca", "ca.pem", "--key", "k.pem"]
        reactor = MemoryReactor()
        with self.assertRaises(SystemExit) as e:
            run(reactor, base + ["--irc", "tcp:6667"])
        self.assertIn("securechat-client: error: --irc 'tcp:6667' would listen on every "
                      "interface", str(e.exception))
        with self.assertRaises(SystemExit) as e:
            run(reactor, base + ["--irc"])
        self.assertEqual(str(e.exception), "securechat-client: error: --irc needs "
                         "--irc-password-file: a file whose first line is the password your "
                         "IRC client sends (PASS)")
        self.assertEqual(reactor.tcpClients, [])

