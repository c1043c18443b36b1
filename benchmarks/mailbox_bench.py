"""
The mailbox benchmark (issue 14): letters acknowledged per second with
durability, and ack latency at 1,000 letters/s offered, for securechat's
relay (real C{twistd securechat}, SQLite store) against a bare-SQLite
baseline in the same run.

    python benchmarks/mailbox_bench.py            # about a minute
    python benchmarks/mailbox_bench.py --smoke    # tiny counts: checks it runs

securechat: C{twistd securechat} pinned to CPU 0 (taskset), its log in the
run's temporary directory, letter rate and mailbox quotas lifted.  The
load generator (benchmarks/letterload.py, mode C{bench}, pinned to CPU 1)
logs in 4 senders and 2 recipients with the real handshake, uploads the
recipients' signed prekeys, fetches bundles and seals every letter first.
Then (1) saturation: each sender keeps --window letters in flight (POST_LETTER,
answered by LETTER_STORED after the commit) until --letters are
acknowledged; (2) paced: --rate letters/s offered for --duration s (every
millisecond, the letters due so far).  Server CPU is utime + stime from
/proc/PID/stat around each phase (the SQLite thread included).

The baseline (this file, C{baseline} mode, a plain Python process pinned to
CPU 0, no Twisted, no network): the same sealed letters (the generator
writes them to a file), inserted into a fresh database made by the relay's
own schema code (L{securechat.server.store.engine.open_prepared}: WAL,
synchronous=FULL, foreign keys, the same tables and indexes), with the same
statements a stored letter costs the relay minus the checks: the rows of
C{letters} and of C{letter_bodies}, each group's by one C{executemany}
with ids chosen after the largest (the cheapest way from Python, and the
relay's own since the fourth round; until then two INSERTs per letter,
which is still reported, as C{rowwise_cpu_us_per_letter}), inside BEGIN
IMMEDIATE ... COMMIT.  Group commit: the same as the relay's in the same run.  At
saturation the baseline commits the saturation phase's letters in as many
transactions as the relay did (its C{securechat_letter_commits} on
/metrics, read before and after the phase), split evenly, so both sides
pay the same fsyncs and the same per-transaction writes.  (Until
2026-12-02 it committed senders x window = 256 letters per transaction,
"the best a group commit can do with that window"; the relay's commits
carried 15-30, so that baseline had an eighth of the relay's commits.  That
figure is still reported, as C{window_cpu_us_per_letter}.)  Paced: the
letters are due at --rate per second; each transaction takes all those due
by the time it starts (waiting, without CPU, for the next when none is), the
relay's rule; latency is from a letter's due time to its commit.  Its CPU
is the process's utime + stime over each phase.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from mailbox_baseline import baseline  # noqa: E402
from run import (CLK_TCK, cpu_time, environment, free_port, pinned, server_argv,  # noqa: E402
                 stop_process as stop)

SENDERS = 4
#: Letters per recipient's mailbox by default: under the relay's default
#: quota (1,000), as mailboxes in service are.
PER_MAILBOX = 750
STEP_TIMEOUT = 300
#: The issue's targets.
TARGET_RATE = 5000.0
TARGET_COST_RATIO = 1.5


def make_data_dir(path: str, recipients: int) -> None:
    """A data directory with the generator's users s0.., r0.. ."""
    from letterload import user_key

    from securechat.datadir import DataDir, UserDirectory, UserRecord, utc_text
    now = datetime.datetime.now(datetime.timezone.utc)
    data = DataDir(path)
    data.init(["localhost", "127.0.0.1"], now)
    directory = UserDirectory()
    names = [f"s{i}" for i in range(SENDERS)] + [f"r{i}" for i in range(recipients)]
    for name in names:
        directory.users[name] = UserRecord(name, user_key(name).public_key(), utc_text(now))
    data.save_users(directory)


def relay_argv(port: int, data_dir: str, log_file: str, profile: str | None = None,
               metrics_port: int | None = None, store: str | None = None) -> list[str]:
    """
    The relay's command: run.py's (log file checked), mailbox limits
    lifted; with C{profile}, twistd's cProfile of the reactor thread is
    saved there; with C{metrics_port}, /metrics is served there.
    """
    argv = server_argv("securechat", port, data_dir, log_file)
    if metrics_port:
        argv += ["--metrics", f"tcp:{metrics_port}:interface=127.0.0.1"]
    if profile:
        argv[1:1] = [f"--profile={profile}", "--profiler=cprofile", "--savestats"]
    return argv + (["--store", store] if store else []) + [
        "--letter-rate", "1000000", "--letter-burst", "1000000",
        "--mailbox-letters", "10000000", "--mailbox-bytes", str(1 << 40)]


