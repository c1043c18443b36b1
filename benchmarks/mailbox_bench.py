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
statements a stored letter costs the relay minus the checks: one INSERT
into C{letters} and one into C{letter_bodies}, inside BEGIN IMMEDIATE ...
COMMIT.  Group commit as the relay does it: a transaction takes every letter
that has arrived while the previous one ran.  Saturation: the same number
of letters in flight as the generator keeps (senders x window), each
acknowledged when its transaction commits, so every transaction carries
that many (the best a group commit can do with that window).  Paced: the
letters are due at --rate per second; each transaction takes all those due
by the time it starts (waiting, without CPU, for the next when none is);
latency is from a letter's due time to its commit.  Its CPU is the process's
utime + stime over each phase.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from run import cpu_time, environment, free_port, pinned, server_argv  # noqa: E402

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
               store: str | None = None) -> list[str]:
    """
    The relay's command: run.py's (log file checked), mailbox limits
    lifted; with C{profile}, twistd's cProfile of the reactor thread is
    saved there.
    """
    argv = server_argv("securechat", port, data_dir, log_file)
    if profile:
        argv[1:1] = [f"--profile={profile}", "--profiler=cprofile", "--savestats"]
    return argv + (["--store", store] if store else []) + [
        "--letter-rate", "1000000", "--letter-burst", "1000000",
        "--mailbox-letters", "10000000", "--mailbox-bytes", str(1 << 40)]


def start_relay(data_dir: str, work: str, profile: str | None,
                store: str | None = None) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    log_file = os.path.join(work, f"securechat-{port}.log")
    proc = subprocess.Popen(pinned(0) + relay_argv(port, data_dir, log_file, profile, store),
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


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
    relay, port, log_file = start_relay(data_dir, work, args.profile, store)
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
        cpu0, db0 = cpu_time(relay.pid), server_cpu(postmaster)
        go()
        expect("PHASE")
        cpu1, db1 = cpu_time(relay.pid), server_cpu(postmaster)
        go()
        result: dict[str, Any] = json.loads(expect("{"))
        cpu2, db2 = cpu_time(relay.pid), server_cpu(postmaster)
        gen.wait(STEP_TIMEOUT)
    finally:
        watchdog.cancel()
        if gen.poll() is None:
            gen.kill()
        stop(relay)
    result["saturation_cpu"] = cpu1 - cpu0
    result["paced_cpu"] = cpu2 - cpu1
    if postmaster is not None:
        # PostgreSQL's own CPU, apart (the relay's column stays the relay's).
        result["saturation_db_cpu"] = db1 - db0
        result["paced_db_cpu"] = db2 - db1
    result["log_file"] = log_file
    return result


# -- the baseline ------------------------------------------------------------------


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def baseline(args: argparse.Namespace) -> dict[str, Any]:
    """The bare-SQLite baseline (see the module docstring)."""
    from securechat.server.store.engine import open_prepared
    letters = []
    with open(args.letters_file) as f:
        for line in f:
            sender, recipient, lid, raw = line.split()
            letters.append((sender, bytes.fromhex(lid), recipient, bytes.fromhex(raw)))
    conn = open_prepared(args.db)
    now = int(time.time())

    def commit(batch: list[tuple[str, bytes, str, bytes]]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        for sender, lid, recipient, raw in batch:
            cur = conn.execute("INSERT INTO letters (sender, letter_id, recipient, size,"
                               " stored_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                               (sender, lid, recipient, len(raw), now, now + 30 * 86400))
            conn.execute("INSERT INTO letter_bodies (letter, body) VALUES (?, ?)",
                         (cur.lastrowid, raw))
        conn.execute("COMMIT")

    paced = int(args.rate * args.duration)
    saturate, rest = letters[:len(letters) - paced], letters[len(letters) - paced:]
    cpu0, t0 = _cpu(), time.perf_counter()
    for start in range(0, len(saturate), args.in_flight):
        commit(saturate[start:start + args.in_flight])
    result: dict[str, Any] = {"saturation_letters": len(saturate),
                              "saturation_elapsed": time.perf_counter() - t0,
                              "saturation_cpu": _cpu() - cpu0}
    cpu0, t0 = _cpu(), time.perf_counter()
    latencies: list[float] = []
    done = 0
    while done < len(rest):
        now_s = time.perf_counter() - t0
        due = min(len(rest), int(now_s * args.rate) + 1)
        if due <= done:
            time.sleep((done / args.rate) - now_s)  # idle until the next letter is due
            continue
        commit(rest[done:due])
        end = time.perf_counter() - t0
        latencies.extend(end - i / args.rate for i in range(done, due))
        done = due
    lat = sorted(latencies)
    result.update(paced_letters=len(rest), paced_elapsed=time.perf_counter() - t0,
                  paced_cpu=_cpu() - cpu0, p50_ms=lat[len(lat) // 2] * 1e3,
                  p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3)
    conn.close()
    return result


def run_baseline(args: argparse.Namespace, work: str, dump: str) -> dict[str, Any]:
    out = subprocess.run(
        pinned(0) + [sys.executable, os.path.abspath(__file__), "--baseline-worker",
                     "--letters-file", dump, "--db", os.path.join(work, "baseline.sqlite3"),
                     "--in-flight", str(SENDERS * args.window), "--rate", str(args.rate),
                     "--duration", str(args.duration)],
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
    return {
        "acked_per_s": r["saturation_letters"] / r["saturation_elapsed"],
        "cpu_us_per_letter": r["saturation_cpu"] / r["saturation_letters"] * 1e6,
        "paced_acked_per_s": r["paced_letters"] / r["paced_elapsed"],
        "paced_cpu_us_per_letter": r["paced_cpu"] / r["paced_letters"] * 1e6,
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
    }


def report(sc: dict[str, float], base: dict[str, float], args: argparse.Namespace) -> str:
    lines = [f"{'metric':<26} {'securechat':>12} {'sqlite':>12} {'ratio':>7}"]
    for metric, a in sc.items():
        if metric not in base:
            lines.append(f"{metric:<26} {a:>12.2f} {'-':>12} {'-':>7}")
            continue
        b = base[metric]
        ratio = f"{a / b:.2f}" if b else "-"
        lines.append(f"{metric:<26} {a:>12.2f} {b:>12.2f} {ratio:>7}")
    rate_met = sc["acked_per_s"] >= TARGET_RATE
    cost = sc["cpu_us_per_letter"] / base["cpu_us_per_letter"] if base["cpu_us_per_letter"] else 0.0
    lines.append(f"target: >= {TARGET_RATE:.0f} acknowledged letters/s: "
                 f"{'met' if rate_met else 'NOT met'} ({sc['acked_per_s']:.0f})")
    lines.append(f"target: <= {TARGET_COST_RATIO}x the baseline's CPU per letter: "
                 f"{'met' if cost <= TARGET_COST_RATIO else 'NOT met'} ({cost:.2f}x)")
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
        base_raw = run_baseline(args, work, dump)
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
        base_raw = run_baseline(args, work, dump)
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
