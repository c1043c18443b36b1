"""
Instructions per handshake, the relay against the cryptography alone
(issue 20), counted by valgrind's callgrind: a measure that the load of
other processes on a shared machine does not move, to compare two trees
of the relay (before and after a change) where CPU time is too noisy.

    python benchmarks/hs_instructions.py                 # this tree
    python benchmarks/hs_instructions.py --tree OTHER    # another checkout

The real C{twistd securechat} runs under callgrind with instrumentation
off; it is switched on (C{callgrind_control -i on}) just before the
generator (benchmarks/hsload.py, 4 workers) starts its measured phase and
off after it, so the count is the relay process's (all its threads) over
those handshakes.  The cryptography alone (hsload.crypto_once: the calls
the relay makes, as in benchmarks/run.py) is counted as the difference
between two runs of different lengths.

Instructions are not CPU time: the kernel's share (TCP accept, reads,
writes, close) and the waiting of threads for the interpreter lock are not
in them, and Python runs far fewer instructions per cycle than the
cryptography does, so the ratio here is well below the CPU-time ratio of
run.py.  Use it to compare trees, run.py for the issue's figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import run  # noqa: E402  (benchmarks/run.py, beside this file)

#: How callgrind reports the instructions it counted.
_TOTAL_PREFIXES = ("summary:", "totals:")


def total_instructions(callgrind_out: str) -> int:
    """
    The instruction count in a callgrind output file: its last total
    (the file starts with a C{summary: 0} written when collection was off,
    and ends with the C{totals:} of the run).
    """
    total = None
    with open(callgrind_out) as f:
        for line in f:
            if line.startswith(_TOTAL_PREFIXES):
                total = int(line.split()[1])
    if total is None:
        raise ValueError(f"no instruction total in {callgrind_out}")
    return total


def relay_count(tree: str, data_dir: str, work: str, duration: float) -> tuple[int, int]:
    """
    (instructions, handshakes) of the relay from C{tree} over a measured
    phase of C{duration} seconds.
    """
    port = run.free_port()
    out = os.path.join(work, f"callgrind.{port}")
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}"] + run.server_argv(
                "securechat", port, data_dir, os.path.join(work, f"relay-{port}.log"))
    env = dict(os.environ, PYTHONPATH=tree)
    relay = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or relay.poll() is not None:
                    raise SystemExit("the relay did not start under valgrind")
                time.sleep(0.5)
        gen = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "hsload.py"), "--port", str(port),
             "--data-dir", data_dir, "--concurrency", "4", "--duration", str(duration)],
            env=run.environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert gen.stdin is not None and gen.stdout is not None
        if gen.stdout.readline().strip() != "READY":
            raise SystemExit("the generator did not get ready")
        subprocess.run(["callgrind_control", "-i", "on", str(relay.pid)], check=True,
                       capture_output=True)
        gen.stdin.write("GO\n")
        gen.stdin.flush()
        result = json.loads(gen.stdout.readline())
        gen.wait()
        subprocess.run(["callgrind_control", "-i", "off", str(relay.pid)], check=True,
                       capture_output=True)
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait()
    return total_instructions(out), int(result["handshakes"])


def crypto_count(data_dir: str, work: str, iterations: int) -> int:
    """
    Instructions of C{iterations} of the relay's handshake cryptography
    alone (hsload.crypto_once).
    """
    out = os.path.join(work, f"callgrind.crypto.{iterations}")
    code = (
        "import sys, hashlib; sys.path.insert(0, %r); import hsload\n"
        "from cryptography.hazmat.primitives.asymmetric import ed25519\n"
        "from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey\n"
        "from securechat.crypto.keys import load_private_key\n"
        "key = load_private_key(open(%r, 'rb').read())\n"
        "user = hsload.user_key('u0')\n"
        "content = b'securechat/1 client-server initiator signature\\x00' + bytes(32)\n"
        "sig = user.sign(content)\n"
        "pub = ed25519.Ed25519PublicKey.from_public_bytes("
        "user.public_key().public_bytes(*hsload._RAW))\n"
        "share = X25519PrivateKey.generate().public_key().public_bytes(*hsload._RAW)\n"
        "salt = hashlib.sha256(b'securechat/1 client-server').digest()\n"
        "for _ in range(%d): hsload.crypto_once(key, pub, sig, content, share, salt)\n"
    ) % (HERE, os.path.join(data_dir, "server", "server.key"), iterations)
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, "-c", code], env=run.environment(), check=True,
                   capture_output=True)
    return total_instructions(out)


def main() -> int:
    p = argparse.ArgumentParser(description="relay instructions per handshake (callgrind)")
    p.add_argument("--tree", action="append",
                   help="a securechat checkout to measure (repeatable; default this one)")
    p.add_argument("--duration", type=float, default=20.0,
                   help="seconds of handshakes under valgrind per tree")
    args = p.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("hs_instructions: valgrind (with callgrind_control) is not installed",
              file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="securechat-instr-")
    try:
        data_dir = os.path.join(work, "data")
        run.make_data_dir(data_dir, 200)
        crypto = (crypto_count(data_dir, work, 300) - crypto_count(data_dir, work, 100)) / 200
        print(f"crypto alone: {crypto / 1e6:.2f} M instructions per handshake")
        for tree in args.tree or [ROOT]:
            total, handshakes = relay_count(os.path.abspath(tree), data_dir, work,
                                            args.duration)
            per = total / max(handshakes, 1)
            print(f"{tree}: {handshakes} handshakes, {per / 1e6:.2f} M instructions per "
                  f"handshake, {per / crypto:.2f}x the cryptography alone")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
