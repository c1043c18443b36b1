"""
The benchmark: securechat against the cheapest possible Twisted relay
(benchmarks/baseline.py), same cases, same load generator, same run.

    python benchmarks/run.py            # about 6.5 minutes on 2 cores
    python benchmarks/run.py --quick    # fewer repeats, smaller cases
    python benchmarks/run.py --smoke    # tiny counts: checks it still runs
    python benchmarks/run.py --quick --only 1:1 --target securechat  # one case

The mailbox (acknowledged letters per second with durability, ack latency
at 1,000 letters/s offered, against bare SQLite; issues 14 and 20) is the
table's last case, "letters": benchmarks/mailbox_bench.py run from here
(see its docstring and RESULTS.md; its own command gives more detail and
--profile).  Its baseline column is bare SQLite, not the Twisted relay.

The login-refusal timing check (unknown vs revoked vs bad signature, issue
12) is a separate command, benchmarks/login_timing.py: it exits 1 when the
three medians separate (see its docstring and RESULTS.md).

Each relay runs pinned to CPU 0 and the load generator to CPU 1 (taskset).
For each case the generator sets up (logins, chats), then the server's CPU
time (utime + stime from /proc/PID/stat) is read around the measured phase
only.  Both relays run side by side and take turns run by run, so that drift
on a shared machine hits both alike.  Every case runs once to warm up, then
--repeats times (by default 7 times for the short message cases, whose runs
vary most, 3 for the others; an idle case each time in a freshly started
server, where 1,000 warm-up users first take up the memory the server freed
while starting, so that the growth measured is what each further user
costs); medians are printed, with securechat divided by the baseline.  The
generator's own CPU is reported: if it used nearly a whole core, it, not
the relay, was the limit, and the table says so.

The handshake case (issue 20) has a generator of its own,
benchmarks/hsload.py: the sans-IO core under asyncio, which trusts the
relay instead of checking its chain, CRL and signature, so that it costs
less per handshake than the relay and does not limit the rate (the
relay's CPU share during the run, C{server_cpu_share}, shows whether the
relay was saturated).  Before each of its runs, the handshake's
cryptography alone (hsload.py --case crypto: X25519 generation and
exchange, the relay's signature, the verification of the user's, the HKDF
and MAC steps, as the relay calls them) is timed on the relays' core, and
the table gives the relay's CPU per handshake over it (C{cpu_over_crypto},
the median of the per-run ratios; the target is 2).  The generator runs as
--generators processes (2 by default) on its core: on a machine shared
with other work, that gets it a larger share of the core.

The handshake case also runs a third relay in the same turns, the floor:
baseline.py --crypto, the bare relay making at each login all the
cryptography of one securechat handshake (what hsload.py --case crypto
times, and the records) and nothing else.  It shows what that cryptography
costs inside a Twisted relay rather than in a tight loop, and a lower bound
for any Twisted relay of this protocol; the table's notes give its ratio
to the cryptography alone and the relay's ratio to it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
STEP_TIMEOUT = 120


def pinned(cpu: int) -> list[str]:
    if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > cpu:  # type: ignore[operator]
        return ["taskset", "-c", str(cpu)]
    return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_time(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def make_data_dir(path: str, users: int) -> None:
    """
    A data directory with users u0..u{users-1}, keys derived from their
    names (the generator derives the same ones).
    """
    sys.path.insert(0, ROOT)
    import datetime

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from securechat.datadir import DataDir, UserDirectory, UserRecord, utc_text

    now = datetime.datetime.now(datetime.timezone.utc)
    data = DataDir(path)
    data.init(["localhost", "127.0.0.1"], now)
    directory = UserDirectory()
    for i in range(users):
        name = f"u{i}"
        key = ed25519.Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(b"securechat-bench " + name.encode()).digest())
        directory.users[name] = UserRecord(name, key.public_key(), utc_text(now))
    data.save_users(directory)


#: The handshake case's third relay: baseline.py doing, at each login, all
#: the cryptography of one securechat handshake (a lower bound for any
#: Twisted relay of this protocol; see baseline.py).
FLOOR = "floor"


def server_argv(target: str, port: int, data_dir: str, log_file: str) -> list[str]:
    """
    The command that starts C{target}'s relay on C{port}.  securechat's
    log goes to C{log_file}, which must be a regular file in the run's
    temporary directory: twistd rotates its log at 1 MB by renaming the
    file, so a device such as /dev/null would be renamed (as root, the
    machine's /dev/null was).
    """
    given = os.path.abspath(log_file)
    if any(path.startswith("/dev/") for path in (given, os.path.realpath(given))):
        raise ValueError(f"refusing to log to a device ({log_file}): twistd renames its log file")
    if target == "securechat":
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        return [twistd, "-n", "--pidfile=", f"--logfile={log_file}", "securechat",
                "--data-dir", data_dir, "--listen", f"tcp:{port}:interface=127.0.0.1",
                # the benchmark measures relaying, not the abuse limits
                "--rate", "1000000", "--burst", "1000000", "--max-chats", "1000",
                "--max-outgoing-requests", "1000", "--max-incoming-requests", "1000",
                "--max-unauthenticated", "100000", "--max-unauthenticated-per-host", "100000"]
    if target == FLOOR:
        # The bare relay making the handshake's cryptography at each login.
        return [sys.executable, os.path.join(HERE, "baseline.py"), str(port),
                "--crypto", data_dir]
    return [sys.executable, os.path.join(HERE, "baseline.py"), str(port)]


class Server:
    def __init__(self, target: str, data_dir: str, work: str) -> None:
        self.port = free_port()
        self.log_file = os.path.join(work, f"{target}-{self.port}.log")
        argv = server_argv(target, self.port, data_dir, self.log_file)
        # stdout and stderr (not the log) are inherited descriptors on
        # /dev/null: written to, never renamed.
        self.proc = subprocess.Popen(pinned(0) + argv, env=environment(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"{target} did not start{self.log_tail()}")
                time.sleep(0.1)

    def log_tail(self) -> str:
        return log_tail(self.log_file)

    def stop(self) -> None:
        stop_process(self.proc)


def log_tail(path: str) -> str:
    """The end of a process's log file, for an error saying it did not start."""
    try:
        with open(path, errors="replace") as f:
            return "; its log ends:\n" + f.read()[-2000:]
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def crypto_cost(data_dir: str, iterations: int) -> dict[str, Any]:
    """
    The CPU time of the handshake's cryptography alone (benchmarks/hsload.py
    --case crypto), in a process pinned to the relays' core.
    """
    argv = pinned(0) + [sys.executable, os.path.join(HERE, "hsload.py"), "--case", "crypto",
                        "--data-dir", data_dir, "--iterations", str(iterations)]
    out = subprocess.run(argv, env=environment(), capture_output=True, text=True,
                         timeout=STEP_TIMEOUT)
    if out.returncode:
        raise RuntimeError(f"crypto measurement failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run_case(server: Server, target: str, data_dir: str, case: str, options: list[str],
             first_user: int) -> dict[str, Any]:
    argv = pinned(1) + [sys.executable, os.path.join(HERE, "loadgen.py"), "--target", target,
                        "--port", str(server.port), "--data-dir", data_dir, "--case", case,
                        "--first-user", str(first_user)] + options
    errors = tempfile.TemporaryFile("w+")  # the generator's complaints, quoted if it fails
    gen = subprocess.Popen(argv, env=environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=errors, text=True)
    assert gen.stdin is not None and gen.stdout is not None

    def failed(what: str) -> RuntimeError:
        gen.kill()
        gen.wait()
        errors.seek(0)
        return RuntimeError(f"load generator ({target}, {case}): {what}; "
                            f"exit status {gen.returncode}; its stderr ends:\n{errors.read()[-2000:]}")

    # Every loop here is bounded: a step that takes too long kills the
    # generator, and the read below then fails loudly.
    watchdog = threading.Timer(STEP_TIMEOUT, gen.kill)
    watchdog.start()

    def expect(word: str) -> None:
        line = gen.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != word:
            raise failed(f"expected {word}, got {line!r}")

    try:
        expect("READY")
        rss0 = rss_bytes(server.proc.pid)
        cpu0 = cpu_time(server.proc.pid)
        gen.stdin.write("GO\n")
        gen.stdin.flush()
        extra: dict[str, Any] = {}
        if case == "idle":
            expect("CONNECTED")
            connected_cpu = cpu_time(server.proc.pid)
            time.sleep(2)
            idle0 = cpu_time(server.proc.pid)
            time.sleep(5)
            extra["idle_cpu_percent"] = (cpu_time(server.proc.pid) - idle0) / 5 * 100
            extra["rss_growth"] = rss_bytes(server.proc.pid) - rss0
            cpu1 = connected_cpu
            gen.stdin.write("DONE\n")
            gen.stdin.flush()
        line = gen.stdout.readline()
        try:
            result = json.loads(line)
        except ValueError:
            raise failed(f"expected a JSON result, got {line!r}") from None
        if case != "idle":
            cpu1 = cpu_time(server.proc.pid)
        gen.wait(STEP_TIMEOUT)
    finally:
        watchdog.cancel()
        if gen.poll() is None:
            gen.kill()
        errors.close()
    result.update(extra)
    result["server_cpu"] = cpu1 - cpu0
    return result


def run_handshakes(server: Server, target: str, data_dir: str, concurrency: int,
                   duration: float, first_user: int, generators: int) -> dict[str, Any]:
    """
    The handshake case from C{generators} processes of hsload.py at once
    (C{concurrency} workers in all), all pinned to the generator's core:
    on a machine shared with other work, several processes get the
    generator a larger share of its core.  Handshakes and generator CPU
    are summed; the elapsed time is the longest.
    """
    each = max(1, concurrency // generators)
    procs = []
    errors = []
    for g in range(generators):
        generator = "baseline" if target == FLOOR else target
        argv = pinned(1) + [sys.executable, os.path.join(HERE, "hsload.py"), "--target", generator,
                            "--port", str(server.port), "--data-dir", data_dir,
                            "--first-user", str(first_user + g * each),
                            "--concurrency", str(each), "--duration", str(duration)]
        err = tempfile.TemporaryFile("w+")
        errors.append(err)
        procs.append(subprocess.Popen(argv, env=environment(), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=err, text=True))
    def kill_all() -> None:
        for p in procs:
            p.kill()
    watchdog = threading.Timer(STEP_TIMEOUT, kill_all)
    watchdog.start()

    def failed(what: str) -> RuntimeError:
        for p in procs:
            p.kill()
            p.wait()
        tails = []
        for err in errors:
            err.seek(0)
            tails.append(err.read()[-1000:])
        return RuntimeError(f"handshake generator ({target}): {what}; their stderr ends:\n"
                            + "\n".join(tails))
    try:
        for p in procs:
            line = p.stdout.readline()  # type: ignore[union-attr]
            if line.strip() != "READY":
                raise failed(f"expected READY, got {line!r}")
        cpu0 = cpu_time(server.proc.pid)
        for p in procs:
            p.stdin.write("GO\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        results = []
        for p in procs:
            line = p.stdout.readline()  # type: ignore[union-attr]
            try:
                results.append(json.loads(line))
            except ValueError:
                raise failed(f"expected a JSON result, got {line!r}") from None
        cpu1 = cpu_time(server.proc.pid)
        for p in procs:
            p.wait(STEP_TIMEOUT)
    finally:
        watchdog.cancel()
        for p in procs:
            if p.poll() is None:
                p.kill()
        for err in errors:
            err.close()
    return {"case": "handshakes", "target": target,
            "handshakes": sum(r["handshakes"] for r in results),
            "elapsed": max(r["elapsed"] for r in results),
            "generator_cpu": sum(r["generator_cpu"] for r in results),
            "generators": generators, "server_cpu": cpu1 - cpu0}


CASES = {
    # name: (generator options, full size, quick size, smoke size)
    "1:1 saturation": ("pairs", ["--pairs", "{n}", "--messages", "{m}", "--window", "8"],
                       (50, 2000), (20, 1000), (2, 5)),
    "fan-out 1->100": ("fanout", ["--recipients", "{n}", "--messages", "{m}", "--window", "4"],
                       (100, 500), (100, 100), (3, 3)),
    "light 2000 msg/s": ("light", ["--pairs", "{n}", "--rate", "2000", "--duration", "{m}"],
                         (50, 4), (20, 2), (2, 0.05)),
    "handshakes": ("handshakes", ["--concurrency", "{n}", "--duration", "{m}"],
                   (16, 4), (16, 2), (2, 0.2)),
    # (users measured, warm-up users logged in before them)
    "idle 1000 users": ("idle", ["--idle-users", "{n}", "--idle-warmup", "{m}"],
                        (1000, 1000), (1000, 1000), (5, 5)),
    "idle 5000 users": ("idle", ["--idle-users", "{n}", "--idle-warmup", "{m}"],
                        (5000, 1000), None, None),
}


#: The mailbox case: (letters at saturation, seconds paced at 1,000/s) for
#: the full, quick and smoke sizes.
LETTERS_CASE = "letters"
LETTERS_SIZES = ((20000, 10.0), (5000, 3.0), (200, 0.2))


def letters_case(size_index: int, repeats: int) -> dict[str, dict[str, float]]:
    """
    The mailbox (benchmarks/mailbox_bench.py): acknowledged letters per
    second with durability and their relay CPU, at saturation; ack latency
    at 1,000 letters/s offered.  Medians of C{repeats} runs, each against
    bare SQLite (the "baseline" column) in the same run.
    """
    import mailbox_bench
    letters, duration = LETTERS_SIZES[size_index - 1]
    window = 8 if size_index == 3 else 64
    runs = [mailbox_bench.measure(letters, window=window, duration=duration)
            for _ in range(max(1, repeats))]
    names = (("acked_letters_per_s", "acked_per_s"), ("cpu_us_per_letter", "cpu_us_per_letter"),
             ("letters_per_commit", "letters_per_commit"),
             ("ack_p50_ms", "p50_ms"), ("ack_p99_ms", "p99_ms"))
    out: dict[str, dict[str, float]] = {}
    for side, index in (("securechat", 0), ("baseline", 1)):
        out[side] = {name: statistics.median(run[index][key] for run in runs)
                     for name, key in names}
    # The baseline as it was until 2026-12-02 (the whole window, 256
    # letters, in every transaction; the relay's commits carry far fewer):
    # the same CPU figure against it, for comparison.
    out["securechat"]["cpu_us_vs_window_commits"] = out["securechat"]["cpu_us_per_letter"]
    out["baseline"]["cpu_us_vs_window_commits"] = statistics.median(
        run[1]["window_cpu_us_per_letter"] for run in runs)
    # The same commits inserted row by row, the baseline until the fourth
    # round (now one executemany per commit, as the relay's store does).
    out["securechat"]["cpu_us_vs_rowwise_inserts"] = out["securechat"]["cpu_us_per_letter"]
    out["baseline"]["cpu_us_vs_rowwise_inserts"] = statistics.median(
        run[1]["rowwise_cpu_us_per_letter"] for run in runs)
    # The relay's CPU split by thread: the reactor's, the store's.
    for name in ("reactor_cpu_us_per_letter", "store_thread_cpu_us_per_letter"):
        out["securechat"][name] = statistics.median(run[0][name] for run in runs)
    out["securechat"]["generator_cpu_share"] = statistics.median(
        run[0]["generator_cpu_share"] for run in runs)
    return out


def summarize(case: str, runs: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}

    def med(key: str, f: Any = None) -> None:
        values = [f(r) if f else r[key] for r in runs if f or key in r]
        if values:
            out[key] = statistics.median(values)
    if runs[0]["case"] in ("pairs", "fanout", "light"):
        med("cpu_us_per_msg", lambda r: r["server_cpu"] / r["delivered"] * 1e6)
        med("msgs_per_s", lambda r: r["delivered"] / r["elapsed"])
        med("p50_ms")
        med("p99_ms")
        med("generator_cpu_share", lambda r: r["generator_cpu"] / r["elapsed"])
    elif runs[0]["case"] == "handshakes":
        med("handshakes_per_s", lambda r: r["handshakes"] / r["elapsed"])
        med("server_cpu_us_per_handshake", lambda r: r["server_cpu"] / r["handshakes"] * 1e6)
        # What one core of server CPU would complete if the generator kept up.
        # (CPU time is counted in 10 ms ticks: a tiny run may show none.)
        med("server_capacity_per_s", lambda r: r["handshakes"] / max(r["server_cpu"], 0.01))
        # Near 1: the relay, not the generator, was the limit.
        med("server_cpu_share", lambda r: r["server_cpu"] / r["elapsed"])
        # Summed over the generator processes, all on one core.
        med("generator_cpu_share", lambda r: r["generator_cpu"] / r["elapsed"])
        if "crypto_us" in runs[0]:
            # The cryptography alone, measured just before each run, and
            # the run's server CPU per handshake over it (issue 20).
            med("crypto_us", lambda r: r["crypto_us"])
            med("records_us", lambda r: r["records_us"])
            med("cpu_over_crypto",
                lambda r: r["server_cpu"] / r["handshakes"] * 1e6 / r["crypto_us"])
    else:
        med("rss_per_conn_kib", lambda r: r["rss_growth"] / r["connected"] / 1024)
        med("idle_cpu_percent")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description="securechat vs a bare Twisted relay")
    p.add_argument("--repeats", type=int, default=None,
                   help="measured runs per case (default: 7 for the message cases, "
                        "which are short and noisy, 3 for handshakes and idle; "
                        "3 and 1 with --quick)")
    p.add_argument("--generators", type=int, default=2,
                   help="generator processes for the handshake case (default 2)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--only", metavar="TEXT", action="append",
                   help="run only the cases whose name contains TEXT (repeatable)")
    p.add_argument("--target", choices=("baseline", "securechat"), action="append",
                   help="run only this relay (repeatable; default both)")
    args = p.parse_args()
    size_index = 3 if args.smoke else 2 if args.quick else 1
    def repeats_of(kind: str) -> int:
        if args.smoke:
            return 1
        if args.repeats is not None:
            return int(args.repeats)
        many = kind in ("pairs", "fanout", "light")
        if args.quick:
            return 3 if many else 1
        return 7 if many else 3
    sys.path.insert(0, HERE)  # mailbox_bench, for the letters case
    work = tempfile.mkdtemp(prefix="securechat-bench-")
    data_dir = os.path.join(work, "data")
    started = time.monotonic()
    try:
        make_data_dir(data_dir, 6000)
        results: dict[str, dict[str, dict[str, float]]] = {}
        targets = args.target or ("baseline", "securechat")
        # Both relays run throughout and take turns, case by case and run
        # by run, so that drift on a shared machine hits both alike.
        servers: dict[str, Server] = {}
        try:
            for target in targets:
                servers[target] = Server(target, data_dir, work)
            first = dict.fromkeys(targets, 0)  # fresh users for every run
            first[FLOOR] = 0
            for case, spec in CASES.items():
                kind, template, *sizes = spec
                size = sizes[size_index - 1]
                if size is None or (args.only and not any(o in case for o in args.only)):
                    continue
                n, m = size
                options = [o.format(n=n, m=m) for o in template]
                case_targets = list(targets)
                if kind == "handshakes" and "securechat" in targets:
                    # The floor takes its turns beside the two relays.
                    servers.setdefault(FLOOR, Server(FLOOR, data_dir, work))
                    case_targets.append(FLOOR)
                runs: dict[str, list[dict[str, Any]]] = {t: [] for t in case_targets}
                if kind == "idle":
                    # Each run in a fresh server process, so that the memory
                    # it grows by is the idle users' alone (freed memory is
                    # not given back to the system, and a second run would
                    # reuse it).  Measured users from u0, warm-up ones after.
                    for attempt in range(repeats_of(kind)):
                        for target in targets:
                            servers[target].stop()
                            servers[target] = Server(target, data_dir, work)
                            runs[target].append(
                                run_case(servers[target], target, data_dir, kind, options, 0))
                else:
                    # A warm-up run, then the measured ones.
                    for attempt in range(repeats_of(kind) + (0 if args.smoke else 1)):
                        crypto = None
                        if kind == "handshakes":
                            # The crypto alone, on the relays' core, just
                            # before the run it is compared with.
                            crypto = crypto_cost(data_dir, 50 if args.smoke else 2000)
                        for target in case_targets:
                            if kind == "handshakes":
                                result = run_handshakes(servers[target], target, data_dir, n, m,
                                                        first[target], args.generators)
                            else:
                                result = run_case(servers[target], target, data_dir, kind,
                                                  options, first[target])
                            if crypto is not None and target in ("securechat", FLOOR):
                                result.update(crypto_us=crypto["crypto_us"],
                                              records_us=crypto["records_us"])
                            first[target] = (first[target] + 200) % 4000
                            if attempt or args.smoke:
                                runs[target].append(result)
                for target in case_targets:
                    results.setdefault(case, {})[target] = summarize(case, runs[target])
        finally:
            for server in servers.values():
                server.stop()
        if not args.only or any(o in LETTERS_CASE for o in args.only):
            results[LETTERS_CASE] = letters_case(size_index, repeats_of("letters"))
        print_table(results)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        print(f"\ntotal time {time.monotonic() - started:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"{'case':<20} {'metric':<28} {'securechat':>12} {'baseline':>12} {'ratio':>7}")
    for case, by_target in results.items():
        sc, base = by_target.get("securechat", {}), by_target.get("baseline", {})
        for metric in sc:
            a, b = sc.get(metric), base.get(metric)
            ratio = f"{a / b:.2f}" if a is not None and b else "-"
            shown = f"{b:>12.2f}" if b is not None else f"{'-':>12}"
            print(f"{case:<20} {metric:<28} {a:>12.2f} {shown} {ratio:>7}")
        if "cpu_over_crypto" in sc:
            print(f"{'':<20} note: relay CPU per handshake {sc['server_cpu_us_per_handshake']:.0f} us "
                  f"is {sc['cpu_over_crypto']:.2f}x the cryptography alone "
                  f"({sc['crypto_us']:.0f} us, same run, median of per-run ratios); "
                  "target <= 2x")
            floor = by_target.get(FLOOR, {})
            if not floor.get("server_cpu_us_per_handshake"):
                print(f"{'':<20} note: the floor (the bare Twisted relay making the same "
                      "cryptography at each login) used too little CPU to measure in this run")
            elif "cpu_over_crypto" in floor:
                print(f"{'':<20} note: the floor (the bare Twisted relay making the same "
                      f"cryptography at each login, same run) costs "
                      f"{floor['server_cpu_us_per_handshake']:.0f} us per login, "
                      f"{floor['cpu_over_crypto']:.2f}x the cryptography alone; the relay is "
                      f"{sc['server_cpu_us_per_handshake'] / floor['server_cpu_us_per_handshake']:.2f}x "
                      "the floor")
        share = sc.get("generator_cpu_share", 0)
        if share > 0.9:
            print(f"{'':<20} note: the load generator used {share:.0%} of its core: it, not the "
                  "relay, limited throughput here")


if __name__ == "__main__":
    sys.exit(main())
