"""
Does the relay's login refusal tell whether a user name is registered?
(issue 12, security defect 2; docs/protocol.rst 5.1, "Refusals cost a
verification").

    python benchmarks/login_timing.py                  # 2,000 samples per case, Ed25519
    python benchmarks/login_timing.py --key rsa        # RSA-3072 users (also: ecdsa)
    python benchmarks/login_timing.py --samples 20     # a quick look

In one process, with the real relay protocol (L{RelayFactory}) on an
in-memory transport, it logs in again and again in three ways that the
relay must refuse alike:

  - C{unknown}: a name that is not registered;
  - C{revoked}: a registered name that is revoked;
  - C{bad-signature}: a registered name, signed with another key.

Each sample times only the relay's handling of the client's AUTH record
(C{dataReceived} of that one record: decrypting it, looking the name up,
verifying, deriving the key the refusal is sealed under, logging the
refusal), which is what a prober sees as the delay between its AUTH and
the refusal.  Everything before it (HELLO, HELLO_REPLY, the client's own
work) is outside the timed region.

Method, and why it is robust on a shared, noisy machine:

  - I{Interleaved sampling}: every round takes one sample of each case, in
    a fresh random order, so drift (frequency scaling, other processes,
    the allocator warming up) hits the three cases alike instead of
    biasing whichever ran last.
  - I{Medians}: wall-clock micro-timings have a heavy right tail
    (preemption, interrupts); the median ignores it, where a mean would
    be dominated by a few slow samples.  The garbage collector is paused
    while a sample is timed, and run between rounds.
  - I{Verdict}: the relative separation is (largest median - smallest
    median) / smallest median.  It fails (exit status 1) above
    C{--threshold}, 10% by default.  The defect this guards against was
    a separation of about 120 us on a refusal of a few hundred (tens of
    percent: one whole signature verification missing), while noise
    between the medians of a few thousand interleaved samples stays within
    a few percent (the report prints, as a noise estimate, how far the
    medians of the even and the odd rounds of one case lie apart).  A rank test (Mann-Whitney) would flag
    differences far too small to matter once the samples are many, and
    says nothing about size; a relative threshold on medians answers the
    question that matters: is the difference big enough to see?
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import random
import statistics
import sys
import time
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from securechat.crypto import keys  # noqa: E402
from securechat.crypto.config import CLIENT_SERVER, Config, Role  # noqa: E402
from securechat.crypto.handshake import Connection  # noqa: E402
from securechat.protocol import SecureChatProtocol  # noqa: E402
from securechat.server.directory import MemoryDirectory, UserEntry  # noqa: E402
from securechat.server.limits import Limits  # noqa: E402
from securechat.server.relay import Relay, RelayFactory, ServerCredentials  # noqa: E402
from securechat.wire.messages import CertificateIdentity, UserIdentity  # noqa: E402
from securechat.wire.relay import FROM_SERVER  # noqa: E402

CASES = ("unknown", "revoked", "bad-signature")
DEFAULT_THRESHOLD = 10.0  # percent

#: Same-length names, so that no case hashes more transcript than another.
REGISTERED, REVOKED, UNKNOWN = "alice", "rebus", "zorro"


def make_key(kind: str, seed: str) -> keys.PrivateKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(seed.encode()).digest())
    if kind == "ecdsa":
        return ec.derive_private_key(
            int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big") % (2**255),
            ec.SECP256R1())
    return rsa.generate_private_key(65537, 3072)


ADDRESS = IPv4Address("TCP", "192.0.2.1", 40000)


class Bench:
    """
    A relay in memory, with one registered, one revoked user, and the
    signing keys of the three cases.
    """

    def __init__(self, kind: str) -> None:
        self.server_key = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x53" * 32)
        registered = make_key(kind, "alice")
        revoked = make_key(kind, "rebus")
        directory = MemoryDirectory([
            UserEntry(REGISTERED, registered.public_key()),
            UserEntry(REVOKED, revoked.public_key(), revoked=True),
        ])
        identity = CertificateIdentity((b"benchmark certificate",), b"benchmark crl")
        limits = Limits(max_unauthenticated=10**6, max_unauthenticated_per_host=10**6)
        self.relay = Relay(directory, ServerCredentials(self.server_key, identity), Clock(),
                           limits)
        self.factory = RelayFactory(self.relay)
        self.signers: dict[str, tuple[str, keys.PrivateKey]] = {
            "unknown": (UNKNOWN, make_key(kind, "zorro")),
            "revoked": (REVOKED, revoked),
            "bad-signature": (REGISTERED, make_key(kind, "mallory")),
        }

    def sample(self, case: str) -> int:
        """
        One login of C{case}; the nanoseconds the relay spent on the
        client's AUTH record.
        """
        name, key = self.signers[case]
        proto = self.factory.buildProtocol(ADDRESS)
        assert isinstance(proto, SecureChatProtocol)
        transport = StringTransport()
        proto.makeConnection(transport)
        client = Connection(Config(CLIENT_SERVER, Role.INITIATOR, key, UserIdentity(name),
                                   registry=FROM_SERVER))
        client.initiate()
        proto.dataReceived(client.data_to_send())
        client.receive_data(transport.value())
        transport.clear()
        client.accept_peer(self.server_key.public_key())
        auth = client.data_to_send()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            proto.dataReceived(auth)
            elapsed = time.perf_counter_ns() - start
        finally:
            gc.enable()
        refusal = transport.value()
        if not refusal or proto.error is None or proto.error.code not in (
                "unknown-user", "revoked-user", "bad-signature"):
            raise RuntimeError(f"{case}: the relay did not refuse the login ({proto.error})")
        proto.connectionLost()
        return elapsed


def measure(kind: str, samples: int, seed: int = 1,
            progress: Callable[[str], None] | None = None) -> dict[str, list[int]]:
    """
    C{samples} timings of each case, interleaved in a random order per round.
    """
    bench = Bench(kind)
    order = list(CASES)
    shuffle = random.Random(seed).shuffle
    for case in CASES:  # warm-up: caches, stand-in keys, code paths
        for _ in range(5):
            bench.sample(case)
    out: dict[str, list[int]] = {case: [] for case in CASES}
    for i in range(samples):
        shuffle(order)
        for case in order:
            out[case].append(bench.sample(case))
        if i % 50 == 49:
            gc.collect()
            if progress is not None:
                progress(f"{i + 1}/{samples}")
    return out


def separation(medians: dict[str, float]) -> float:
    """
    (largest - smallest) / smallest, in percent.
    """
    low, high = min(medians.values()), max(medians.values())
    return (high - low) / low * 100 if low > 0 else 0.0


def report(kind: str, timings: dict[str, list[int]], threshold: float) -> tuple[str, bool]:
    """
    The report's text and whether the cases separated beyond C{threshold}.
    """
    medians = {case: statistics.median(t) / 1000 for case, t in timings.items()}
    lines = [f"login refusal timing, {kind} keys, {len(timings[CASES[0]])} samples per case "
             "(microseconds the relay spends on the refused AUTH record)",
             f"{'case':<16} {'median_us':>10} {'p25_us':>10} {'p75_us':>10} "
             f"{'even_us':>10} {'odd_us':>10}"]
    noise = 0.0
    for case, t in timings.items():
        q = statistics.quantiles(t, n=4) if len(t) >= 2 else [t[0]] * 3
        # Noise: the same case split into its even and odd rounds (both
        # interleaved in time, so drift cancels as between cases).
        even, odd = statistics.median(t[0::2]) / 1000, statistics.median(t[1::2] or t) / 1000
        noise = max(noise, separation({"even": even, "odd": odd}))
        lines.append(f"{case:<16} {medians[case]:>10.1f} {q[0] / 1000:>10.1f} {q[2] / 1000:>10.1f} "
                     f"{even:>10.1f} {odd:>10.1f}")
    apart = separation(medians)
    failed = apart > threshold
    lines.append(f"separation of the medians: {apart:.1f}% (threshold {threshold:g}%); "
                 f"noise, even against odd rounds of one case: up to {noise:.1f}%")
    if not failed:
        verdict = "ok: the cases are indistinguishable within the threshold"
    elif noise * 2 >= apart:
        verdict = ("FAIL, but the run is too noisy to tell (noise at least half the separation): "
                   "run again with more --samples")
    else:
        verdict = "FAIL: the refusal time tells the cases apart"
    lines.append("verdict: " + verdict)
    return "\n".join(lines), failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Time the relay's refusal of an unknown name, a revoked name and a bad "
                    "signature; exit 1 if their medians separate beyond the threshold.")
    p.add_argument("--samples", type=int, default=2000, help="samples per case (default 2000)")
    p.add_argument("--key", choices=("ed25519", "ecdsa", "rsa"), default="ed25519",
                   help="the users' key type (rsa: 3072 bits; default ed25519)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"largest allowed separation of the medians, in percent "
                        f"(default {DEFAULT_THRESHOLD:g})")
    args = p.parse_args(argv)
    if args.samples < 1:
        p.error("--samples must be at least 1")
    timings = measure(args.key, args.samples,
                      progress=lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    text, failed = report(args.key, timings, args.threshold)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
