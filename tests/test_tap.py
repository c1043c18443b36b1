"""
Tests for L{securechat.tap}: the options of C{twistd securechat} and their
help text.
"""

from __future__ import annotations

from twisted.python import usage
from twisted.trial import unittest

from securechat.server.limits import Limits
from securechat.tap import DEFAULT_LISTEN, LIMIT_OPTIONS, Options


class OptionsTests(unittest.TestCase):
    """
    Parsing and validating the relay's options.
    """

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.exit_on_usage_error = False
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        """
        With no options: the default listener, no metrics, the default data
        directory from the environment, and the default limits.
        """
        self.patch(__import__("os").environ, "get", lambda k, d=None: "/srv/sc" if k == "SECURECHAT_DATA_DIR" else d)
        options = self.parse()
        self.assertEqual(DEFAULT_LISTEN, "tcp:7070:interface=127.0.0.1")
        self.assertEqual(options["listen"], [DEFAULT_LISTEN])
        self.assertIsNone(options["metrics"])
        self.assertEqual(options["data-dir"], "/srv/sc")
        self.assertEqual(options["limits"], Limits())

    def test_severalListeners(self) -> None:
        """
        C{--listen} may be given several times, with any endpoint kind.
        """
        options = self.parse(
            "--listen", "tcp:7070:interface=127.0.0.1",
            "--listen", "unix:/tmp/securechat.sock",
            "-l", "systemd:domain=INET:index=0",
        )
        self.assertEqual(len(options["listen"]), 3)

    def test_tlsKeyMissing(self) -> None:
        """
        An ssl: endpoint whose key or certificate file cannot be read is a
        usage error naming the file.
        """
        e = self.assertRaises(
            usage.UsageError, self.parse,
            "--listen", "ssl:7443:privateKey=/nonexistent/key.pem:certKey=/nonexistent/cert.pem")
        self.assertIn("/nonexistent/", str(e))

    def test_badEndpoint(self) -> None:
        """
        An endpoint string that does not parse is a usage error naming it.
        """
        e = self.assertRaises(usage.UsageError, self.parse, "--listen", "tcp:notaport")
        self.assertIn("tcp:notaport", str(e))
        e = self.assertRaises(usage.UsageError, self.parse, "--listen", "carrier-pigeon:1")
        self.assertIn("--listen", str(e))

    def test_websocketListeners(self) -> None:
        """
        C{--listen-websocket} and C{--websocket-origin} may each be given
        several times; origins are kept as allow-list entries (lower case,
        no final slash); none of either by default.
        """
        self.assertEqual(self.parse()["listen-websocket"], [])
        self.assertEqual(self.parse()["websocket-origin"], [])
        options = self.parse("--listen-websocket", "tcp:7080:interface=127.0.0.1",
                             "--listen-websocket", "tcp:7081",
                             "--websocket-origin", "https://Chat.Example.org/",
                             "--websocket-origin", "http://localhost:7080")
        self.assertEqual(options["listen-websocket"], ["tcp:7080:interface=127.0.0.1", "tcp:7081"])
        self.assertEqual(options["websocket-origin"],
                         ["https://chat.example.org", "http://localhost:7080"])

    def test_webOffByDefault(self) -> None:
        """
        C{--web} is off unless given; a bad endpoint is a usage error
        naming the option.
        """
        self.assertIsNone(self.parse()["web"])
        self.assertEqual(self.parse("--web", "tcp:8080")["web"], "tcp:8080")
        e = self.assertRaises(usage.UsageError, self.parse, "--web", "tcp:notaport")
        self.assertIn("--web: bad endpoint 'tcp:notaport'", str(e))

    def test_badWebsocketOptions(self) -> None:
        """
        A bad WebSocket endpoint or an origin with a path is a usage error
        naming the option.
        """
        e = self.assertRaises(usage.UsageError, self.parse, "--listen-websocket", "tcp:notaport")
        self.assertIn("--listen-websocket: bad endpoint 'tcp:notaport'", str(e))
        e = self.assertRaises(usage.UsageError, self.parse,
                              "--websocket-origin", "https://chat.example.org/app")
        self.assertIn("--websocket-origin: 'https://chat.example.org/app' is not an origin", str(e))

    def test_badMetricsEndpoint(self) -> None:
        """
        A bad C{--metrics} endpoint is a usage error.
        """
        self.assertRaises(usage.UsageError, self.parse, "--metrics", "tcp:")

    def test_limits(self) -> None:
        """
        Every limit option sets its field of L{Limits}.
        """
        def changed(field: str) -> float:
            default = getattr(Limits(), field)
            # --max-frame and --max-letter are at their maxima already
            return default // 2 if field in ("max_frame", "max_letter") else default * 2
        argv = []
        for name, field, kind, _ in LIMIT_OPTIONS:
            argv += [f"--{name}", str(kind(changed(field)))]
        limits = self.parse(*argv)["limits"]
        for name, field, kind, _ in LIMIT_OPTIONS:
            self.assertEqual(getattr(limits, field), changed(field), name)

    def test_nonPositiveLimit(self) -> None:
        """
        Zero, negative or non-numeric limits are refused with a message
        naming the option.
        """
        for value in ("0", "-5", "lots"):
            e = self.assertRaises(usage.UsageError, self.parse, "--handshake-timeout", value)
            self.assertIn("--handshake-timeout", str(e))

    def test_maxFrameWithinWhatClientsAccept(self) -> None:
        """
        C{--max-frame} above 65536 is refused (clients accept no larger
        frame from the relay: a bigger RELAYED or ONLINE_LIST would cut
        them off), and so is one below 1024; 65536 itself is fine.
        """
        for value in ("65537", "1048576", "1023"):
            e = self.assertRaises(usage.UsageError, self.parse, "--max-frame", value)
            self.assertIn("--max-frame must be from 1024 to 65536", str(e))
        self.assertEqual(self.parse("--max-frame", "65536")["limits"].max_frame, 65536)

    def test_mailboxLimits(self) -> None:
        """
        C{--max-letter} above 49152 (what clients accept) is refused, and so
        is a C{--prekey-low-mark} above C{--max-one-time-prekeys}; the
        mailbox options reach the store's limits.
        """
        from securechat.server.mailbox import mailbox_limits
        e = self.assertRaises(usage.UsageError, self.parse, "--max-letter", "49153")
        self.assertIn("--max-letter must be at most 49152", str(e))
        e = self.assertRaises(usage.UsageError, self.parse, "--max-one-time-prekeys", "5",
                              "--prekey-low-mark", "6")
        self.assertIn("--prekey-low-mark must be at most --max-one-time-prekeys", str(e))
        limits = self.parse("--mailbox-letters", "7", "--mailbox-bytes", "9000",
                            "--expiry-days", "2", "--max-letter", "4000")["limits"]
        store = mailbox_limits(limits)
        self.assertEqual((store.max_letters, store.max_bytes, store.expiry_seconds,
                          store.max_letter_size), (7, 9000, 2 * 86400, 4000))

    def test_groupLimits(self) -> None:
        """
        The group options reach the relay's limits (members, groups per
        user, rate, burst, largest message), and C{--groups-per-user} above
        500 is refused (a user's GROUP_LIST must fit one record).
        """
        limits = self.parse("--group-members", "50", "--groups-per-user", "20", "--group-rate",
                            "2.5", "--group-burst", "9", "--max-group-message", "4000")["limits"]
        self.assertEqual((limits.max_group_members, limits.max_groups_per_user, limits.group_rate,
                          limits.group_burst, limits.group_message_limit),
                         (50, 20, 2.5, 9, 4000))
        e = self.assertRaises(usage.UsageError, self.parse, "--groups-per-user", "501")
        self.assertIn("--groups-per-user must be at most 500", str(e))
        text = str(Options())
        for option in ("--group-members", "--groups-per-user", "--group-rate", "--group-burst",
                       "--max-group-message"):
            self.assertIn(option, text)

    def test_hardBelowSoft(self) -> None:
        """
        A hard queue limit at or below the soft one is refused.
        """
        self.assertRaises(
            usage.UsageError, self.parse, "--queue-soft-limit", "1000", "--queue-hard-limit", "1000")

    def test_helpExplains(self) -> None:
        """
        C{--help} explains the defaults, endpoint kinds, metrics and every
        limit.
        """
        text = str(Options())
        for word in ("--data-dir", "--listen", "--metrics", "systemd:", "unix:", "ssl:",
                     "SIGHUP", "securechat-admin", DEFAULT_LISTEN, "--init",
                     "--allow-readable-keys", "--version", "--listen-websocket",
                     "--websocket-origin", "/relay", "--web"):
            self.assertIn(word, text)
        for name, _, _, _ in LIMIT_OPTIONS:
            self.assertIn(f"--{name}", text)


