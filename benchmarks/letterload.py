"""
A lean letter client and load generator for the mailbox: the crash-safety
test (tests/test_mailbox_crash.py) and the mailbox benchmark
(benchmarks/mailbox_bench.py) both run it as a subprocess.

Clients are built from the same parts as the real client: the shared
protocol class (L{SecureChatProtocol}, a full client-server handshake with
the user's registered key), the mailbox messages of securechat.wire, and
the letter crypto of securechat.crypto.  Recipients upload a real signed
prekey (whose private half this process keeps, so it can open what it
reads back); senders fetch the recipient's bundle from the relay (which
checks the prekey's signature), and seal every letter before the measured
phase, so resending one is posting the same bytes under the same id.

Keys are derived from the user's name as in benchmarks/run.py
(C{make_data_dir}), which registers the users.

Modes (one JSON line on standard output at the end; other lines are
for the driver):

  crash  posts --letters letters over the senders (a window of --window
         each); prints C{KILL n} when n letters have been acknowledged, for
         each n of --kill-at; when the relay goes away prints C{LOST} and
         waits for C{PORT p} on standard input, logs in again and posts
         every letter not yet acknowledged again, same bytes, same id.  Once
         all are acknowledged prints C{ACKED}, waits for C{VERIFY p}, then
         as each recipient lists its mailbox (totals) and fetches and opens
         --sample letters (signature verified, content as sent).
  bench  prints READY and waits for GO; then a saturation phase (--letters
         letters, --window in flight per sender) and a paced phase (--rate
         letters/s for --duration s, one due letter per millisecond tick);
         reports acknowledged letters per second and ack latencies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import sys
import time
from collections import deque
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from securechat.crypto.config import CLIENT_SERVER, Config, Role  # noqa: E402
from securechat.crypto.letters import open_letter, seal_letter  # noqa: E402
from securechat.crypto.prekeys import PrekeyBundle, generate_signed_prekey  # noqa: E402
from securechat.protocol import SecureChatProtocol  # noqa: E402
from securechat.wire.mailbox import (  # noqa: E402
    MAILBOX_FROM_SERVER, Bundle, FetchBundle, FetchLetter, Letter, LetterList, LetterRefused,
    LetterStored, ListLetters, PostLetter, PrekeysStored, UploadPrekeys,
)
from securechat.wire.messages import UserIdentity  # noqa: E402
from securechat.wire.relay import CommandFailed, Welcome  # noqa: E402


def user_key(name: str) -> ed25519.Ed25519PrivateKey:
    """The key benchmarks/run.py registers for C{name}."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"securechat-bench " + name.encode()).digest())


class LeanClient:
    """
    The delegate of one L{SecureChatProtocol}: logged in at WELCOME; every
    other message goes to C{on_message}; C{ended} fires when the connection
    ends.
    """

    protocol: SecureChatProtocol

    def __init__(self, name: str, server_key: Any, on_message: Callable[[Any], None]) -> None:
        self.name = name
        self.server_key = server_key
        self.on_message = on_message
        self.welcomed: defer.Deferred[LeanClient] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()

    def verify_peer(self, identity: Any) -> Any:
        return self.server_key

    def established(self, peer: Any) -> None:
        pass

    def message_received(self, message: Any) -> None:
        if isinstance(message, Welcome):
            self.welcomed.callback(self)
        else:
            self.on_message(message)

    def connection_ended(self, reason: Any) -> None:
        if not self.welcomed.called:
            self.welcomed.errback(RuntimeError(f"{self.name} could not log in: {reason}"))
        if not self.ended.called:
            self.ended.callback(None)

    def post(self, message: Any) -> None:
        self.protocol.post(message)


async def login(port: int, name: str, server_key: Any,
                on_message: Callable[[Any], None]) -> LeanClient:
    key = user_key(name)
    client = LeanClient(name, server_key, on_message)
    proto = SecureChatProtocol(Config(CLIENT_SERVER, Role.INITIATOR, key, UserIdentity(name),
                                      registry=MAILBOX_FROM_SERVER),
                               client, reactor, handshake_timeout=30)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10), proto)
    return await client.welcomed