def start_relay(data_dir: str, work: str, profile: str | None,
                metrics_port: int | None = None, store: str | None = None
                ) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    log_file = os.path.join(work, f"securechat-{port}.log")
    proc = subprocess.Popen(pinned(0) + relay_argv(port, data_dir, log_file, profile,
                                                   metrics_port, store),
                            env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port, log_file
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"the relay did not start; see {log_file}")
            time.sleep(0.1)  # polling for start-up, bounded by the deadline


def letter_commits(metrics_port: int) -> int:
    """The relay's group commits so far (C{securechat_letter_commits} on /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("securechat_letter_commits_total "):
                return int(float(line.split()[1]))
    raise RuntimeError("the relay's /metrics has no securechat_letter_commits_total")


def thread_cpu(pid: int) -> tuple[float, float]:
    """
    CPU seconds so far of process C{pid}'s main thread (the relay's
    reactor) and of its other threads together (the store's pool thread
    and the thread pool's workers), from /proc/PID/task.
    """
    main = others = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if int(tid) == pid:
            main += seconds
        else:
            others += seconds
    return main, others


def server_cpu(postmaster: int | None) -> float:
    """
    CPU seconds of a PostgreSQL server so far: the postmaster and the
    processes it started (the relay's backend, the WAL writer, ...); 0
    without one.
    """
    if postmaster is None:
        return 0.0
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == postmaster or int(fields[1]) == postmaster:
            total += cpu_time(int(entry))
    return total


def run_securechat(args: argparse.Namespace, work: str, dump: str) -> dict[str, Any]:
    data_dir = os.path.join(work, "data")
    make_data_dir(data_dir, args.recipients)
    store, postmaster = None, None
    if getattr(args, "store", "sqlite") == "postgresql":
        # A throwaway PostgreSQL (as the tests make it), the relay on it.
        from tests.pgservice import Cluster
        cluster = Cluster()
        cluster.start()
        cluster.execute("CREATE DATABASE bench")
        store = cluster.url("bench")
        assert cluster.process is not None
        postmaster = cluster.process.pid
    try:
        return _run_securechat(args, work, dump, data_dir, store, postmaster)
    finally:
        if store is not None:
            cluster.remove()


def _run_securechat(args: argparse.Namespace, work: str, dump: str, data_dir: str,
                    store: str | None, postmaster: int | None) -> dict[str, Any]:
    metrics_port = free_port()
    relay, port, log_file = start_relay(data_dir, work, args.profile, metrics_port, store)
    paced = int(args.rate * args.duration)
    gen = subprocess.Popen(
        pinned(1) + [sys.executable, os.path.join(HERE, "letterload.py"), "bench",
                     "--data-dir", data_dir, "--port", str(port), "--senders", str(SENDERS),
                     "--recipients", str(args.recipients), "--letters", str(args.letters + paced),
                     "--window", str(args.window), "--rate", str(args.rate),
                     "--duration", str(args.duration), "--dump", dump],
        env=environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert gen.stdin is not None and gen.stdout is not None
    watchdog = threading.Timer(STEP_TIMEOUT, gen.kill)
    watchdog.start()

    def expect(word: str) -> str:
        line = gen.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith(word):
            raise RuntimeError(f"load generator: expected {word}, got {line!r}")
        return line

    def go() -> None:
        gen.stdin.write("GO 1\n")  # type: ignore[union-attr]
        gen.stdin.flush()  # type: ignore[union-attr]
    try:
        expect("READY")
        # (Each scrape is outside the phases' CPU: a few ms of the relay's.)
        commits0 = letter_commits(metrics_port)
        cpu0, db0 = cpu_time(relay.pid), server_cpu(postmaster)
        threads0 = thread_cpu(relay.pid)
        go()
        expect("PHASE")
        cpu1, db1 = cpu_time(relay.pid), server_cpu(postmaster)
        threads1 = thread_cpu(relay.pid)
        commits1 = letter_commits(metrics_port)
        cpu1b, db1b = cpu_time(relay.pid), server_cpu(postmaster)
        go()
        result: dict[str, Any] = json.loads(expect("{"))
        cpu2, db2 = cpu_time(relay.pid), server_cpu(postmaster)
        commits2 = letter_commits(metrics_port)
        gen.wait(STEP_TIMEOUT)
    finally:
        watchdog.cancel()
        if gen.poll() is None:
            gen.kill()
        stop(relay)
    result["saturation_cpu"] = cpu1 - cpu0
    # The split by thread: the reactor's, and the store's (with any other).
    result["saturation_reactor_cpu"] = threads1[0] - threads0[0]
    result["saturation_store_thread_cpu"] = threads1[1] - threads0[1]
    result["paced_cpu"] = cpu2 - cpu1b
    result["saturation_commits"] = commits1 - commits0
    result["paced_commits"] = commits2 - commits1
    if postmaster is not None:
        # PostgreSQL's own CPU, apart (the relay's column stays the relay's).
        result["saturation_db_cpu"] = db1 - db0
        result["paced_db_cpu"] = db2 - db1b
    result["log_file"] = log_file
    return result


def run_baseline(args: argparse.Namespace, work: str, dump: str, commits: int) -> dict[str, Any]:
    """
    The baseline's run, its saturation phase in C{commits} transactions
    (the relay's in the same run), after the old whole-window figure.
    """
    out = subprocess.run(
        pinned(0) + [sys.executable, os.path.abspath(__file__), "--baseline-worker",
                     "--letters-file", dump, "--db", os.path.join(work, "baseline.sqlite3"),
                     "--in-flight", str(SENDERS * args.window), "--rate", str(args.rate),
                     "--duration", str(args.duration), "--commits", str(commits),
                     "--window-first"],
        env=environment(), capture_output=True, text=True, timeout=STEP_TIMEOUT)
    if out.returncode != 0:
        raise RuntimeError(f"the baseline failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def summarize(r: dict[str, Any]) -> dict[str, float]:
    if "saturation_db_cpu" in r:
        return dict(_summary(r), db_cpu_us_per_letter=(
            r["saturation_db_cpu"] / r["saturation_letters"] * 1e6))
    return _summary(r)


def _summary(r: dict[str, Any]) -> dict[str, float]:
    out = {
        "acked_per_s": r["saturation_letters"] / r["saturation_elapsed"],
        "cpu_us_per_letter": r["saturation_cpu"] / r["saturation_letters"] * 1e6,
        "letters_per_commit": r["saturation_letters"] / max(1, r["saturation_commits"]),
        "paced_acked_per_s": r["paced_letters"] / r["paced_elapsed"],
        "paced_cpu_us_per_letter": r["paced_cpu"] / r["paced_letters"] * 1e6,
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
        "paced_letters_per_commit": r["paced_letters"] / max(1, r["paced_commits"]),
    }
    if "saturation_reactor_cpu" in r:
        out["reactor_cpu_us_per_letter"] = (
            r["saturation_reactor_cpu"] / r["saturation_letters"] * 1e6)
        out["store_thread_cpu_us_per_letter"] = (
            r["saturation_store_thread_cpu"] / r["saturation_letters"] * 1e6)
    if "window_cpu" in r:
        out["window_cpu_us_per_letter"] = r["window_cpu"] / r["saturation_letters"] * 1e6
    if "rowwise_cpu" in r:
        out["rowwise_cpu_us_per_letter"] = r["rowwise_cpu"] / r["saturation_letters"] * 1e6
    return out


def report(sc: dict[str, float], base: dict[str, float], args: argparse.Namespace) -> str:
    lines = [f"{'metric':<26} {'securechat':>12} {'sqlite':>12} {'ratio':>7}"]
    for metric, b in base.items():
        a = sc.get(metric, float("nan"))
        ratio = f"{a / b:.2f}" if b else "-"
        lines.append(f"{metric:<26} {a:>12.2f} {b:>12.2f} {ratio:>7}")
    for metric, a in sc.items():
        if metric not in base:  # the relay's only (PostgreSQL's CPU)
            lines.append(f"{metric:<26} {a:>12.2f} {'-':>12} {'-':>7}")
    rate_met = sc["acked_per_s"] >= TARGET_RATE
    cost = sc["cpu_us_per_letter"] / base["cpu_us_per_letter"] if base["cpu_us_per_letter"] else 0.0
    lines.append(f"target: >= {TARGET_RATE:.0f} acknowledged letters/s: "
                 f"{'met' if rate_met else 'NOT met'} ({sc['acked_per_s']:.0f})")
    lines.append(f"target: <= {TARGET_COST_RATIO}x the baseline's CPU per letter: "
                 f"{'met' if cost <= TARGET_COST_RATIO else 'NOT met'} ({cost:.2f}x; the "
                 "baseline in the relay's number of commits)")
    if base.get("rowwise_cpu_us_per_letter"):
        lines.append(f"against the same commits inserted row by row (the baseline until the "
                     f"fourth round): {sc['cpu_us_per_letter'] / base['rowwise_cpu_us_per_letter']:.2f}x")
    if base.get("window_cpu_us_per_letter"):
        lines.append(f"against the old baseline ({SENDERS * args.window} letters per commit): "
                     f"{sc['cpu_us_per_letter'] / base['window_cpu_us_per_letter']:.2f}x")
    lines.append(f"paced phase offered {args.rate:.0f} letters/s; saturation: "
                 f"{SENDERS} senders x {args.window} in flight; {args.recipients} recipients")
    return "\n".join(lines)


def measure(letters: int, window: int = 64, rate: float = 1000.0,
            duration: float = 10.0) -> tuple[dict[str, float], dict[str, float]]:
    """
    One run of both sides (for benchmarks/run.py's table): securechat's
    and bare SQLite's summaries (L{summarize}), in that order.
    """
    total = letters + int(rate * duration)
    args = argparse.Namespace(letters=letters, window=window, rate=rate, duration=duration,
                              recipients=max(1, -(-total // PER_MAILBOX)), profile=None)
    work = tempfile.mkdtemp(prefix="securechat-mailbench-")
    try:
        dump = os.path.join(work, "letters.txt")
        sc_raw = run_securechat(args, work, dump)
        base_raw = run_baseline(args, work, dump, sc_raw["saturation_commits"])
        sc = summarize(sc_raw)
        sc["generator_cpu_share"] = sc_raw["generator_cpu_share"]
        return sc, summarize(base_raw)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description="the mailbox: securechat's relay vs bare SQLite")
    p.add_argument("--smoke", action="store_true", help="tiny counts: checks it still runs")
    p.add_argument("--letters", type=int, default=20000, help="letters in the saturation phase")
    p.add_argument("--window", type=int, default=64, help="letters in flight per sender")
    p.add_argument("--rate", type=float, default=1000.0, help="letters/s in the paced phase")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of the paced phase")
    p.add_argument("--recipients", type=int, default=None,
                   help=f"recipients the letters go to, in turn (default: enough that no "
                        f"mailbox holds more than {PER_MAILBOX} letters)")
    p.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                   help="the relay's store: its SQLite file, or a throwaway PostgreSQL "
                        "(needs the postgresql package); PostgreSQL's CPU is reported apart "
                        "(db_cpu_us_per_letter) [default: sqlite]")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--profile", metavar="FILE",
                   help="save a cProfile of the relay's reactor thread here (pstats format; "
                        "it slows the relay: not for the figures)")
    p.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--letters-file", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--in-flight", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--commits", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--window-first", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.baseline_worker:
        print(json.dumps(baseline(args)))
        return 0
    if args.smoke:
        args.letters, args.window, args.duration = 200, 8, 0.2
    if args.recipients is None:
        total = args.letters + int(args.rate * args.duration)
        args.recipients = max(1, -(-total // PER_MAILBOX))
    work = tempfile.mkdtemp(prefix="securechat-mailbench-")
    try:
        dump = os.path.join(work, "letters.txt")
        sc_raw = run_securechat(args, work, dump)
        base_raw = run_baseline(args, work, dump, sc_raw["saturation_commits"])
        sc, base = summarize(sc_raw), summarize(base_raw)
        print(report(sc, base, args))
        print(f"load generator CPU share in the saturation phase: "
              f"{sc_raw['generator_cpu_share']:.0%} of its core")
        print(f"relay log: {sc_raw['log_file']} (removed with the run's directory)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"securechat": sc, "sqlite": base, "raw": [sc_raw, base_raw]}, f,
                          indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
