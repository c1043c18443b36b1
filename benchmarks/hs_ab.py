"""
Two (or more) trees of the relay side by side on the handshake case of
benchmarks/run.py (issue 20), taking turns, with the cryptography alone
timed before each round: the same-run ratio that compares a change with
what it changes, on a shared machine where absolute figures swing.

    python benchmarks/hs_ab.py --tree BEFORE --tree AFTER [--rounds 6]

Each tree's relay (C{twistd securechat} with that tree first on
C{PYTHONPATH}) runs for the whole invocation, pinned to the relays' core
as in run.py; each round times the crypto (hsload.py --case crypto), then
drives every relay in turn (the order alternates between rounds) with
run.py's handshake generator, and prints relay CPU per handshake over the
crypto.  The first round is a warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (benchmarks/run.py, beside this file)


class TreeServer(run.Server):
    """run.py's securechat relay (pinned to the relays' core), from C{tree}."""

    def __init__(self, tree: str, data_dir: str, work: str) -> None:
        self.tree = tree
        self.port = run.free_port()
        self.log_file = os.path.join(work, f"securechat-{self.port}.log")
        argv = run.server_argv("securechat", self.port, data_dir, self.log_file)
        self.proc = subprocess.Popen(run.pinned(0) + argv, env=dict(os.environ, PYTHONPATH=tree),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the relay from {tree} did not start{self.log_tail()}")
                time.sleep(0.1)


def main() -> int:
    p = argparse.ArgumentParser(description="relay trees side by side on the handshake case")
    p.add_argument("--tree", action="append", required=True, help="a securechat checkout")
    p.add_argument("--rounds", type=int, default=6, help="measured rounds (one more to warm up)")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per tree per round")
    p.add_argument("--generators", type=int, default=2)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="securechat-hsab-")
    servers: list[TreeServer] = []
    trees = [os.path.abspath(tree) for tree in args.tree]
    ratios: dict[str, list[float]] = {tree: [] for tree in trees}
    per_hs: dict[str, list[float]] = {tree: [] for tree in trees}
    try:
        data_dir = os.path.join(work, "data")
        run.make_data_dir(data_dir, 6000)
        servers = [TreeServer(tree, data_dir, work) for tree in trees]
        first = 0
        for rnd in range(args.rounds + 1):
            crypto = run.crypto_cost(data_dir, 2000)["crypto_us"]
            order = servers if rnd % 2 else servers[::-1]
            line = [f"round {rnd}{' (warm-up)' if not rnd else ''}: crypto {crypto:.0f} us"]
            for server in order:
                result = run.run_handshakes(server, "securechat", data_dir, 16, args.duration,
                                            first, args.generators)
                first = (first + 200) % 5600
                us = result["server_cpu"] / max(result["handshakes"], 1) * 1e6
                share = result["server_cpu"] / result["elapsed"]
                gen = result["generator_cpu"] / result["elapsed"]
                rate = result["handshakes"] / result["elapsed"]
                line.append(f"{os.path.basename(server.tree)} {us:.0f} us/hs "
                            f"{us / crypto:.2f}x ({rate:.0f}/s, relay share {share:.2f},"
                            f" generators {gen:.2f})")
                if rnd:
                    ratios[server.tree].append(us / crypto)
                    per_hs[server.tree].append(us)
            print("; ".join(line), flush=True)
        for tree in trees:
            print(f"{tree}: median {statistics.median(per_hs[tree]):.0f} us per handshake, "
                  f"{statistics.median(ratios[tree]):.2f}x the crypto "
                  f"(rounds: {', '.join(f'{r:.2f}' for r in ratios[tree])})")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
