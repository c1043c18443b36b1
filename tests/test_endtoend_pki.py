"""
End-to-end tests of the relay's certificate with real processes: a
rotation with C{securechat-admin} while a real client is logged in.
"""

from __future__ import annotations

import json
import os

from twisted.trial import unittest

from tests.processes import admin
from tests.test_endtoend import Deployment, listening_port


class RotationEndToEndTests(unittest.TestCase):
    """
    The relay's certificate replaced while it runs.
    """

    def test_rotationReconnects(self) -> None:
        """
        alice is logged in; the operator runs C{securechat-admin
        rotate-server-cert}.  The relay picks the new certificate up by
        itself and ends alice's session made under the old one; her client
        says it reconnects (not a final error), checks the new certificate
        and logs in again, and remembers the new CRL, which revokes the old
        certificate.
        """
        d = Deployment(self)
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1")
        port = listening_port(relay)
        alice = d.client("alice", f"tcp:127.0.0.1:{port}")
        alice.expect(r"\* logged in as alice")
        with open(os.path.join(d.dir, "seen_crls.json")) as f:
            before = json.load(f)["cas"]
        admin(d.data, "rotate-server-cert")
        [(ca, seen)] = before.items()
        # One reload, of the whole rotation: the new certificate with the
        # CRL that revokes the old one, never with the CRL from before.
        reloaded = relay.expect(r"relay certificate and CRL reloaded \(certificate serial "
                                r"[0-9a-f]+, CRL number (\d+)\); 1 sessions under the previous "
                                r"certificate ended")
        self.assertEqual(int(reloaded.group(1)), seen["crl_number"] + 1)
        alice.expect(r"the relay changed its certificate; reconnecting to check the new one")
        alice.expect(r"\* logged in as alice")
        alice.send("!exit")
        self.assertEqual(alice.wait(), 0, alice.output())
        with open(os.path.join(d.dir, "seen_crls.json")) as f:
            [(ca_after, after)] = json.load(f)["cas"].items()
        self.assertEqual(ca_after, ca)
        self.assertEqual(after["crl_number"], seen["crl_number"] + 1)
        self.assertEqual(len(after["revoked"]), 1)
        relay.stop()
        self.assertEqual(relay.output().count("relay certificate and CRL reloaded"), 1)
        self.assertNotIn("Traceback", relay.output())
