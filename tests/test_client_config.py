"""
Tests for the client's config file (issue 13): environment variables and
C{~} in paths, an unset variable named, and C{--init-config}.
"""

from __future__ import annotations

import configparser
import io
import os
import sys

from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from securechat.client.cli import (
    EXAMPLE_CONFIG,
    KEYS,
    ClientError,
    read_config,
    run,
    settings,
    write_example_config,
)


class ConfigTests(unittest.TestCase):
    """
    What the config file accepts, and the example it writes.
    """

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "client.ini")
        old = os.environ.get("SC_TEST_DIR")
        os.environ["SC_TEST_DIR"] = "/srv/keys"
        self.addCleanup(lambda: os.environ.pop("SC_TEST_DIR") if old is None
                        else os.environ.__setitem__("SC_TEST_DIR", old))

    def test_environmentVariablesExpanded(self) -> None:
        """
        $VAR and ${VAR} in a path setting are the environment's values,
        from the file and from the command line.
        """
        with open(self.config, "w") as f:
            f.write("[securechat]\nca = $SC_TEST_DIR/ca.pem\nuser = alice\n"
                    "key = ${SC_TEST_DIR}/alice.key\n")
        conf = settings(["--config", self.config, "--known-peers", "$SC_TEST_DIR/peers"])
        self.assertEqual((conf["ca"], conf["key"], conf["known-peers"]),
                         ("/srv/keys/ca.pem", "/srv/keys/alice.key", "/srv/keys/peers"))

    def test_unsetVariableRefused(self) -> None:
        """
        A variable that is not set is refused in one line naming it and
        the setting, instead of becoming a path that does not exist.
        """
        with open(self.config, "w") as f:
            f.write("[securechat]\nca = /ca.pem\nuser = alice\nkey = $SC_NO_SUCH_VAR/a.key\n")
        e = self.assertRaises(ClientError, settings, ["--config", self.config])
        self.assertEqual(str(e), "key = $SC_NO_SUCH_VAR/a.key: the environment variable "
                                 "SC_NO_SUCH_VAR is not set")

    def test_exampleIsValidAndCommented(self) -> None:
        """
        The example names every setting, all commented out: as written it
        sets nothing, and uncommented it is accepted.
        """
        write_example_config(self.config)
        self.assertEqual(read_config(self.config), {})
        with open(self.config, "w") as f:
            f.write(EXAMPLE_CONFIG.replace("\n#", "\n").replace("\n ", "\n# "))
        parser = configparser.ConfigParser()
        parser.read(self.config)
        uncommented = {k for k in parser["securechat"]}
        self.assertEqual(uncommented, set(KEYS))
        self.assertEqual(set(read_config(self.config)), set(KEYS))

    def test_initConfigNeverOverwrites(self) -> None:
        """
        --init-config writes the example at --config, creating the
        directory, says where, and exits 0; a second time it refuses, and
        the file is kept.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        path = os.path.join(self.dir, "sub", "client.ini")
        d = run(MemoryReactorClock(), ["--config", path, "--init-config"])
        self.assertEqual(self.successResultOf(d), 0)
        self.assertIn(f"wrote an example config file to {path}", out.getvalue())
        with open(path) as f:
            self.assertEqual(f.read(), EXAMPLE_CONFIG)
        with open(path, "a") as f:
            f.write("# mine\n")
        e = self.assertRaises(SystemExit, run, MemoryReactorClock(),
                              ["--config", path, "--init-config"])
        self.assertEqual(str(e), f"securechat-client: error: {path} already exists; "
                                 "not overwritten")
        with open(path) as f:
            self.assertTrue(f.read().endswith("# mine\n"))
