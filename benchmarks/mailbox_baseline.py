"""
The bare-SQLite baseline of the mailbox benchmark (benchmarks/mailbox_bench.py
runs it as a worker process, C{mailbox_bench.py --baseline-worker}; the
definition is in that module's docstring): the same sealed letters inserted
with the relay's schema and durability, in the relay's number of commits.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import time
from typing import Any


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def baseline(args: argparse.Namespace) -> dict[str, Any]:
    """The bare-SQLite baseline (see benchmarks/mailbox_bench.py's docstring)."""
    from securechat.server.store.engine import open_prepared
    letters = []
    with open(args.letters_file) as f:
        for line in f:
            sender, recipient, lid, raw = line.split()
            letters.append((sender, bytes.fromhex(lid), recipient, bytes.fromhex(raw)))
    conn = open_prepared(args.db)
    now = int(time.time())
    expires = now + 30 * 86400
    commits = 0

    def commit(batch: list[tuple[str, bytes, str, bytes]]) -> None:
        # Each group's rows by one executemany, its ids chosen after the
        # largest: the cheapest way to insert them from Python, as the
        # relay's store does when no letter can be refused.
        nonlocal commits
        commits += 1
        conn.execute("BEGIN IMMEDIATE")
        first = conn.execute("SELECT COALESCE(MAX(id), 0) FROM letters").fetchone()[0] + 1
        conn.executemany("INSERT INTO letters (id, sender, letter_id, recipient, size,"
                         " stored_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [(first + i, sender, lid, recipient, len(raw), now, expires)
                          for i, (sender, lid, recipient, raw) in enumerate(batch)])
        conn.executemany("INSERT INTO letter_bodies (letter, body) VALUES (?, ?)",
                         [(first + i, letter[3]) for i, letter in enumerate(batch)])
        conn.execute("COMMIT")

    def commit_rowwise(batch: list[tuple[str, bytes, str, bytes]]) -> None:
        # The baseline until 2026-12-02 (fourth round): two INSERTs per
        # letter, the body's with the row's lastrowid.
        nonlocal commits
        commits += 1
        conn.execute("BEGIN IMMEDIATE")
        for sender, lid, recipient, raw in batch:
            cur = conn.execute("INSERT INTO letters (sender, letter_id, recipient, size,"
                               " stored_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                               (sender, lid, recipient, len(raw), now, expires))
            conn.execute("INSERT INTO letter_bodies (letter, body) VALUES (?, ?)",
                         (cur.lastrowid, raw))
        conn.execute("COMMIT")

    def fresh() -> sqlite3.Connection:
        # A database of its own for each figure, so each starts as fresh.
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(args.db + suffix):
                os.remove(args.db + suffix)
        return open_prepared(args.db)

    paced = int(args.rate * args.duration)
    saturate, rest = letters[:len(letters) - paced], letters[len(letters) - paced:]
    result: dict[str, Any] = {"saturation_letters": len(saturate)}
    # The relay's group commits in the same run: as many transactions, the
    # letters split evenly among them, in order.
    groups = max(1, min(len(saturate), args.commits or -(-len(saturate) // args.in_flight)))
    bounds = [len(saturate) * i // groups for i in range(groups + 1)]
    if args.window_first:
        # The old figures: every transaction carries the whole window; and
        # the relay's commits, row by row.
        cpu0, t0 = _cpu(), time.perf_counter()
        for start in range(0, len(saturate), args.in_flight):
            commit(saturate[start:start + args.in_flight])
        result.update(window_elapsed=time.perf_counter() - t0, window_cpu=_cpu() - cpu0,
                      window_commits=commits)
        conn = fresh()
        commits = 0
        cpu0 = _cpu()
        for i in range(groups):
            commit_rowwise(saturate[bounds[i]:bounds[i + 1]])
        result.update(rowwise_cpu=_cpu() - cpu0)
        conn = fresh()
        commits = 0
    cpu0, t0 = _cpu(), time.perf_counter()
    for i in range(groups):
        commit(saturate[bounds[i]:bounds[i + 1]])
    result.update(saturation_elapsed=time.perf_counter() - t0, saturation_cpu=_cpu() - cpu0,
                  saturation_commits=commits)
    commits = 0
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
                  paced_commits=commits,
                  paced_cpu=_cpu() - cpu0, p50_ms=lat[len(lat) // 2] * 1e3,
                  p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3)
    conn.close()
    return result