async def answer(client: LeanClient, kind: type, message: Any) -> Any:
    """Post C{message}; wait for the first answer of type C{kind}."""
    d: defer.Deferred[Any] = defer.Deferred()

    def got(m: Any) -> None:
        if isinstance(m, (CommandFailed, LetterRefused)) and not d.called:
            d.errback(RuntimeError(f"{client.name}: refused: {m!r}"))
        elif isinstance(m, kind) and not d.called:
            d.callback(m)
    client.on_message = got
    client.post(message)
    return await d


def _stdin_line() -> defer.Deferred[str]:
    d: defer.Deferred[str] = defer.Deferred()
    reactor.callInThread(  # type: ignore[attr-defined]
        lambda: reactor.callFromThread(d.callback, sys.stdin.readline()))  # type: ignore[attr-defined]
    return d


async def command(word: str) -> str:
    """Wait for a line C{word ARG} on standard input; return ARG."""
    line = (await _stdin_line()).split()
    if len(line) != 2 or line[0] != word:
        raise SystemExit(f"expected {word} ARG, got {line!r}")
    return line[1]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def say(line: str) -> None:
    print(line, flush=True)


class Secrets:
    """The recipients' signed prekeys' private halves (L{PrekeySecrets})."""

    def __init__(self, private: X25519PrivateKey) -> None:
        self.private = private

    def signed_prekey(self, prekey_id: int) -> X25519PrivateKey | None:
        return self.private if prekey_id == 1 else None

    def one_time_prekey(self, prekey_id: int) -> X25519PrivateKey | None:
        return None


class Load:
    """Sealed letters, and which are acknowledged."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.senders = [f"s{i}" for i in range(args.senders)]
        self.recipients = [f"r{i}" for i in range(args.recipients)]
        with open(os.path.join(args.data_dir, "server", "server.pem"), "rb") as f:
            self.server_key = x509.load_pem_x509_certificate(f.read()).public_key()
        self.secrets: dict[str, Secrets] = {}
        #: (sender, recipient, letter id, sealed bytes, content)
        self.letters: list[tuple[str, str, bytes, bytes, bytes]] = []
        self.acked: list[bool] = []
        self.ack_count = 0
        self.by_key: dict[tuple[str, bytes], int] = {}

    async def setup(self, port: int) -> None:
        now = int(time.time())
        for r in self.recipients:
            client = await login(port, r, self.server_key, lambda m: None)
            prekey, private = generate_signed_prekey(r, user_key(r), 1, now)
            self.secrets[r] = Secrets(private)
            await answer(client, PrekeysStored, UploadPrekeys(prekey.encode(), b""))
            client.protocol.close()
        bundles: dict[tuple[str, str], PrekeyBundle] = {}
        for s in self.senders:
            client = await login(port, s, self.server_key, lambda m: None)
            for r in self.recipients:
                b = await answer(client, Bundle, FetchBundle(r))
                bundles[s, r] = PrekeyBundle.parse(b.user, b.signed_prekey, b.one_time_prekey)
            client.protocol.close()
        for i in range(self.args.letters):
            s = self.senders[i % len(self.senders)]
            r = self.recipients[(i // len(self.senders)) % len(self.recipients)]
            content = f"letter {i} from {s} to {r}".encode()
            sealed = seal_letter(sender=s, sender_private=user_key(s), recipient=r,
                                 recipient_key=user_key(r).public_key(), bundle=bundles[s, r],
                                 content=content, sent_at=now)
            lid = sealed.header.letter_id
            self.by_key[s, lid] = i
            self.letters.append((s, r, lid, sealed.raw, content))
            self.acked.append(False)

    def acknowledged(self, sender: str, message: LetterStored) -> int | None:
        """Note an acknowledgement; the letter's index if it is the first."""
        i = self.by_key.get((sender, message.letter_id))
        if i is None:
            raise SystemExit(f"an acknowledgement for a letter never sent: {message!r}")
        if self.acked[i]:
            return None
        self.acked[i] = True
        self.ack_count += 1
        return i


