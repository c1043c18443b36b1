"""
The group benchmark (issue 15): one sender to 100 and to 1,000 members,
relay CPU per delivered copy against a bare Twisted fan-out in the same
run, and delivery latency at 10 messages/s.

    python benchmarks/group_bench.py            # a few minutes
    python benchmarks/group_bench.py --smoke    # tiny counts: checks it runs

securechat: C{twistd securechat} pinned to CPU 0 (taskset), its log in the
run's temporary directory, group and abuse limits lifted, SQLite store.
The baseline: this file's C{--baseline-server} mode, pinned to CPU 0, the
cheapest Twisted group fan-out: length-prefixed frames, first frame a name,
then every frame from a client is written as it is to every other
connection (one message written to N transports; no crypto, no store, no
queue, no membership), and the sender is answered with one byte (as
securechat answers GROUP_POSTED, so both senders keep --window in flight).
The load generator (benchmarks/groupload.py, two processes pinned to CPU 1:
the sender and the timed members, and the members that only read) connects
the sender and the members (securechat: real handshakes,
a group made with signed changes), then on GO: (1) throughput: the sender
posts --messages messages (securechat keeps --window waiting for
GROUP_POSTED, which comes after the SQLite commit); (2) paced: --rate
messages/s for --duration s, latency from send to each member's receipt.
Server CPU is utime + stime from /proc/PID/stat around each phase, divided
by the copies delivered in it.  Members do not GROUP_ACK during the
phases (a client acknowledges in batches), so that cost is not in the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

from run import (cpu_time, environment, free_port, make_data_dir, pinned,  # noqa: E402
                 server_argv, stop_process as stop)

STEP_TIMEOUT = 600
#: The issue's targets.
TARGET_COST_RATIO = 1.5
TARGET_P99_MS = 50.0


def baseline_server(port: int) -> None:
    """The bare fan-out (see the module docstring)."""
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import Int32StringReceiver

    clients: list[Any] = []

    class FanOut(Int32StringReceiver):
        MAX_LENGTH = 65536
        named = False

        def stringReceived(self, data: bytes) -> None:
            if not self.named:
                self.named = True
                clients.append(self)
                self.sendString(b"ok")
                return
            for client in clients:
                if client is not self:
                    client.sendString(data)
            self.sendString(b"k")  # the sender's answer, as GROUP_POSTED

        def connectionLost(self, reason: object = None) -> None:
            if self in clients:
                clients.remove(self)

    factory = Factory.forProtocol(FanOut)
    factory.noisy = False
    listening = reactor.listenTCP(port, factory,  # type: ignore[arg-type]
                                  interface="127.0.0.1")
    print(f"listening on {listening.getHost().port}", flush=True)  # type: ignore[attr-defined]
    reactor.run()


def wait_listening(proc: subprocess.Popen[Any], port: int, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.1)  # polling for start-up, bounded by the deadline


def start_server(target: str, members: int, work: str,
                 profile: str | None = None) -> tuple[subprocess.Popen[Any], int, str]:
    port = free_port()
    data_dir = os.path.join(work, f"data-{target}-{members}")
    if target == "securechat":
        make_data_dir(data_dir, members + 1)
        log_file = os.path.join(work, f"securechat-{members}.log")
        argv = server_argv("securechat", port, data_dir, log_file) + [
            "--group-members", str(members + 1), "--group-rate", "1000000",
            "--group-burst", "1000000"]
        if profile:
            argv[1:1] = [f"--profile={profile}-{members}", "--profiler=cprofile", "--savestats"]
    else:
        argv = [sys.executable, os.path.abspath(__file__), "--baseline-server", str(port)]
    proc = subprocess.Popen(pinned(0) + argv, env=environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_listening(proc, port, target)
    return proc, port, data_dir


def _generator(target: str, args: argparse.Namespace, members: int, port: int,
               data_dir: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        pinned(1) + [sys.executable, os.path.join(HERE, "groupload.py"), target,
                     "--port", str(port), "--data-dir", data_dir, "--members", str(members),
                     "--messages", str(args.messages * 100 // members or 1),
                     "--window", str(args.window), "--rate", str(args.rate),
                     "--duration", str(args.duration), *extra],
        env=environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _expect(proc: subprocess.Popen[str], word: str, what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(word):
        raise RuntimeError(f"{what}: expected {word}, got {line!r}")
    return line


def _go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("GO\n")
    proc.stdin.flush()


def run_one(target: str, args: argparse.Namespace, members: int, work: str) -> dict[str, Any]:
    server, port, data_dir = start_server(target, members, work,
                                          args.profile if target == "securechat" else None)
    gen = _generator(target, args, members, port, data_dir)
    readers: subprocess.Popen[str] | None = None

    def kill() -> None:
        for proc in (gen, readers):
            if proc is not None:
                proc.kill()
    watchdog = threading.Timer(STEP_TIMEOUT, kill)
    watchdog.start()
    what = f"{target} load generator"
    try:
        _expect(gen, "GROUPED", what)
        readers = _generator(target, args, members, port, data_dir, "--readers")
        _expect(readers, "READY", what + " (readers)")
        _go(gen)
        _expect(gen, "READY", what)
        cpu0 = cpu_time(server.pid)
        _go(gen)
        _expect(gen, "PHASE", what)
        cpu1 = cpu_time(server.pid)
        _go(gen)
        result: dict[str, Any] = json.loads(_expect(gen, "{", what))
        cpu2 = cpu_time(server.pid)
        gen.wait(STEP_TIMEOUT)
        _go(readers)
        discarded = json.loads(_expect(readers, "{", what + " (readers)"))
        readers.wait(STEP_TIMEOUT)
    finally:
        watchdog.cancel()
        for proc in (gen, readers):
            if proc is not None and proc.poll() is None:
                proc.kill()
        stop(server)
    if "error" in result or "error" in discarded:
        raise RuntimeError(f"{what}: {result.get('error') or discarded.get('error')}")
    result["discarded_bytes"] = discarded["discarded_bytes"]
    result["throughput_cpu"] = cpu1 - cpu0
    result["paced_cpu"] = cpu2 - cpu1
    result["members"] = members
    return result


def summarize(r: dict[str, Any]) -> dict[str, float]:
    return {
        "copies_per_s": r["throughput_copies"] / r["throughput_elapsed"],
        "cpu_us_per_copy": r["throughput_cpu"] / r["throughput_copies"] * 1e6,
        "paced_cpu_us_per_copy": r["paced_cpu"] / max(1, r["paced_copies"]) * 1e6,
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
    }


def report(results: dict[int, dict[str, dict[str, float]]], args: argparse.Namespace) -> str:
    lines = []
    for members, pair in results.items():
        sc, base = pair["securechat"], pair["baseline"]
        lines.append(f"-- 1 sender to {members} members")
        lines.append(f"{'metric':<24} {'securechat':>12} {'baseline':>12} {'ratio':>7}")
        for metric, a in sc.items():
            b = base[metric]
            ratio = f"{a / b:.2f}" if b else "-"
            lines.append(f"{metric:<24} {a:>12.2f} {b:>12.2f} {ratio:>7}")
        if base["cpu_us_per_copy"]:
            cost = sc["cpu_us_per_copy"] / base["cpu_us_per_copy"]
            lines.append(f"target: <= {TARGET_COST_RATIO}x the baseline's CPU per copy: "
                         f"{'met' if cost <= TARGET_COST_RATIO else 'NOT met'} ({cost:.2f}x)")
        else:
            lines.append("target: CPU per copy: the baseline's is below the clock's "
                         "resolution (too few copies to compare)")
        if members >= 1000 or args.smoke:
            lines.append(f"target: p99 < {TARGET_P99_MS:.0f} ms at {args.rate:.0f} msg/s: "
                         f"{'met' if sc['p99_ms'] < TARGET_P99_MS else 'NOT met'} "
                         f"({sc['p99_ms']:.1f} ms)")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description="groups: securechat's fan-out vs bare Twisted")
    p.add_argument("--smoke", action="store_true", help="tiny counts: checks it still runs")
    p.add_argument("--members", type=int, nargs="*", default=[100, 1000],
                   help="group sizes to run (default: 100 1000)")
    p.add_argument("--messages", type=int, default=2000,
                   help="messages in the throughput phase for 100 members (scaled down for "
                        "larger groups: the same number of copies)")
    p.add_argument("--window", type=int, default=16, help="posts waiting for GROUP_POSTED")
    p.add_argument("--rate", type=float, default=10.0, help="messages/s in the paced phase")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of the paced phase")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--profile", metavar="FILE",
                   help="save a cProfile of the relay's reactor thread as FILE-MEMBERS (pstats "
                        "format; it slows the relay: not for the figures)")
    p.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.baseline_server is not None:
        baseline_server(args.baseline_server)
        return 0
    if args.smoke:
        args.members, args.messages, args.duration = [5], 4, 0.3
    work = tempfile.mkdtemp(prefix="securechat-groupbench-")
    raw: list[dict[str, Any]] = []
    results: dict[int, dict[str, dict[str, float]]] = {}
    try:
        for members in args.members:
            pair = {}
            for target in ("securechat", "baseline"):
                r = run_one(target, args, members, work)
                r["target"] = target
                raw.append(r)
                pair[target] = summarize(r)
            results[members] = pair
        print(report(results, args))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"results": {str(k): v for k, v in results.items()}, "raw": raw}, f,
                          indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
