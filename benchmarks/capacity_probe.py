#!/usr/bin/env python3
"""
The counts the capacity model in RESULTS.md needs (issue 16), beside
cluster_bench.py's CPU figures: what Redis and PostgreSQL are asked per
login, per connected user and per message or letter, and what an idle user
costs one process beyond run.py's 5,000.

Set-up: a throwaway PostgreSQL (tests/pgservice.py, as the tests make it)
and a throwaway redis-server (cluster_bench.Redis); relays A and B with
C{--store} on that PostgreSQL and C{--cluster} on that Redis, started once
each has answered C{/health} (linked to Redis).  Phases, in order:

  quiet      nothing connected for --hold s: Redis commands per second of
             the two processes' heartbeats alone;
  logins     --users users log in to A (loadgen.py's idle case): Redis
             commands and PostgreSQL transactions per login, A's CPU per login;
  held       the same users stay connected --hold s: Redis commands per
             second beyond "quiet", per connected user;
  lone       one pair across A and B sends --lone messages at 4 a second
             (each alone in its reactor turn): Redis commands per message,
             heartbeats of the phase taken off;
  letters    letterload.py posts --letters letters to A: PostgreSQL
             transactions, statements' inserted/updated/deleted rows per
             letter;
  idle       (--idle-users, a separate relay with no cluster, SQLite) that
             many users held on one process: RSS per user, logins per second
             and CPU per login.

Redis commands are INFO's total_commands_processed; PostgreSQL's are
pg_stat_database (xact_commit, tup_inserted, tup_updated, tup_deleted) for
the relays' database, read after a wait of 11 s so every backend has
flushed its counters (PostgreSQL 15 flushes an idle backend's within 10 s),
minus the probe's own reads.  CPU is /proc/PID/stat, as run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import cluster_bench  # noqa: E402
import run  # noqa: E402

FLUSH_WAIT = 11.0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Stats:
    """pg_stat_database of one database, read through psycopg2."""

    FIELDS = ("xact_commit", "tup_inserted", "tup_updated", "tup_deleted")

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name

    def read(self) -> dict[str, int]:
        import psycopg2
        conn = psycopg2.connect(self.url)
        try:
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute("SELECT " + ", ".join(self.FIELDS) +
                        " FROM pg_stat_database WHERE datname = %s", (self.name,))
            row = cur.fetchone()
        finally:
            conn.close()
        return dict(zip(self.FIELDS, row))

    def settled(self) -> dict[str, int]:
        time.sleep(FLUSH_WAIT)
        return self.read()


def commandstats(redis: Any) -> dict[str, int]:
    """INFO commandstats: calls per command (a script's own calls included)."""
    calls = {}
    for line in redis.command(b"INFO commandstats").decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_"):].partition(":")
            calls[name] = int(rest.split(",")[0].split("=")[1])
    return calls


def stats_diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: v - a.get(k, 0) for k, v in b.items() if v - a.get(k, 0)}


def diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b[k] - a[k] for k in a}


