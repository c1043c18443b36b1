"""
1:1 messages across relay processes (issue 16): relay CPU per message with
two relay processes and Redis counted, against the same load on one
process, in the same run.

    python benchmarks/cluster_bench.py                  # both halves
    python benchmarks/cluster_bench.py --single-only    # one process only (runs today)
    python benchmarks/cluster_bench.py --smoke          # tiny counts
    python benchmarks/cluster_bench.py --store postgresql:///securechat?host=/run/postgresql

The loads are two of benchmarks/run.py's cases (benchmarks/loadgen.py): N
pairs of users in open chats (set up with the real handshakes) sending
100-byte RELAY messages, either each sender keeping 8 in flight, the next
sent when one is delivered ("saturation", --case pairs), or 2,000 a second
in all, spread evenly ("light", --case light).  The relays batch what
crosses to another process per reactor turn, so the two differ most in
Redis commands per message.  Two set-ups take turns, run by run, so drift
on a shared machine hits both alike:

- one process: one relay; every pair on it.
- two processes: relays A and B joined by a throwaway Redis
  (C{--cluster unix:///DIR/redis.sock}, C{--process-id bench-a} and
  C{bench-b}); in every pair the sender is on A and the recipient on B, so
  every message crosses from one process to the other.

CPU is utime + stime from /proc/PID/stat around the measured phase only:
the relay's for one process; A's, B's and redis-server's together for two
(and each apart).  The Redis commands per message are Redis's own count
(C{INFO stats}, total_commands_processed) over the same phase, divided by
the messages delivered (presence heartbeats included).  The relays and
Redis run pinned to CPU 0, the generator to CPU 1 (taskset), as in run.py;
so "messages per second" shows the cost on one shared core, not what two
cores would carry.

The two-process half needs the relay options C{--cluster} and
C{--process-id} and, with C{--store}, that option too (issue 16; an older
relay lacks them): the script reads C{twistd securechat --help}
first and stops with one line naming what is missing.  C{--cluster}
refuses the SQLite store (it belongs to one process), so without C{--store}
the two-process half starts a throwaway PostgreSQL (L{tests.pgservice}, as
the tests do) and every relay of the run, the single one too, uses it; 1:1
messages never touch the store, logins read it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (benchmarks/run.py: the relay command, CPU time, pinning)

STEP_TIMEOUT = 180
#: The options each half needs from C{twistd securechat}.
CLUSTER_OPTIONS = ("--cluster", "--process-id")
STORE_OPTION = "--store"


class CannotRun(Exception):
    """
    The benchmark cannot run as asked; the message says why and what to do.
    """


def twistd() -> str:
    return os.path.join(os.path.dirname(sys.executable), "twistd")


def relay_help() -> str:
    """
    What C{twistd securechat --help} prints (the options this relay has).
    """
    out = subprocess.run([twistd(), "securechat", "--help"], capture_output=True, text=True,
                         env=run.environment(), timeout=60)
    if out.returncode:
        raise CannotRun(f"`twistd securechat --help` failed: {out.stderr.strip()[-500:]}")
    return out.stdout


def missing_options(help_text: str, wanted: Sequence[str]) -> list[str]:
    """
    The options of C{wanted} that C{help_text} does not list.
    """
    listed = {word.split("=")[0].rstrip(",") for word in help_text.split()
              if word.startswith("--")}
    return [option for option in wanted if option not in listed]


class _Postgres:
    """A throwaway PostgreSQL (L{tests.pgservice.Cluster}), stopped like the relays."""

    def __init__(self) -> None:
        from tests.pgservice import Cluster
        self.cluster = Cluster()
        self.cluster.start()

    def stop(self) -> None:
        self.cluster.stop()
        self.cluster.remove()


def throwaway_postgres(processes: list[Any]) -> str:
    """Start a throwaway PostgreSQL with an empty database; return its URL."""
    pg = _Postgres()
    processes.append(pg)
    pg.cluster.execute("CREATE DATABASE bench")
    return pg.cluster.url("bench")


def check_relay(store: str | None, help_text: str | None = None) -> None:
    """
    Stop with a clear message when the relay lacks what the two-process
    half needs.

    @raise CannotRun: naming the missing options and where they come from.
    """
    wanted = list(CLUSTER_OPTIONS) + ([STORE_OPTION] if store else [])
    missing = missing_options(relay_help() if help_text is None else help_text, wanted)
    if missing:
        raise CannotRun(
            f"this relay has no option {', '.join(missing)} (an older securechat: "
            "--cluster, --process-id and --store came with issue 16): the two-process half cannot run; --single-only runs the one-process half")
    if shutil.which("redis-server") is None:
        raise CannotRun("redis-server is not installed (apt-get install redis-server): the "
                        "two-process half needs a throwaway Redis; --single-only runs the "
                        "one-process half")


class Relay:
    """
    One C{twistd securechat} process, listening on a free loopback port.
    """

    def __init__(self, name: str, data_dir: str, work: str, extra: Sequence[str]) -> None:
        self.name = name
        self.port = run.free_port()
        self.metrics_port = run.free_port()
        self.log_file = os.path.join(work, f"{name}-{self.port}.log")
        argv = run.server_argv("securechat", self.port, data_dir, self.log_file) + list(extra)
        argv += ["--metrics", f"tcp:{self.metrics_port}:interface=127.0.0.1"]
        self.proc = subprocess.Popen(run.pinned(0) + argv, env=run.environment(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # /health answers 503 until the relay listens and, with --cluster,
        # until it is linked to Redis (it refuses logins with UNAVAILABLE
        # before that): accepting on the port is not enough.
        wait_for(lambda: _accepts(("127.0.0.1", self.port)) and self.healthy(), self.proc,
                 f"relay {name} did not start (or never linked to Redis)", self.log_tail)

    def healthy(self) -> bool:
        """Whether C{/health} on its metrics port answers 200."""
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.metrics_port}/health", timeout=2) as reply:
                return bool(reply.status == 200)
        except (OSError, ValueError):
            return False

    def log_tail(self) -> str:
        return run.log_tail(self.log_file)

    def stop(self) -> None:
        run.stop_process(self.proc)


class Redis:
    """
    A throwaway redis-server on a unix socket only (no TCP port, nothing
    saved), stopped by PID.
    """

    def __init__(self, work: str) -> None:
        self.path = os.path.join(work, "redis.sock")
        if len(self.path.encode()) > 100:
            raise CannotRun(f"{self.path} is too long for a unix socket's path")
        argv = ["redis-server", "--port", "0", "--unixsocket", self.path, "--unixsocketperm",
                "700", "--save", "", "--appendonly", "no", "--dir", work]
        self.proc = subprocess.Popen(run.pinned(0) + argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: self.command(b"PING") == b"+PONG", self.proc, "redis-server did not start")

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def command(self, line: bytes) -> bytes:
        """
        One inline command; its reply (a bulk reply's body), or b"" when
        nothing answers.
        """
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(self.path)
                s.sendall(line + b"\r\n")
                reply = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
                    if reply.startswith(b"$"):
                        head, _, body = reply.partition(b"\r\n")
                        if len(body) >= int(head[1:]) + 2:
                            return body[:int(head[1:])]
                    elif reply.endswith(b"\r\n"):
                        return reply.rstrip(b"\r\n")
        except OSError:
            return b""
        return reply

    def commands_processed(self) -> int:
        for line in self.command(b"INFO stats").decode().splitlines():
            if line.startswith("total_commands_processed:"):
                return int(line.split(":", 1)[1])
        raise RuntimeError("redis-server's INFO stats has no total_commands_processed")

    def stop(self) -> None:
        run.stop_process(self.proc)


def _accepts(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=1).close()
        return True
    except OSError:
        return False


def wait_for(ready: Any, proc: subprocess.Popen[Any], what: str, tail: Any = None) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(what + (tail() if tail else ""))
        time.sleep(0.1)


def measure(relays: Sequence[Relay], redis: Redis | None, data_dir: str,
            case: Sequence[str], first_user: int) -> dict[str, Any]:
    """
    One run of a loadgen.py case (C{case}: its options): senders on
    C{relays[0]}, recipients on C{relays[-1]}; CPU of every process counted
    around the measured phase.
    """
    pids = {relay.name: relay.proc.pid for relay in relays}
    if redis is not None:
        pids["redis"] = redis.proc.pid
    argv = run.pinned(1) + [
        sys.executable, os.path.join(HERE, "loadgen.py"), "--target", "securechat",
        "--port", str(relays[0].port), "--peer-port", str(relays[-1].port),
        "--data-dir", data_dir, *case, "--first-user", str(first_user)]
    errors = tempfile.TemporaryFile("w+")
    gen = subprocess.Popen(argv, env=run.environment(), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=errors, text=True)
    assert gen.stdin is not None and gen.stdout is not None
    watchdog = threading.Timer(STEP_TIMEOUT, gen.kill)
    watchdog.start()

    def failed(what: str) -> RuntimeError:
        gen.kill()
        gen.wait()
        errors.seek(0)
        return RuntimeError(f"load generator: {what}; exit status {gen.returncode}; its stderr "
                            f"ends:\n{errors.read()[-2000:]}"
                            + "".join(relay.log_tail() for relay in relays))
    try:
        line = gen.stdout.readline()
        if line.strip() != "READY":
            raise failed(f"expected READY, got {line!r}")
        cpu0 = {name: run.cpu_time(pid) for name, pid in pids.items()}
        commands0 = redis.commands_processed() if redis is not None else 0
        gen.stdin.write("GO\n")
        gen.stdin.flush()
        line = gen.stdout.readline()
        try:
            result: dict[str, Any] = json.loads(line)
        except ValueError:
            raise failed(f"expected a JSON result, got {line!r}") from None
        cpu1 = {name: run.cpu_time(pid) for name, pid in pids.items()}
        if redis is not None:
            result["redis_commands"] = redis.commands_processed() - commands0
        gen.wait(STEP_TIMEOUT)
    finally:
        watchdog.cancel()
        if gen.poll() is None:
            gen.kill()
        errors.close()
    result["cpu"] = {name: cpu1[name] - cpu0[name] for name in pids}
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, float]:
    """
    Medians over C{runs}: CPU per delivered message (all processes, and
    each apart), throughput, latency, Redis commands per message.
    """
    out: dict[str, float] = {}

    def med(key: str, f: Any) -> None:
        out[key] = statistics.median(f(r) for r in runs)
    med("cpu_us_per_msg", lambda r: sum(r["cpu"].values()) / r["delivered"] * 1e6)
    for name in runs[0]["cpu"]:
        if len(runs[0]["cpu"]) > 1:
            med(f"cpu_us_per_msg_{name}", lambda r, n=name: r["cpu"][n] / r["delivered"] * 1e6)
    med("msgs_per_s", lambda r: r["delivered"] / r["elapsed"])
    med("p50_ms", lambda r: r["p50_ms"])
    med("p99_ms", lambda r: r["p99_ms"])
    if "redis_commands" in runs[0]:
        med("redis_cmds_per_msg", lambda r: r["redis_commands"] / r["delivered"])
    med("generator_cpu_share", lambda r: r["generator_cpu"] / r["elapsed"])
    return out


def print_table(one: dict[str, float], two: dict[str, float] | None) -> None:
    print(f"{'metric':<28} {'one process':>12} {'two processes':>14} {'ratio':>7}")
    names = list(one) + [k for k in (two or {}) if k not in one]
    for metric in names:
        a, b = one.get(metric), (two or {}).get(metric)
        shown_a = f"{a:>12.2f}" if a is not None else f"{'-':>12}"
        shown_b = f"{b:>14.2f}" if b is not None else f"{'-':>14}"
        ratio = f"{b / a:>7.2f}" if a and b is not None else f"{'-':>7}"
        print(f"{metric:<28} {shown_a} {shown_b} {ratio}")
    if two is None:
        print("two processes: not run (--single-only)")
    for label, side in (("one process", one), ("two processes", two or {})):
        if side.get("generator_cpu_share", 0) > 0.9:
            print(f"note ({label}): the load generator used {side['generator_cpu_share']:.0%} of "
                  "its core: it, not the relays, limited throughput")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="1:1 messages across two relay processes joined by Redis, against one "
                    "process, in the same run (issue 16)")
    p.add_argument("--single-only", action="store_true",
                   help="run only the one-process half (needs no Redis and no cluster options)")
    p.add_argument("--store", metavar="URL",
                   help="pass --store URL to every relay (for example postgresql://...) "
                        "[default: the SQLite mailbox in the benchmark's data directory]")
    p.add_argument("--only", choices=("saturation", "light"), action="append",
                   help="run only this case (repeatable; default both): saturation, each "
                        "sender keeping 8 messages in flight; light, 2,000 messages a second "
                        "spread evenly")
    p.add_argument("--pairs", type=int, default=None, help="chatting pairs (default 50)")
    p.add_argument("--messages", type=int, default=None,
                   help="saturation: messages each sender sends per run (default 2000)")
    p.add_argument("--seconds", type=float, default=None,
                   help="light: seconds of each run (default 4)")
    p.add_argument("--repeats", type=int, default=None,
                   help="measured runs of each half (default 7), after one warm-up run")
    p.add_argument("--smoke", action="store_true", help="tiny counts: checks it still runs")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    pairs = args.pairs or (2 if args.smoke else 50)
    messages = args.messages or (5 if args.smoke else 2000)
    seconds = args.seconds or (0.05 if args.smoke else 4.0)
    cases = {
        "saturation": (f"1:1 saturation, {pairs} pairs x {messages} messages",
                       ["--case", "pairs", "--pairs", str(pairs), "--messages", str(messages),
                        "--window", "8"]),
        "light": (f"light 2000 msg/s, {pairs} pairs for {seconds:g} s",
                  ["--case", "light", "--pairs", str(pairs), "--rate", "2000", "--duration",
                   str(seconds)]),
    }
    cases = {name: case for name, case in cases.items() if not args.only or name in args.only}
    repeats = args.repeats or (1 if args.smoke else 7)
    try:
        if not args.single_only:
            check_relay(args.store)
            if args.store is None:
                sys.path.insert(0, os.path.dirname(HERE))
                from tests.pgservice import missing as postgres_missing
                if postgres_missing():
                    raise CannotRun(
                        f"{', '.join(postgres_missing())} not installed (apt-get install "
                        "postgresql): --cluster needs a shared store; give --store URL, or "
                        "--single-only runs the one-process half")
        elif args.store:
            missing = missing_options(relay_help(), [STORE_OPTION])
            if missing:
                raise CannotRun("this relay has no --store option (an older securechat: it "
                                "came with issue 16)")
    except CannotRun as e:
        sys.stderr.write(f"cluster_bench: {e}\n")
        return 2
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="securechat-cluster-bench-")
    data_dir = os.path.join(work, "data")
    users = max(400, 4 * pairs)
    processes: list[Any] = []
    try:
        run.make_data_dir(data_dir, users)
        store_url = args.store
        if store_url is None and not args.single_only:
            store_url = throwaway_postgres(processes)
        store = ["--store", store_url] if store_url else []
        single = Relay("single", data_dir, work, store)
        processes.append(single)
        cluster: list[Relay] = []
        redis = None
        if not args.single_only:
            redis = Redis(work)
            processes.append(redis)
            for name in ("a", "b"):
                cluster.append(Relay(name, data_dir, work, store + [
                    "--cluster", redis.url, "--process-id", f"bench-{name}"]))
                processes.append(cluster[-1])
        results: dict[str, dict[str, dict[str, float]]] = {}
        first = 0
        for name, (title, case) in cases.items():
            runs: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
            for attempt in range(repeats + (0 if args.smoke else 1)):
                for half in ("one", "two"):
                    if half == "two" and not cluster:
                        continue
                    relays = [single] if half == "one" else cluster
                    result = measure(relays, redis if half == "two" else None, data_dir, case,
                                     first)
                    first = (first + 2 * pairs) % (users - 2 * pairs + 1)
                    if attempt or args.smoke:
                        runs[half].append(result)
            print(f"{title}, medians of {repeats} runs (CPU: relays and Redis, microseconds "
                  "per delivered message)")
            results[name] = {half: summarize(r) for half, r in runs.items() if r}
            print_table(results[name]["one"], results[name].get("two"))
            print()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        print(f"total time {time.monotonic() - started:.0f} s")
    finally:
        for process in reversed(processes):
            process.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