class CommandLineTests(unittest.TestCase):
    """
    What C{twistd securechat} prints for --version and for a mistake.
    """

    def test_version(self) -> None:
        """
        --version prints securechat's version and exits 0.
        """
        import io
        import sys
        from securechat import __version__
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        e = self.assertRaises(SystemExit, Options().parseOptions, ["--version"])
        self.assertEqual(e.code, 0)
        self.assertEqual(out.getvalue(), f"securechat {__version__}\n")

    def test_usageErrorOneLine(self) -> None:
        """
        A usage mistake is one line on standard error and exit status 2,
        not twistd's whole usage text before it.
        """
        import io
        import sys
        err, out = io.StringIO(), io.StringIO()
        self.patch(sys, "stderr", err)
        self.patch(sys, "stdout", out)
        e = self.assertRaises(SystemExit, Options().parseOptions, ["--listen", "tcp:notaport"])
        self.assertEqual(e.code, 2)
        self.assertEqual(out.getvalue(), "")
        self.assertTrue(err.getvalue().startswith(
            "twistd securechat: error: --listen: bad endpoint 'tcp:notaport'"), err.getvalue())
        self.assertEqual(err.getvalue().count("\n"), 1)

    def test_initAndDataDir(self) -> None:
        """
        Only the default data directory is created unasked; an explicit
        --data-dir needs --init to be created.
        """
        parse = OptionsTests.parse
        self.assertTrue(parse(self, )["create"])  # type: ignore[arg-type]
        self.assertFalse(parse(self, "--data-dir", "/srv/x")["create"])  # type: ignore[arg-type]
        self.assertTrue(parse(self, "--data-dir", "/srv/x", "--init")["create"])  # type: ignore[arg-type]


