"""
A smoke test that the benchmark (benchmarks/run.py) still runs end to end,
with tiny counts.  The benchmark itself is not part of the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial import unittest

from tests.processes import ROOT, environment


class BenchmarkSmokeTests(unittest.TestCase):
    """
    benchmarks/run.py --smoke.
    """

    def test_smoke(self) -> None:
        """
        Both relays start, every case runs with tiny counts, and the table
        with securechat / baseline ratios is printed.
        """
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--smoke"],
            capture_output=True, text=True, env=environment(), cwd=ROOT, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        out = result.stdout
        self.assertIn("ratio", out)
        for case in ("1:1 saturation", "fan-out 1->100", "light 2000 msg/s", "handshakes",
                     "idle 1000 users"):
            self.assertIn(case, out)
        self.assertRegex(out, r"handshakes\s+handshakes_per_s\s+\d+\.\d\d\s+\d+\.\d\d")