class Sender:
    """One sender's connection: a window of letters in flight."""

    def __init__(self, load: Load, name: str, window: int,
                 on_ack: Callable[[int], None]) -> None:
        self.load = load
        self.name = name
        self.window = window
        self.on_ack = on_ack
        #: This sender's letters (indexes into the load), in order.
        self.mine = [i for i, letter in enumerate(load.letters) if letter[0] == name]
        self.queue: deque[int] = deque()
        self.in_flight = 0
        self.client: LeanClient | None = None
        self.done: defer.Deferred[None] = defer.Deferred()
        self.sent_at: dict[int, float] = {}

    async def connect(self, port: int) -> None:
        """Log in; post every letter of C{mine} not acknowledged, in order."""
        self.queue = deque(i for i in self.mine if not self.load.acked[i])
        self.in_flight = 0
        self.client = await login(port, self.name, self.load.server_key, self.received)
        self.fill()

    def post(self, i: int) -> None:
        assert self.client is not None
        _, r, lid, raw, _ = self.load.letters[i]
        self.sent_at.setdefault(i, time.perf_counter())
        self.client.post(PostLetter(r, lid, raw))

    def fill(self) -> None:
        while self.in_flight < self.window and self.queue:
            self.post(self.queue.popleft())
            self.in_flight += 1
        self.check_done()

    def check_done(self) -> None:
        if self.in_flight == 0 and not self.queue and not self.done.called:
            self.done.callback(None)

    def received(self, message: Any) -> None:
        if isinstance(message, LetterStored):
            self.in_flight -= 1
            i = self.load.acknowledged(self.name, message)
            if i is not None:
                self.on_ack(i)
            self.fill()
        elif isinstance(message, (LetterRefused, CommandFailed)):
            say(f"ERROR {self.name}: {message!r}")
            reactor.stop()


