"""
The load generator for benchmarks/run.py: the same cases against securechat
and against the baseline relay.

It sets a case up (connections, logins, chats), prints READY, waits for GO
on standard input (so the orchestrator reads the server's CPU time around
the measured phase only), runs the measured phase, and prints one JSON line
with what it measured, including its own CPU time.

securechat clients are the real ones (L{ChatClient} over the shared
protocol): logins are full client-server handshakes and chats run the real
end-to-end handshake through the relay.  The measured messages are then
sent as opaque 100-byte RELAY payloads (the relay cannot tell them from
end-to-end ciphertext, and sealing them here would only make the generator
the bottleneck).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import struct
import sys
import time
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols.basic import Int32StringReceiver

MARK = b"BENCH"
HEADER = struct.Struct(">5sIQ")  # mark, sequence, send time (ns)
SIZE = 100


def user_key(name: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"securechat-bench " + name.encode()).digest())


def payload(seq: int) -> bytes:
    head = HEADER.pack(MARK, seq, time.perf_counter_ns())
    return head + b"." * (SIZE - len(head))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Stats:
    def __init__(self) -> None:
        self.delivered = 0
        self.latencies: list[int] = []

    def received(self, data: bytes) -> None:
        _, seq, sent = HEADER.unpack_from(data)
        self.delivered += 1
        self.latencies.append(time.perf_counter_ns() - sent)


# -- securechat side -----------------------------------------------------------

class NullView:
    def __init__(self, on: dict[str, Callable[..., None]]) -> None:
        self.on = on

    def __getattr__(self, name: str) -> Callable[..., None]:
        return self.on.get(name, lambda *a: None)


def securechat_user(port: int, name: str, server_key: Any, stats: Stats,
                    hooks: dict[str, Callable[..., None]]) -> defer.Deferred[Any]:
    from securechat.client.core import ChatClient
    from securechat.client.pins import PinStore
    from securechat.crypto.config import CLIENT_SERVER, Config, Role
    from securechat.protocol import SecureChatProtocol
    from securechat.wire.messages import UserIdentity
    from securechat.wire.relay import FROM_SERVER, Relayed

    delivered = hooks.get("delivered", lambda *a: None)

    class BenchClient(ChatClient):
        # The generator takes RELAYED undecoded (as the relay takes RELAY),
        # so that it, not the relay, is not the bottleneck: measured
        # payloads are counted straight from their bytes; anything else
        # (the end-to-end handshakes of the setup) goes the normal way.
        def raw_messages_received(self, items: Any) -> None:
            for _, body in items:
                n = body[0]
                if body[5 + n:10 + n] == MARK:
                    stats.received(body[5 + n:])
                    delivered(self.user, str(body[1:1 + n], "ascii"))
                else:
                    self.message_received(FROM_SERVER.parse(Relayed.TYPE, bytes(body)))

    logged_in: defer.Deferred[Any] = defer.Deferred()
    on = dict(hooks)
    on["logged_in"] = lambda user: logged_in.callback(client)

    def refused(reason: Any) -> None:
        if not logged_in.called:
            logged_in.errback(RuntimeError(f"{name} could not log in: {reason}"))
    on["disconnected"] = refused
    key = user_key(name)
    client = BenchClient(name, key, NullView(on), lambda identity: server_key, PinStore(None))
    proto = SecureChatProtocol(Config(CLIENT_SERVER, Role.INITIATOR, key, UserIdentity(name),
                                      registry=FROM_SERVER, raw_types=frozenset({Relayed.TYPE})),
                               client, reactor, handshake_timeout=120)
    connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
    return logged_in


_RELAY_HEADS: dict[tuple[str, int], bytes] = {}


def securechat_send(client: Any, peer: str, data: bytes) -> None:
    """
    Post a RELAY of C{data} to C{peer}: the same bytes as
    C{protocol.post(Relay(peer, data))}, with the encoding of everything
    before the payload cached (the generator must stay cheap).
    """
    key = (peer, len(data))
    head = _RELAY_HEADS.get(key)
    if head is None:
        from securechat.wire.relay import Relay
        body = Relay(peer, data).encode_body()
        head = _RELAY_HEADS[key] = struct.pack(">BI", Relay.TYPE, len(body)) + body[:-len(data)]
    client.protocol.outbound.push_encoded(head, data)


# -- baseline side -------------------------------------------------------------

class BaselineClient(Int32StringReceiver):
    MAX_LENGTH = 65536

    def __init__(self, name: str, stats: Stats, delivered: Callable[[str, str], None]) -> None:
        self.name = name
        self.stats = stats
        self.delivered = delivered
        #: Fires when the relay has routed the name (its "ok").
        self.logged_in: defer.Deferred[BaselineClient] = defer.Deferred()

    def connectionMade(self) -> None:
        self.sendString(self.name.encode())

    def stringReceived(self, data: bytes) -> None:
        if not self.logged_in.called:
            self.logged_in.callback(self)
            return
        n = data[0]
        self.stats.received(data[1 + n:])
        self.delivered(self.name, data[1:1 + n].decode())

    def send_to(self, peer: str, data: bytes) -> None:
        raw = peer.encode()
        self.sendString(bytes([len(raw)]) + raw + data)


def baseline_user(port: int, name: str, stats: Stats,
                  delivered: Callable[[str, str], None]) -> defer.Deferred[Any]:
    proto = BaselineClient(name, stats, delivered)
    d = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
    d.addCallback(lambda _: proto.logged_in)
    return d


# -- cases ---------------------------------------------------------------------

async def go_signal() -> None:
    """
    Tell the orchestrator the case is set up, and wait for its GO.
    """
    print("READY", flush=True)
    line = await _stdin_line()
    if line.strip() != "GO":
        raise SystemExit(f"expected GO, got {line!r}")


def _stdin_line() -> defer.Deferred[str]:
    d: defer.Deferred[str] = defer.Deferred()
    reactor.callInThread(lambda: reactor.callFromThread(d.callback, sys.stdin.readline()))  # type: ignore[attr-defined]
    return d


async def run_case(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    server_key = None
    if args.target == "securechat":
        with open(os.path.join(args.data_dir, "server", "server.pem"), "rb") as f:
            server_key = x509.load_pem_x509_certificate(f.read()).public_key()
    clients: dict[str, Any] = {}
    secured: dict[str, defer.Deferred[Any]] = {}
    flow: dict[str, Callable[[str, str], None]] = {"delivered": lambda to, frm: None}

    def on_delivered(to: str, frm: str) -> None:
        flow["delivered"](to, frm)

    def mark_secured(user: str, peer: str) -> None:
        d = secured.setdefault(f"{user}>{peer}", defer.Deferred())
        if not d.called:
            d.callback(None)

    async def login(name: str, port: int | None = None) -> Any:
        port = port or args.port
        if args.target == "securechat":
            def accept(requester: str) -> None:
                clients[name].accept(requester)

            def secured_with(peer: str) -> None:
                mark_secured(name, peer)

            hooks: dict[str, Callable[..., None]] = {
                "delivered": on_delivered, "chat_requested": accept,
                "chat_secured": secured_with}
            client = await securechat_user(port, name, server_key, stats, hooks)
        else:
            client = await baseline_user(port, name, stats, on_delivered)
        clients[name] = client
        return client

    async def chat(a: str, b: str) -> None:
        if args.target != "securechat":
            return
        d1 = secured.setdefault(f"{a}>{b}", defer.Deferred())
        d2 = secured.setdefault(f"{b}>{a}", defer.Deferred())
        clients[a].request_chat(b)
        await defer.gatherResults([d1, d2])

    def send(frm: str, to: str, data: bytes) -> None:
        if args.target == "securechat":
            securechat_send(clients[frm], to, data)
        else:
            clients[frm].send_to(to, data)

    result: dict[str, Any] = {"case": args.case, "target": args.target}
    base = args.first_user

    if args.case in ("pairs", "light"):
        pairs = [(f"u{base + 2 * i}", f"u{base + 2 * i + 1}") for i in range(args.pairs)]
        for a, b in pairs:
            await login(a)
            await login(b, args.peer_port)
        await defer.gatherResults([defer.ensureDeferred(chat(a, b)) for a, b in pairs])
        await go_signal()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        done: defer.Deferred[None] = defer.Deferred()
        total = args.pairs * args.messages
        if args.case == "pairs":
            sent = {a: 0 for a, _ in pairs}
            peer_of = {b: a for a, b in pairs}

            def delivered(to: str, frm: str) -> None:
                a = peer_of[to]
                if sent[a] < args.messages:
                    sent[a] += 1
                    send(a, to, payload(sent[a]))
                if stats.delivered >= total and not done.called:
                    done.callback(None)
            flow["delivered"] = delivered
            for a, b in pairs:
                for _ in range(min(args.window, args.messages)):
                    sent[a] += 1
                    send(a, b, payload(sent[a]))
        else:
            total = int(args.rate * args.duration)
            # Sends spread evenly (a light load, not bursts): every
            # millisecond, as many as the rate allows since the start, so a
            # late tick catches up instead of lowering the rate.
            tick = 0.001
            state = {"sent": 0, "i": 0}
            start = time.perf_counter()

            def pace() -> None:
                due = min(total, int((time.perf_counter() - start) * args.rate) + 1)
                while state["sent"] < due:
                    a, b = pairs[state["i"] % len(pairs)]
                    state["i"] += 1
                    state["sent"] += 1
                    send(a, b, payload(state["sent"]))
                if state["sent"] >= total:
                    loop.stop()
            loop = task.LoopingCall(pace)
            loop.start(tick)

            def delivered(to: str, frm: str) -> None:
                if stats.delivered >= total and not done.called:
                    done.callback(None)
            flow["delivered"] = delivered
        await done
        result.update(delivered=stats.delivered, elapsed=time.perf_counter() - t0)

    elif args.case == "fanout":
        sender = f"u{base}"
        recipients = [f"u{base + 1 + i}" for i in range(args.recipients)]
        await login(sender)
        for r in recipients:
            await login(r)
        for r in recipients:
            await chat(sender, r)
        await go_signal()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        done = defer.Deferred()
        total = args.recipients * args.messages
        sent_to = {r: 0 for r in recipients}

        def delivered(to: str, frm: str) -> None:
            if sent_to[to] < args.messages:
                sent_to[to] += 1
                send(sender, to, payload(sent_to[to]))
            if stats.delivered >= total and not done.called:
                done.callback(None)
        flow["delivered"] = delivered
        for r in recipients:
            for _ in range(min(args.window, args.messages)):
                sent_to[r] += 1
                send(sender, r, payload(sent_to[r]))
        await done
        result.update(delivered=stats.delivered, elapsed=time.perf_counter() - t0)

    elif args.case == "idle":
        async def log_in(first: int, count: int, batch: int = 100) -> None:
            for start in range(first, first + count, batch):
                await defer.gatherResults([defer.ensureDeferred(login(f"u{base + i}"))
                                           for i in range(start, min(start + batch, first + count))])
        # The warm-up users take up the memory the server freed while it
        # started, so that what it grows by after GO is what users cost.
        await log_in(args.idle_users, args.idle_warmup)
        await go_signal()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        await log_in(0, args.idle_users)
        result.update(connected=len(clients) - args.idle_warmup, elapsed=time.perf_counter() - t0)
        print("CONNECTED", flush=True)
        await _stdin_line()  # the orchestrator measures idle CPU and RSS meanwhile

    elif args.case == "handshakes":
        await go_signal()
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        deadline = t0 + args.duration
        count = [0]

        async def worker(index: int) -> None:
            name = f"u{base + index}"
            while time.perf_counter() < deadline:
                client = await login(name)
                count[0] += 1
                if args.target == "securechat":
                    client.protocol.transport.loseConnection()
                else:
                    client.transport.loseConnection()
                await task.deferLater(reactor, 0, lambda: None)
        await defer.gatherResults([defer.ensureDeferred(worker(i)) for i in range(args.concurrency)])
        result.update(handshakes=count[0], elapsed=time.perf_counter() - t0)
    else:
        raise SystemExit(f"unknown case {args.case}")

    result["generator_cpu"] = cpu_seconds() - cpu0
    if stats.latencies:
        lat = sorted(stats.latencies)
        result["p50_ms"] = lat[len(lat) // 2] / 1e6
        result["p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--target", choices=("securechat", "baseline"), required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--peer-port", type=int, default=None,
                   help="pairs and light cases: the second user of each pair logs in here "
                        "(another relay process: benchmarks/cluster_bench.py) [default: --port]")
    p.add_argument("--data-dir")
    p.add_argument("--case", required=True)
    p.add_argument("--first-user", type=int, default=0)
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--recipients", type=int, default=100)
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--idle-users", type=int, default=1000)
    p.add_argument("--idle-warmup", type=int, default=0,
                   help="users logged in before the measured ones (idle case)")
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()

    async def run(_: Any) -> None:
        print(json.dumps(await run_case(args)), flush=True)
    task.react(lambda r: defer.ensureDeferred(run(r)))


if __name__ == "__main__":
    main()
