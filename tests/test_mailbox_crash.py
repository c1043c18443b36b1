"""
Crash safety of the mailbox (issue 14): the real relay (C{twistd
securechat}, SQLite store) is killed with SIGKILL at several moments while
senders post a few thousand sealed letters, and restarted on the same data
directory; senders resend every letter not acknowledged, same id, same
bytes.  Afterwards every acknowledged letter is in the store exactly once,
and readable.

The load generator is benchmarks/letterload.py (mode C{crash}), a
subprocess built from the real protocol class, mailbox messages and letter
crypto; it says C{KILL n} once n letters are acknowledged, and this test
kills the relay when it reads that.  The schedule is seeded.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from twisted.trial import unittest

from tests.processes import BIN, ROOT, Process, environment

TWISTD = os.path.join(BIN, "twistd")
LETTERS = 3000
KILLS = 4
SEED = 14
SENDERS = ("s0", "s1", "s2", "s3")
RECIPIENTS = ("r0", "r1")


def make_data_dir(path: str) -> None:
    """A data directory with the generator's users (keys from their names)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from letterload import user_key  # type: ignore[import-not-found]

    from securechat.datadir import DataDir, UserDirectory, UserRecord, utc_text
    now = datetime.datetime.now(datetime.timezone.utc)
    data = DataDir(path)
    data.init(["localhost", "127.0.0.1"], now)
    directory = UserDirectory()
    for name in SENDERS + RECIPIENTS:
        directory.users[name] = UserRecord(name, user_key(name).public_key(), utc_text(now))
    data.save_users(directory)


class Relay:
    """
    One run of C{twistd securechat} on port 0, logging to a file of its
    own (its log is too long for a pipe nobody reads while it runs).
    """

    def __init__(self, test: unittest.TestCase, data_dir: str, work: str, run: int) -> None:
        self.log = os.path.join(work, f"relay-{run}.log")
        argv = [TWISTD, "--nodaemon", "--pidfile=", f"--logfile={self.log}", "securechat",
                "--data-dir", data_dir, "--listen", "tcp:0:interface=127.0.0.1",
                # the test is about durability, not the abuse limits
                "--letter-rate", "1000000", "--letter-burst", "1000000",
                "--mailbox-letters", "1000000", "--mailbox-bytes", str(1 << 34)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=environment(), cwd=ROOT)
        test.addCleanup(self.stop)
        self.port = self._port()

    def text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def _port(self) -> int:
        deadline = time.monotonic() + 30
        while True:
            match = re.search(r"RelayFactory.* starting on (\d+)", self.text())
            if match:
                return int(match.group(1))
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("the relay did not start; its log ends:\n" + self.text()[-3000:])
            time.sleep(0.05)  # polling for start-up, bounded by the deadline

    def kill(self) -> None:
        """SIGKILL, by PID: no clean shutdown, no last commit."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def kill_schedule(seed: int, letters: int, kills: int) -> list[int]:
    """
    C{kills} acknowledgement counts, one drawn in each of C{kills} equal
    stretches of the run (so two never fall within one window of letters).
    """
    rng = random.Random(seed)
    stretch = letters // (kills + 1)
    return [stretch * k + rng.randrange(stretch // 4, stretch * 3 // 4) for k in range(1, kills + 1)]


class CrashSafetyTests(unittest.TestCase):
    """Acknowledged letters survive SIGKILL of the relay, exactly once."""

    timeout = 180

    def setUp(self) -> None:
        if not os.path.exists(TWISTD):
            if os.environ.get("SECURECHAT_REQUIRE_SERVICES") == "1":
                self.fail(f"twistd is missing ({TWISTD}) and SECURECHAT_REQUIRE_SERVICES=1")
            raise unittest.SkipTest(f"SKIPPED LOUDLY: twistd is missing ({TWISTD})")

    def test_killedRelayLosesAndDuplicatesNoAcknowledgedLetter(self) -> None:
        """
        3,000 letters from 4 senders to 2 recipients; the relay is SIGKILLed
        after a seeded number of acknowledgements, 4 times while letters are
        in flight and once after the last acknowledgement, and restarted on
        the same data directory each time; senders resend every letter not
        acknowledged.  Then: every acknowledged letter (all of them, in the
        end) is stored exactly once, no other letter is stored, each has its
        body, the recipients' LIST_LETTERS totals match, and a seeded sample
        of 100 letters fetched through the protocol opens with the sender's
        signature verified and the content as sent.
        """
        work = tempfile.mkdtemp(prefix="sc-crash-")
        self.addCleanup(shutil.rmtree, work, True)
        data_dir = os.path.join(work, "data")
        make_data_dir(data_dir)
        schedule = kill_schedule(SEED, LETTERS, KILLS)
        runs = 0
        relay = Relay(self, data_dir, work, runs)
        load = Process(self, [sys.executable, os.path.join(ROOT, "benchmarks", "letterload.py"),
                              "crash", "--data-dir", data_dir, "--letters", str(LETTERS),
                              "--senders", str(len(SENDERS)), "--recipients", str(len(RECIPIENTS)),
                              "--window", "32", "--kill-at", ",".join(map(str, schedule)),
                              "--sample", "100", "--seed", str(SEED)], "letterload")
        load.send(f"PORT {relay.port}")
        load.expect(rf"^SEALED {LETTERS}$", timeout=60)
        for n in schedule:
            load.expect(rf"^KILL {n}$", timeout=60)
            relay.kill()
            load.expect(r"^LOST$")
            runs += 1
            relay = Relay(self, data_dir, work, runs)
            load.send(f"PORT {relay.port}")
        load.expect(r"^ACKED$", timeout=60)
        relay.kill()
        runs += 1
        relay = Relay(self, data_dir, work, runs)
        load.send(f"VERIFY {relay.port}")
        result = json.loads(load.expect(r"^\{.*\}$", timeout=60).group(0))
        self.assertEqual(load.wait(), 0, load.output()[-3000:])
        relay.stop()

        db = sqlite3.connect(os.path.join(data_dir, "mailbox.sqlite3"))
        self.addCleanup(db.close)
        rows = db.execute("SELECT sender, lower(hex(letter_id)), COUNT(*) FROM letters"
                          " GROUP BY sender, letter_id").fetchall()
        acked = {(s, lid) for s, lid in result["acked"]}
        lost = sorted(acked - {(s, lid) for s, lid, _ in rows})
        self.assertEqual(lost[:5], [], f"{len(lost)} acknowledged letters lost")
        self.assertEqual(result["missing"], [], "sampled letters the relay could not fetch")
        self.assertEqual(len(acked), LETTERS)
        self.assertEqual(result["reconnects"], KILLS)
        self.assertEqual(sum(result["totals"].values()), LETTERS)
        self.assertEqual(result["opened"], 100)
        self.assertEqual([r for r in rows if r[2] != 1], [])
        self.assertEqual({(s, lid) for s, lid, _ in rows}, acked)
        [(bodies,)] = db.execute("SELECT COUNT(*) FROM letter_bodies JOIN letters"
                                 " ON letter_bodies.letter = letters.id").fetchall()
        self.assertEqual(bodies, LETTERS)
        for run in range(runs + 1):
            with open(os.path.join(work, f"relay-{run}.log"), errors="replace") as f:
                self.assertNotIn("letter 1 from", f.read())
