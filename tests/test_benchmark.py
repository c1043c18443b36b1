"""
A smoke test that the benchmark (benchmarks/run.py) still runs end to end,
with tiny counts.  The benchmark itself is not part of the test run.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from typing import Any

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
        # The mailbox is in the same table (issue 20): acknowledged letters
        # per second, CPU per letter and ack latency, against bare SQLite.
        for metric in ("acked_letters_per_s", "cpu_us_per_letter", "ack_p50_ms", "ack_p99_ms"):
            self.assertRegex(out, rf"(?m)^letters\s+{metric}\s+\d+\.\d\d\s+\d+\.\d\d\s+")

    def test_smokeHandshakeOverCrypto(self) -> None:
        """
        Issue 20: the handshake case measures the cryptography alone in the
        same invocation and prints the relay's CPU per handshake over it,
        and the relay's own CPU share (whether it, not the generator, was
        the limit).
        """
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--smoke",
             "--only", "handshakes"],
            capture_output=True, text=True, env=environment(), cwd=ROOT, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        out = result.stdout
        self.assertRegex(out, r"handshakes\s+crypto_us\s+\d+\.\d\d\s+-")
        self.assertRegex(out, r"handshakes\s+server_cpu_share\s+\d+\.\d\d")
        self.assertRegex(out, r"relay CPU per handshake \d+ us is \d+\.\d\dx the "
                              r"cryptography alone \(\d+ us, same run")
        # The floor: the bare relay making the same cryptography, same run.
        self.assertIn("note: the floor (the bare Twisted relay making the same cryptography", out)


class GroupBenchmarkSmokeTests(unittest.TestCase):
    """
    benchmarks/group_bench.py --smoke (issue 15).
    """

    def test_smoke(self) -> None:
        """
        The relay and the bare fan-out start, a group of 5 is made with
        signed changes, both phases run, and the report compares them.
        """
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "group_bench.py"), "--smoke"],
            capture_output=True, text=True, env=environment(), cwd=ROOT, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("1 sender to 5 members", result.stdout)
        self.assertRegex(result.stdout, r"cpu_us_per_copy\s+\d+\.\d\d\s+\d+\.\d\d")
        self.assertRegex(result.stdout, r"p99_ms\s+\d+\.\d\d\s+\d+\.\d\d")


def _load_run() -> Any:
    """
    benchmarks/run.py as a module (benchmarks/ is not a package).
    """
    spec = importlib.util.spec_from_file_location("securechat_bench_run",
                                                  os.path.join(ROOT, "benchmarks", "run.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RelayCommandTests(unittest.TestCase):
    """
    The command line the benchmark starts each relay with (issue 12, defect
    8: twistd rotates its log by renaming the file, and a run as root
    renamed the machine's /dev/null).
    """

    def test_logFileInTheRunDirectory(self) -> None:
        """
        securechat's twistd logs to the file given, in the run's temporary
        directory, and no argument of either relay names a device.
        """
        run = _load_run()
        work = self.mktemp()
        log_file = os.path.join(work, "securechat.log")
        argv = run.server_argv("securechat", 1234, os.path.join(work, "data"), log_file)
        self.assertIn(f"--logfile={log_file}", argv)
        for target in ("securechat", "baseline"):
            argv = run.server_argv(target, 1234, os.path.join(work, "data"), log_file)
            self.assertEqual([a for a in argv if "/dev/" in a], [], target)

    def test_deviceLogFileRefused(self) -> None:
        """
        Asked to log to a device, the command builder refuses, naming it.
        """
        run = _load_run()
        for device in ("/dev/null", "/dev/stdout"):
            with self.assertRaises(ValueError) as caught:
                run.server_argv("securechat", 1234, "data", device)
            self.assertIn(f"refusing to log to a device ({device})", str(caught.exception))

    def test_noBenchmarkScriptLogsToADevice(self) -> None:
        """
        No benchmark script passes a device as twistd's log file.
        """
        for name in ("run.py", "loadgen.py", "baseline.py", "mailbox_bench.py",
                     "letterload.py", "group_bench.py", "groupload.py", "hs_ab.py",
                     "cluster_bench.py", "capacity_probe.py"):
            with open(os.path.join(ROOT, "benchmarks", name)) as f:
                self.assertNotRegex(f.read(), r"--logfile[= ]+['\"]?/dev/", name)


class LoginTimingSmokeTests(unittest.TestCase):
    """
    benchmarks/login_timing.py (issue 12, defect 2) still runs; its verdict
    is the benchmark's business, not the test suite's (real time is noisy).
    """

    def test_reportsTheThreeMedians(self) -> None:
        """
        With a tiny sample count the script runs the real relay in memory
        and reports a median for each of the unknown, revoked and
        bad-signature cases, the separation and a verdict line.
        """
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "login_timing.py"),
             "--samples", "3"],
            capture_output=True, text=True, env=environment(), cwd=ROOT, timeout=120)
        self.assertIn(result.returncode, (0, 1), result.stderr[-3000:])
        out = result.stdout
        self.assertIn("3 samples per case", out)
        for case in ("unknown", "revoked", "bad-signature"):
            self.assertRegex(out, rf"(?m)^{case}\s+\d+\.\d\s+\d+\.\d")
        self.assertRegex(out, r"separation of the medians: \d+\.\d% \(threshold 10%\)")
        self.assertRegex(out, r"(?m)^verdict: (ok|FAIL)")


def _load_mailbox_bench() -> Any:
    """benchmarks/mailbox_bench.py as a module."""
    import sys
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "securechat_mailbox_bench", os.path.join(ROOT, "benchmarks", "mailbox_bench.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class MailboxBenchmarkTests(unittest.TestCase):
    """
    benchmarks/mailbox_bench.py (issue 14): the mailbox against bare SQLite.
    """

    def test_smokeReportHasTheFields(self) -> None:
        """
        With --smoke the real relay and the baseline both run, and the
        report has every metric for both (acknowledged letters per second,
        CPU per letter, paced p50/p99), with ratios and a verdict on each of
        the issue's two targets.  The numbers are the benchmark's business.
        """
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "mailbox_bench.py"), "--smoke"],
            capture_output=True, text=True, env=environment(), cwd=ROOT, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        out = result.stdout
        self.assertRegex(out, r"metric\s+securechat\s+sqlite\s+ratio")
        for metric in ("acked_per_s", "cpu_us_per_letter", "paced_acked_per_s",
                       "paced_cpu_us_per_letter", "p50_ms", "p99_ms"):
            self.assertRegex(out, rf"(?m)^{metric}\s+\d+\.\d\d\s+\d+\.\d\d\s+(\d+\.\d\d|-)$")
        self.assertRegex(out, r"target: >= 5000 acknowledged letters/s: (met|NOT met)")
        self.assertRegex(out, r"target: <= 1\.5x the baseline's CPU per letter: (met|NOT met)")
        # The same group commit: the baseline commits the saturation phase
        # in as many transactions as the relay did in the same run.
        self.assertRegex(out, r"(?m)^letters_per_commit\s+(\d+\.\d\d)\s+\1\s+1\.00$")
        self.assertRegex(out, r"against the old baseline \(32 letters per commit\): \d+\.\d\dx")
        self.assertRegex(out, r"against the same commits inserted row by row \(the baseline "
                              r"until the fourth round\): \d+\.\d\dx")
        # The relay's CPU split by thread (the baseline has one).
        for metric in ("reactor_cpu_us_per_letter", "store_thread_cpu_us_per_letter"):
            self.assertRegex(out, rf"(?m)^{metric}\s+\d+\.\d\d\s+-\s+-$")

    def test_relayLogsToAFileInTheRunDirectory(self) -> None:
        """
        The relay of the mailbox benchmark logs to the file given (in the
        run's temporary directory), never to a device: its command line is
        run.py's, which refuses one.
        """
        bench = _load_mailbox_bench()
        work = self.mktemp()
        log_file = os.path.join(work, "securechat.log")
        argv = bench.relay_argv(1234, os.path.join(work, "data"), log_file)
        self.assertIn(f"--logfile={log_file}", argv)
        self.assertEqual([a for a in argv if "/dev/" in a], [])
        with self.assertRaises(ValueError) as caught:
            bench.relay_argv(1234, "data", "/dev/null")
        self.assertIn("refusing to log to a device (/dev/null)", str(caught.exception))


class InstructionCountTests(unittest.TestCase):
    """
    benchmarks/hs_instructions.py (issue 20): instructions per handshake
    from callgrind's output.
    """

    def test_totalFromCallgrindOutput(self) -> None:
        """
        The count is read from callgrind's last summary or totals line (the
        summary at the top is 0 when instrumentation starts off), and a file
        without one is a clear error, not a zero.
        """
        sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
        self.addCleanup(sys.path.remove, os.path.join(ROOT, "benchmarks"))
        spec = importlib.util.spec_from_file_location(
            "securechat_hs_instructions", os.path.join(ROOT, "benchmarks", "hs_instructions.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("version: 1\ncmd: twistd\nevents: Ir\nfn=main\n1 5\nsummary: 420355466\n")
        self.assertEqual(module.total_instructions(path), 420355466)
        with open(path, "w") as f:  # instrumentation switched on after start
            f.write("version: 1\npart: 1\nsummary: 0\nfn=main\n1 5\ntotals: 420355466\n")
        self.assertEqual(module.total_instructions(path), 420355466)
        with open(path, "w") as f:
            f.write("version: 1\nevents: Ir\n")
        with self.assertRaises(ValueError) as caught:
            module.total_instructions(path)
        self.assertIn("no instruction total in", str(caught.exception))


def _load_cluster_bench() -> Any:
    """benchmarks/cluster_bench.py as a module (it imports run.py beside it)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "securechat_cluster_bench", os.path.join(ROOT, "benchmarks", "cluster_bench.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ClusterBenchmarkTests(unittest.TestCase):
    """
    benchmarks/cluster_bench.py (issue 16): 1:1 messages across two relay
    processes joined by Redis, against one process.
    """

    def test_singleProcessHalfSmoke(self) -> None:
        """
        With --single-only the one-process half runs both cases (saturation
        and light) with tiny counts and reports CPU per message, throughput
        and latency for each, saying the two-process half was not run.
        """
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "cluster_bench.py"), "--smoke",
             "--single-only"],
            capture_output=True, text=True, env=environment(), cwd=ROOT, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        out = result.stdout
        self.assertRegex(out, r"(?m)^1:1 saturation, 2 pairs x 5 messages, medians of 1 runs")
        self.assertRegex(out, r"(?m)^light 2000 msg/s, 2 pairs for 0\.05 s, medians of 1 runs")
        self.assertRegex(out, r"metric\s+one process\s+two processes\s+ratio")
        for metric in ("cpu_us_per_msg", "msgs_per_s", "p50_ms", "p99_ms"):
            self.assertRegex(out, rf"(?m)^{metric}\s+\d+\.\d\d\s+-\s+-$")
        self.assertIn("two processes: not run (--single-only)", out)

    def test_relayWithoutClusterOptionsRefused(self) -> None:
        """
        A relay whose --help lists no --cluster or --process-id stops the
        two-process half with one line naming them and where they come
        from, exit status 2, before anything is started.
        """
        bench = _load_cluster_bench()
        help_text = "Options:\n  -l, --listen=   Endpoint\n      --metrics=  Endpoint\n"
        self.patch(bench, "relay_help", lambda: help_text)
        self.patch(bench, "Relay", lambda *a: self.fail("a relay was started"))
        errors = io.StringIO()
        self.patch(sys, "stderr", errors)
        self.assertEqual(bench.main(["--smoke"]), 2)
        self.assertEqual(errors.getvalue(),
                         "cluster_bench: this relay has no option --cluster, --process-id (an "
                         "older securechat: --cluster, --process-id and --store came with issue "
                         "16): the two-process half cannot run; "
                         "--single-only runs the one-process half\n")

    def test_missingOptions(self) -> None:
        """
        Options are found in twistd's help layout (with or without "=", a
        short form before them); --store is asked for only when given.
        """
        bench = _load_cluster_bench()
        help_text = ("  -c, --cluster=      Redis URL\n      --process-id=  id\n"
                     "      --reuse-port     share\n")
        self.assertEqual(bench.missing_options(help_text, ["--cluster", "--process-id"]), [])
        self.assertEqual(bench.missing_options(help_text, ["--store", "--reuse-port"]),
                         ["--store"])
        self.assertEqual(bench.missing_options("--clusters= x", ["--cluster"]), ["--cluster"])
        self.patch(bench.shutil, "which", lambda name: "/usr/bin/" + name)
        bench.check_relay(None, help_text)
        with self.assertRaises(bench.CannotRun) as caught:
            bench.check_relay("postgresql:///x", help_text)
        self.assertIn("this relay has no option --store (an older securechat", str(caught.exception))

    def test_noRedisServerRefused(self) -> None:
        """
        With the options there but no redis-server installed, the
        two-process half stops saying so and how to install it.
        """
        bench = _load_cluster_bench()
        self.patch(bench.shutil, "which", lambda name: None)
        with self.assertRaises(bench.CannotRun) as caught:
            bench.check_relay(None, "--cluster= --process-id=")
        self.assertIn("redis-server is not installed (apt-get install redis-server)",
                      str(caught.exception))

    def test_redisCommandCount(self) -> None:
        """
        The throwaway Redis starts on a unix socket only, answers, counts
        the commands it processed (what the benchmark divides by the
        messages), and is stopped by PID.
        """
        import shutil

        from tests.services import need_service
        need_service(self, [] if shutil.which("redis-server") else ["redis-server"],
                     "the cluster benchmark's Redis helper", "apt-get install redis-server")
        import tempfile
        bench = _load_cluster_bench()
        work = tempfile.mkdtemp(prefix="sc-redis-")  # short: a unix socket's path is
        self.addCleanup(shutil.rmtree, work, True)   # at most 107 bytes
        redis = bench.Redis(work)
        self.addCleanup(redis.stop)
        self.assertEqual(redis.url, "unix://" + os.path.join(work, "redis.sock"))
        before = redis.commands_processed()
        for _ in range(3):
            self.assertEqual(redis.command(b"PING"), b"+PONG")
        # The three PINGs and the INFO that counted them.
        self.assertEqual(redis.commands_processed() - before, 4)
        redis.stop()
        self.assertIsNotNone(redis.proc.poll())
