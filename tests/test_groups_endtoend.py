"""
Groups end to end with real processes: C{twistd securechat} and three
C{securechat-client}s in line mode (L{tests.processes}); every wait polls
the processes' output, none sleeps.
"""

from __future__ import annotations

import os
import stat

from twisted.trial import unittest

from tests.processes import admin
from tests.test_endtoend import Deployment, listening_port


class GroupProcessTests(unittest.TestCase):
    """alice, bob and carol in a group through a real relay."""

    def test_threeUsersOfflineAndRemoved(self) -> None:
        """
        alice makes #team and adds bob (online) and carol (offline); carol
        gets alice's message when she logs in; then alice removes bob, who
        is shown his removal and gets nothing sent after it, while carol
        reads it.  Each group file is mode 0600; the relay's output holds
        no message text.
        """
        d = Deployment(self)
        carol_pass = os.path.join(d.dir, "carol.pass")
        with open(carol_pass, "w") as f:
            f.write("carol's passphrase\n")
        admin(d.data, "new-user", "carol", "--out", os.path.join(d.dir, "keys"), "--passphrase-file",
              carol_pass)
        d.keys["carol"] = os.path.join(d.dir, "keys", "carol.key")
        d.passfiles["carol"] = carol_pass
        relay = d.relay("--listen", "tcp:0:interface=127.0.0.1")
        server = f"tcp:127.0.0.1:{listening_port(relay)}"

        carol = d.client("carol", server)
        carol.expect(r"\* logged in as carol")
        carol.send("!users")  # answered after the prekey upload: carol's prekeys are on the relay
        carol.expect(r"\* users: ")
        carol.send("!exit")
        self.assertEqual(carol.wait(), 0, carol.output())

        alice = d.client("alice", server)
        bob = d.client("bob", server)
        alice.expect(r"\* logged in as alice")
        bob.expect(r"\* logged in as bob")
        alice.send("!group create team")
        alice.expect(r"\* #team: alice created the group \(change 1, signed by alice: verified\)")
        alice.send("!group add team bob")
        bob.expect(r"\* #team: alice added bob \(change 2, signed by alice: verified\)")
        alice.send("!group add team carol")
        alice.expect(r"\* #team: alice added carol \(change 3")
        bob.expect(r"\* #team: alice added carol \(change 3")
        alice.send("!g team hello team")
        bob.expect(r"\] #team <alice> hello team")

        carol = d.client("carol", server)
        carol.expect(r"\* logged in as carol")
        carol.expect(r"\] #team <alice> hello team")

        alice.send("!group remove team bob")
        alice.expect(r"\* #team: alice removed bob \(change 4")  # her next message uses a new chain
        bob.expect(r"\* #team: alice removed bob \(change 4, signed by alice: verified\)")
        carol.expect(r"\* #team: alice removed bob")
        alice.send("!g team after bob left")
        carol.expect(r"\] #team <alice> after bob left")
        bob.send("!groups")  # answered after anything the relay queued for bob before
        bob.expect(r"\* you are in no group")
        self.assertNotIn("after bob left", bob.output())

        for p in (alice, bob, carol):
            p.send("!exit")
            self.assertEqual(p.wait(), 0, p.output())
        for name in ("alice", "bob", "carol"):
            path = os.path.join(d.dir, f"groups-{name}.sqlite3")
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertNotIn("hello team", relay.output())
        self.assertNotIn("after bob left", relay.output())
