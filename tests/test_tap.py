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

    def test_badMetricsEndpoint(self) -> None:
        """
        A bad C{--metrics} endpoint is a usage error.
        """
        self.assertRaises(usage.UsageError, self.parse, "--metrics", "tcp:")

    def test_limits(self) -> None:
        """
        Every limit option sets its field of L{Limits}.
        """
        argv = []
        for name, field, kind, _ in LIMIT_OPTIONS:
            argv += [f"--{name}", str(kind(getattr(Limits(), field)) * 2)]
        limits = self.parse(*argv)["limits"]
        for name, field, kind, _ in LIMIT_OPTIONS:
            self.assertEqual(getattr(limits, field), getattr(Limits(), field) * 2, name)

    def test_nonPositiveLimit(self) -> None:
        """
        Zero, negative or non-numeric limits are refused with a message
        naming the option.
        """
        for value in ("0", "-5", "lots"):
            e = self.assertRaises(usage.UsageError, self.parse, "--handshake-timeout", value)
            self.assertIn("--handshake-timeout", str(e))

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
                     "SIGHUP", "securechat-admin", DEFAULT_LISTEN):
            self.assertIn(word, text)
        for name, _, _, _ in LIMIT_OPTIONS:
            self.assertIn(f"--{name}", text)