def loadgen(port: int, peer: int, data_dir: str, *case: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        run.pinned(1) + [sys.executable, os.path.join(HERE, "loadgen.py"), "--target",
                         "securechat", "--port", str(port), "--peer-port", str(peer),
                         "--data-dir", data_dir, *case],
        env=run.environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def expect(gen: subprocess.Popen[str], word: str) -> str:
    assert gen.stdout is not None
    line = gen.stdout.readline()
    if not line.startswith(word):
        raise RuntimeError(f"load generator: expected {word}, got {line!r}")
    return line


def say(gen: subprocess.Popen[str], line: str) -> None:
    assert gen.stdin is not None
    gen.stdin.write(line + "\n")
    gen.stdin.flush()


def add_letter_users(data_dir: str) -> None:
    """letterload.py's users (s0.., r0..) beside run.py's u0.. ."""
    import datetime

    from letterload import user_key

    from securechat.datadir import DataDir, UserRecord, utc_text
    now = datetime.datetime.now(datetime.timezone.utc)
    data = DataDir(data_dir)
    directory = data.load_users()
    for name in [f"s{i}" for i in range(4)] + [f"r{i}" for i in range(20)]:
        directory.users[name] = UserRecord(name, user_key(name).public_key(), utc_text(now))
    data.save_users(directory)


def cluster_phases(args: argparse.Namespace, work: str, out: dict[str, Any]) -> None:
    from tests.pgservice import Cluster
    data_dir = os.path.join(work, "data")
    run.make_data_dir(data_dir, max(args.users + 10, 400))
    add_letter_users(data_dir)
    pg = Cluster()
    pg.start()
    processes: list[Any] = []
    try:
        pg.execute("CREATE DATABASE bench")
        stats = Stats(pg.url("bench"), "bench")
        redis = cluster_bench.Redis(work)
        processes.append(redis)
        relays = []
        for name in ("a", "b"):
            relays.append(cluster_bench.Relay(name, data_dir, work, [
                "--store", pg.url("bench"), "--cluster", redis.url,
                "--process-id", f"probe-{name}",
                # as mailbox_bench.py: the probe counts writes, not the limits
                "--letter-rate", "1000000", "--letter-burst", "1000000",
                "--mailbox-letters", "10000000", "--mailbox-bytes", str(1 << 40)]))
            processes.append(relays[-1])
        a, b = relays
        # quiet
        c0, t0 = redis.commands_processed(), time.monotonic()
        time.sleep(args.hold)
        quiet = (redis.commands_processed() - c0 - 1) / (time.monotonic() - t0)
        out["redis_cmds_per_s_quiet_2_processes"] = quiet
        # logins, then held
        gen = loadgen(a.port, b.port, data_dir, "--case", "idle", "--idle-users",
                      str(args.users), "--first-user", "0")
        expect(gen, "READY")
        s0 = stats.settled()
        c0, cpu0, t0 = redis.commands_processed(), run.cpu_time(a.proc.pid), time.monotonic()
        k0 = commandstats(redis)
        say(gen, "GO")
        expect(gen, "CONNECTED")
        t1, cpu1, c1 = time.monotonic(), run.cpu_time(a.proc.pid), redis.commands_processed()
        out["redis_commandstats_logins"] = stats_diff(k0, commandstats(redis))
        quiet_part = quiet * (t1 - t0)
        out["redis_cmds_per_login"] = (c1 - c0 - 1 - quiet_part) / args.users
        out["cpu_us_per_login_a_on_postgresql_and_redis"] = (cpu1 - cpu0) / args.users * 1e6
        out["logins_per_s_a"] = args.users / (t1 - t0)
        k1 = commandstats(redis)
        s1 = stats.settled()  # FLUSH_WAIT s of held users
        out["redis_commandstats_held"] = stats_diff(k1, commandstats(redis))
        t2, c2 = time.monotonic(), redis.commands_processed()
        held = (c2 - c1 - 1) / (t2 - t1)
        out["redis_cmds_per_s_held"] = held
        out["redis_cmds_per_user_per_s"] = (held - quiet) / args.users
        # one read of pg_stat_database is one transaction of its own
        out["pg_per_login"] = {k: (v - (1 if k == "xact_commit" else 0)) / args.users
                               for k, v in diff(s0, s1).items()}
        say(gen, "")
        gen.wait(60)
        # lone messages across processes
        n = args.lone
        gen = loadgen(a.port, b.port, data_dir, "--case", "light", "--pairs", "1", "--rate",
                      "4", "--duration", str(n / 4), "--first-user", "0")
        expect(gen, "READY")
        c0, t0, k0 = redis.commands_processed(), time.monotonic(), commandstats(redis)
        say(gen, "GO")
        result = json.loads(expect(gen, "{"))
        out["redis_commandstats_lone"] = stats_diff(k0, commandstats(redis))
        c1, t1 = redis.commands_processed(), time.monotonic()
        gen.wait(60)
        delivered = result.get("delivered", n)
        out["lone_delivered"] = delivered
        out["redis_cmds_per_lone_msg"] = (c1 - c0 - 1 - quiet * (t1 - t0)) / delivered
        # letters
        letters = args.letters
        lgen = subprocess.Popen(
            run.pinned(1) + [sys.executable, os.path.join(HERE, "letterload.py"), "bench",
                             "--data-dir", data_dir, "--port", str(a.port), "--senders", "4",
                             "--recipients", "20", "--letters", str(letters + 20),
                             "--window", "8", "--rate", "20", "--duration", "1",
                             "--dump", os.path.join(work, "dump")],
            env=run.environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        expect(lgen, "READY")
        s0 = stats.settled()
        say(lgen, "GO 1")
        expect(lgen, "PHASE")
        say(lgen, "GO 1")
        expect(lgen, "{")
        lgen.wait(60)
        s1 = stats.settled()
        out["pg_per_letter_window8"] = {
            k: (v - (1 if k == "xact_commit" else 0)) / (letters + 20)
            for k, v in diff(s0, s1).items()}
    finally:
        for p in reversed(processes):
            p.stop()
        pg.remove()


def idle_phase(args: argparse.Namespace, work: str, out: dict[str, Any]) -> None:
    data_dir = os.path.join(work, "idle-data")
    warm = 1000
    run.make_data_dir(data_dir, args.idle_users + warm)
    relay = cluster_bench.Relay("idle", data_dir, work, [])
    try:
        gen = loadgen(relay.port, relay.port, data_dir, "--case", "idle", "--idle-users",
                      str(args.idle_users), "--idle-warmup", str(warm))
        expect(gen, "READY")
        time.sleep(1)
        r0, cpu0, t0 = rss_kib(relay.proc.pid), run.cpu_time(relay.proc.pid), time.monotonic()
        say(gen, "GO")
        expect(gen, "CONNECTED")
        t1, cpu1 = time.monotonic(), run.cpu_time(relay.proc.pid)
        time.sleep(3)
        r1, cpu2 = rss_kib(relay.proc.pid), run.cpu_time(relay.proc.pid)
        time.sleep(5)
        cpu3 = run.cpu_time(relay.proc.pid)
        out["idle_users"] = args.idle_users
        out["idle_kib_per_user"] = (r1 - r0) / args.idle_users
        out["idle_rss_mib"] = r1 / 1024
        out["idle_logins_per_s"] = args.idle_users / (t1 - t0)
        out["idle_cpu_us_per_login"] = (cpu1 - cpu0) / args.idle_users * 1e6
        out["idle_cpu_share_held"] = (cpu3 - cpu2) / 5
        say(gen, "")
        gen.wait(120)
    finally:
        relay.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=300, help="users logged in (logins, held)")
    p.add_argument("--hold", type=float, default=12.0, help="seconds of the quiet phase")
    p.add_argument("--lone", type=int, default=20, help="lone messages (4 a second)")
    p.add_argument("--letters", type=int, default=1000, help="letters posted")
    p.add_argument("--idle-users", type=int, default=0,
                   help="users held on one process without cluster (0: skip)")
    p.add_argument("--skip-cluster", action="store_true")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="securechat-capacity-")
    os.chmod(work, 0o755)  # the postgres user reaches its socket directory below
    out: dict[str, Any] = {}
    try:
        if not args.skip_cluster:
            cluster_phases(args, work, out)
        if args.idle_users:
            idle_phase(args, work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
