"""
The browser client's JavaScript tests (securechat/web/tests, Node's own
test runner) from the trial run, so the one test command covers them:
the protocol core against docs/protocol.rst's test vectors, byte for byte.

Without Node (20 or later) the test skips, loudly, unless
SECURECHAT_REQUIRE_SERVICES=1 (as in .ci/run, which installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from twisted.trial import unittest

from tests.processes import ROOT

NODE = shutil.which("node")
REQUIRED = os.environ.get("SECURECHAT_REQUIRE_SERVICES") == "1"
WEB = os.path.join(ROOT, "securechat", "web")


def _node_major() -> int:
    assert NODE is not None
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout
    return int(out.strip().lstrip("v").split(".")[0])


class BrowserCoreTests(unittest.TestCase):
    """
    The JavaScript protocol core passes its tests.
    """

    def setUp(self) -> None:
        problem = None
        if NODE is None:
            problem = "node is not installed"
        elif _node_major() < 20:
            problem = f"node {_node_major()} is too old (20 or later has WebCrypto's X25519)"
        if problem is not None:
            message = (f"{problem}: the browser client's protocol core was NOT tested "
                       "(install nodejs; .ci/run does)")
            if REQUIRED:
                self.fail(message)
            raise unittest.SkipTest(message)

    def test_nodeTests(self) -> None:
        """
        C{node --test securechat/web/tests/} passes: the JavaScript core
        reproduces the spec's vectors (13.1, 13.2) and fails each bad
        input with the spec's error code.
        """
        assert NODE is not None
        result = subprocess.run([NODE, "--test", "tests/"], cwd=WEB, capture_output=True,
                                text=True, timeout=600)
        summary = [line for line in result.stdout.splitlines()
                   if line.startswith(("# pass", "# fail", "not ok"))]
        self.assertEqual(result.returncode, 0, "\n".join(summary) + result.stderr[-2000:])
        self.assertIn("# fail 0", summary)


class X509FixtureTests(unittest.TestCase):
    """
    The browser's section-9 fixtures carry the reference implementation's
    verdicts.
    """

    def test_verdictsAreTheReferences(self) -> None:
        """
        For every committed fixture (securechat/web/tests/x509-fixtures.json)
        L{securechat.crypto.x509.check_server_identity} still gives the
        recorded verdict, so the browser is held to what the Python client
        does (tests/x509_fixtures.py makes them).
        """
        import datetime
        import json
        from tests.x509_fixtures import PATH, verdict
        with open(PATH) as f:
            fixtures = json.load(f)
        self.assertGreater(len(fixtures), 20)
        for f in fixtures:
            now = datetime.datetime.fromisoformat(f["now"].replace("Z", "+00:00"))
            got = verdict([bytes.fromhex(c) for c in f["chain"]], bytes.fromhex(f["crl"]),
                          bytes.fromhex(f["ca"]), f["name"], now, f["seen"])
            self.assertEqual(got, f["expect"], f["title"])

    def test_relayFixturesAreTheReferences(self) -> None:
        """
        securechat/web/tests/relay-fixtures.json holds what
        L{securechat.wire.relay} encodes now (tests/relay_fixtures.py), so
        the browser's relay codec is held to the reference's bytes.
        """
        import json
        from tests.relay_fixtures import PATH, fixtures
        with open(PATH) as f:
            self.assertEqual(json.load(f), fixtures())