class ClusterOptionTests(unittest.TestCase):
    """--cluster, --process-id and --presence-ttl."""

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.exit_on_usage_error = False
        options.parseOptions(list(argv))
        return options

    def test_offByDefault(self) -> None:
        options = self.parse()
        self.assertIsNone(options["cluster"])
        self.assertIsNone(options["process-id"])

    def test_defaultProcessId(self) -> None:
        """Without --process-id: the host name and the process id."""
        import os
        import socket
        options = self.parse("--cluster", "unix:///run/redis/redis.sock")
        self.assertTrue(options["process-id"].endswith(f"-{os.getpid()}"))
        self.assertIn(socket.gethostname()[:10].replace(" ", ""), options["process-id"])
        self.assertEqual(options["presence-ttl"], 10.0)

    def test_given(self) -> None:
        options = self.parse("--cluster", "redis://10.0.0.5:6380/1", "--process-id", "relay2",
                             "--presence-ttl", "4.5")
        self.assertEqual((options["cluster"], options["process-id"], options["presence-ttl"]),
                         ("redis://10.0.0.5:6380/1", "relay2", 4.5))

    def test_badUrl(self) -> None:
        e = self.assertRaises(usage.UsageError, self.parse, "--cluster", "http://redis")
        self.assertIn("use redis://HOST[:PORT][/DB] or unix:///PATH/redis.sock", str(e))

    def test_badProcessId(self) -> None:
        e = self.assertRaises(usage.UsageError, self.parse, "--cluster", "redis://localhost",
                              "--process-id", "two words")
        self.assertIn("--process-id 'two words'", str(e))

    def test_processIdAlone(self) -> None:
        e = self.assertRaises(usage.UsageError, self.parse, "--process-id", "relay1")
        self.assertIn("--process-id needs --cluster", str(e))

    def test_nonPositiveTtl(self) -> None:
        e = self.assertRaises(usage.UsageError, self.parse, "--cluster", "redis://localhost",
                              "--presence-ttl", "0")
        self.assertIn("--presence-ttl must be greater than zero", str(e))

    def test_helpExplains(self) -> None:
        text = str(Options())
        for words in ("--cluster=", "several relay processes", "--process-id=",
                      "the process id, e.g. myhost-1234", "--presence-ttl="):
            self.assertIn(words, text)