async def crash(args: argparse.Namespace) -> dict[str, Any]:
    load = Load(args)
    port = int(await command("PORT"))
    await load.setup(port)
    say(f"SEALED {len(load.letters)}")
    kill_at = sorted(int(n) for n in args.kill_at.split(",") if n) if args.kill_at else []

    def on_ack(i: int) -> None:
        if kill_at and load.ack_count >= kill_at[0]:
            say(f"KILL {kill_at.pop(0)}")

    senders = [Sender(load, s, args.window, on_ack) for s in load.senders]
    lost = 0
    while not all(load.acked):
        try:
            await defer.gatherResults([defer.ensureDeferred(s.connect(port)) for s in senders],
                                      consumeErrors=True)
        except Exception:
            # The relay went away while we logged in: wait for the next one.
            pass
        else:
            waits: list[defer.Deferred[Any]] = [s.client.ended for s in senders
                                                if s.client is not None]
            waits.append(defer.gatherResults([s.done for s in senders]))
            await defer.DeferredList(waits, fireOnOneCallback=True)
            if all(load.acked):
                for s in senders:
                    if s.client is not None:
                        s.client.protocol.close()
                break
        for s in senders:
            if s.client is not None:
                s.client.protocol.close()
            s.done = defer.Deferred()
        lost += 1
        say("LOST")
        port = int(await command("PORT"))
    say("ACKED")
    port = int(await command("VERIFY"))
    totals: dict[str, int] = {}
    opened = 0
    missing: list[list[Any]] = []
    rng = random.Random(args.seed)
    sample = rng.sample(range(len(load.letters)), min(args.sample, len(load.letters)))
    for r in load.recipients:
        client = await login(port, r, load.server_key, lambda m: None)
        listed = await answer(client, LetterList, ListLetters(1, 0))
        totals[r] = listed.total
        for i in sample:
            frm, to, lid, raw, content = load.letters[i]
            if to != r:
                continue
            try:
                got = await answer(client, Letter, FetchLetter(frm, lid))
            except RuntimeError as e:  # not on the relay: reported, the driver checks
                missing.append([i, str(e)])
                continue
            if got.letter != raw:
                raise SystemExit(f"letter {i} came back changed")
            letter = open_letter(got.letter, recipient=r, recipient_key=user_key(r).public_key(),
                                 sender_key=user_key(frm).public_key(), prekeys=load.secrets[r],
                                 envelope=(got.sender, got.letter_id))
            if letter.content != content:
                raise SystemExit(f"letter {i} opened to other content")
            opened += 1
        client.protocol.close()
    return {"acked": [[s, lid.hex()] for (s, _, lid, _, _), a in zip(load.letters, load.acked) if a],
            "totals": totals, "opened": opened, "missing": missing, "reconnects": lost}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    load = Load(args)
    port = args.port
    await load.setup(port)
    if args.dump:
        # The same bytes, for the bare-SQLite baseline of mailbox_bench.py.
        with open(args.dump, "w") as f:
            for sender, recipient, lid, raw, _ in load.letters:
                f.write(f"{sender} {recipient} {lid.hex()} {raw.hex()}\n")
    latencies: list[float] = []

    def on_ack(i: int) -> None:
        latencies.append(time.perf_counter() - senders_by[load.letters[i][0]].sent_at[i])

    senders = [Sender(load, s, args.window, on_ack) for s in load.senders]
    senders_by = {s.name: s for s in senders}
    # The paced phase's letters are the last args.rate * args.duration.
    paced = int(args.rate * args.duration)
    saturate = len(load.letters) - paced
    for s in senders:
        mine, s.mine = s.mine, []
        await s.connect(port)
        s.mine = mine
        s.queue = deque(i for i in mine if i < saturate)
        s.done = defer.Deferred()
    say("READY")
    await command("GO")
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for s in senders:
        s.fill()
    await defer.gatherResults([s.done for s in senders])
    elapsed = time.perf_counter() - t0
    result: dict[str, Any] = {"saturation_letters": saturate, "saturation_elapsed": elapsed,
                              "generator_cpu_share": (cpu_seconds() - cpu0) / elapsed}
    say("PHASE")
    await command("GO")
    latencies.clear()
    for s in senders:
        s.window = 1 << 30
        s.done = defer.Deferred()
    order = list(range(saturate, len(load.letters)))
    state = {"sent": 0}
    start = time.perf_counter()
    done: defer.Deferred[None] = defer.Deferred()

    def pace() -> None:
        due = min(len(order), int((time.perf_counter() - start) * args.rate) + 1)
        while state["sent"] < due:
            i = order[state["sent"]]
            state["sent"] += 1
            s = senders_by[load.letters[i][0]]
            s.queue.append(i)
            s.fill()
        if state["sent"] >= len(order):
            loop.stop()
            done.callback(None)
    loop = task.LoopingCall(pace)
    loop.start(0.001)
    await done
    for s in senders:  # every paced letter is posted: wait for the last answers
        s.done = defer.Deferred()
        s.check_done()
    await defer.gatherResults([s.done for s in senders])
    paced_elapsed = time.perf_counter() - start
    lat = sorted(latencies)
    result.update(paced_letters=len(order), paced_elapsed=paced_elapsed,
                  p50_ms=lat[len(lat) // 2] * 1e3,
                  p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
                  acked=load.ack_count, letter_bytes=sum(len(x[3]) for x in load.letters)
                  / max(1, len(load.letters)))
    for s in senders:
        if s.client is not None:
            s.client.protocol.close()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("crash", "bench"))
    p.add_argument("--data-dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--recipients", type=int, default=2)
    p.add_argument("--letters", type=int, default=3000)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--kill-at", default="")
    p.add_argument("--sample", type=int, default=100)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--dump", help="bench: write the sealed letters here (one per line, hex)")
    args = p.parse_args()

    async def run(_: Any) -> None:
        result = await (crash(args) if args.mode == "crash" else bench(args))
        print(json.dumps(result), flush=True)
    task.react(lambda r: defer.ensureDeferred(run(r)))


if __name__ == "__main__":
    main()
