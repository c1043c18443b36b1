"""
The load generator of the group benchmark (benchmarks/group_bench.py), run
by it as a subprocess.  One sender (u0) and --members receivers
(u1..uN), all in this process.

Modes:

  securechat  real clients of C{twistd securechat}: the shared protocol
              class with a full client-server handshake and the users'
              registered keys (derived from their names as benchmarks/run.py
              registers them).  u0 logs in alone, creates a group and adds
              every member with signed changes (securechat.crypto.groupstate),
              so the adds are not fanned out to members online; then the
              members log in (each gets GROUP_LIST).  GROUP_POSTs carry an
              opaque body (the relay never parses it) with the send time.
  baseline    plain C{Int32StringReceiver} clients of group_bench.py's bare
              fan-out server: a frame from u0 is written by the server to
              every other connection.

Then, as the driver says GO: (1) throughput: u0 posts --messages messages
(at most --window waiting for the answer: GROUP_POSTED, or the
baseline's one byte) until the measuring members have every one; (2) paced: one message
every 1/--rate s for --duration s; each measuring member's receive time
minus the send time is a latency.  Prints READY, PHASE, then one JSON line.

So that the generator can keep up with 1,000 members, only --measured
members (spread evenly over the member list, the last one included: the
relay fans out in the order members were added) decode what they receive,
in the main process; the others are logged in by a second process
(C{--readers}) and only count the bytes that arrive (they still read, so the
relay's queues drain as with real clients), so the timed members are not
queued behind 1,000 reads.  The main process prints GROUPED once the group
exists and waits for a line before logging in its members (the driver
starts the readers in between).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
import time
from typing import Any, Callable

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols.basic import Int32StringReceiver

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from securechat.crypto.config import CLIENT_SERVER, Config, Role  # noqa: E402
from securechat.crypto.groupstate import (  # noqa: E402
    NO_PREVIOUS, Action, GroupChange, GroupState, apply_change, sign_change)
from securechat.protocol import SecureChatProtocol  # noqa: E402
from securechat.wire.groups import (  # noqa: E402
    GROUP_FROM_SERVER, ChangeGroup, GroupChanged, GroupMessage, GroupPost, GroupPosted,
    GroupRefused)
from securechat.wire.messages import UserIdentity  # noqa: E402
from securechat.wire.relay import Welcome  # noqa: E402

GROUP_ID = b"\x42" * 16
_STAMP = struct.Struct(">d")
BODY = 256


def user_key(name: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    return ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"securechat-bench " + name.encode()).digest())


def body(seq: int) -> bytes:
    """An opaque body: the send time, the message number, padding."""
    return _STAMP.pack(time.perf_counter()) + seq.to_bytes(4, "big") + b"\x00" * (BODY - 12)


def measuring(members: int, measured: int) -> set[int]:
    """The member numbers (1..members) that decode, the last one included."""
    step = max(1, members // max(1, measured))
    return {i for i in range(1, members + 1) if (members - i) % step == 0}


def discard(proto: Any, tally: "Tally") -> None:
    """From now on C{proto} only counts the bytes it receives."""
    def counted(data: bytes) -> None:
        tally.discarded += len(data)
    proto.dataReceived = counted


class Tally:
    """What the members received: counts, and latencies while measuring them."""

    def __init__(self) -> None:
        self.received = 0
        self.discarded = 0
        self.latencies: list[float] | None = None
        self.waiter: tuple[int, defer.Deferred[None]] | None = None

    def got(self, payload: bytes) -> None:
        self.received += 1
        if self.latencies is not None:
            self.latencies.append(time.perf_counter() - _STAMP.unpack_from(payload)[0])
        if self.waiter is not None and self.received >= self.waiter[0]:
            d = self.waiter[1]
            self.waiter = None
            d.callback(None)

    def until(self, count: int) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        if self.received >= count:
            d.callback(None)
        else:
            self.waiter = (count, d)
        return d


# -- securechat --------------------------------------------------------------


class Client:
    """The delegate of one L{SecureChatProtocol}."""

    protocol: SecureChatProtocol

    def __init__(self, name: str, server_key: Any, on_message: Callable[[Any], None]) -> None:
        self.name = name
        self.server_key = server_key
        self.on_message = on_message
        self.welcomed: defer.Deferred[Client] = defer.Deferred()

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


async def login(port: int, name: str, server_key: Any, on_message: Callable[[Any], None]) -> Client:
    client = Client(name, server_key, on_message)
    proto = SecureChatProtocol(Config(CLIENT_SERVER, Role.INITIATOR, user_key(name),
                                      UserIdentity(name), registry=GROUP_FROM_SERVER),
                               client, reactor, handshake_timeout=60)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=30), proto)
    return await client.welcomed


def server_key(data_dir: str) -> Any:
    from cryptography import x509
    with open(os.path.join(data_dir, "server", "server.pem"), "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).public_key()


class SecurechatSide:
    def __init__(self, args: argparse.Namespace, tally: Tally) -> None:
        self.args = args
        self.tally = tally
        self.answers: list[defer.Deferred[Any]] = []
        self.sender: Client | None = None
        self.members: list[Client] = []

    def sender_message(self, message: Any) -> None:
        if isinstance(message, (GroupChanged, GroupPosted, GroupRefused)):
            if isinstance(message, GroupRefused):
                raise SystemExit(f"refused: {message!r}")
            self.answers.pop(0).callback(message)

    def member_message(self, message: Any) -> None:
        if isinstance(message, GroupMessage):
            self.tally.got(message.body)

    def ask(self, message: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.answers.append(d)
        assert self.sender is not None
        self.sender.protocol.post(message)
        return d

    async def make_group(self) -> None:
        key = server_key(self.args.data_dir)
        self.sender = await login(self.args.port, "u0", key, self.sender_message)
        state: GroupState | None = None
        change = sign_change(GroupChange(GROUP_ID, 1, NO_PREVIOUS, "u0", Action.CREATE,
                                         name="bench"), user_key("u0"))
        for i in range(self.args.members + 1):
            if i:
                assert state is not None
                change = sign_change(GroupChange(GROUP_ID, state.epoch + 1, state.head, "u0",
                                                 Action.ADD, f"u{i}"), user_key("u0"))
            await self.ask(ChangeGroup(change.encode()))
            state = apply_change(state, change)

    async def join(self, names: list[str], decode: bool) -> None:
        key = server_key(self.args.data_dir)
        for start in range(0, len(names), 50):
            joined = await defer.gatherResults([
                defer.Deferred.fromCoroutine(login(self.args.port, n, key, self.member_message))
                for n in names[start:start + 50]])
            self.members += joined
            if not decode:
                for member in joined:
                    discard(member.protocol, self.tally)

    async def throughput(self, count: int) -> None:
        await windowed(self, count)

    def post(self, seq: int) -> None:
        self.ask(GroupPost(GROUP_ID, body(seq)))

    def message(self, seq: int) -> Any:
        return GroupPost(GROUP_ID, body(seq))


async def windowed(side: Any, count: int) -> None:
    """Post C{count} messages, at most --window waiting for their answers."""
    pending: list[defer.Deferred[Any]] = []
    for seq in range(count):
        if len(pending) >= side.args.window:
            await pending.pop(0)
        pending.append(side.ask(side.message(seq)))
    await defer.gatherResults(pending)


# -- baseline ----------------------------------------------------------------


class PlainClient(Int32StringReceiver):
    MAX_LENGTH = 1 << 20

    def __init__(self, name: str, on_payload: Callable[[bytes], None] | None) -> None:
        self.name = name
        self.on_payload = on_payload
        self.ready: defer.Deferred[PlainClient] = defer.Deferred()

    def connectionMade(self) -> None:
        self.sendString(self.name.encode())

    def stringReceived(self, data: bytes) -> None:
        if not self.ready.called:
            self.ready.callback(self)
        elif self.on_payload is not None:
            self.on_payload(data)


class BaselineSide:
    def __init__(self, args: argparse.Namespace, tally: Tally) -> None:
        self.args = args
        self.tally = tally
        self.sender: PlainClient | None = None
        self.answers: list[defer.Deferred[Any]] = []

    def answered(self, data: bytes) -> None:
        self.answers.pop(0).callback(data)

    async def connect(self, name: str, on_payload: Callable[[bytes], None] | None) -> PlainClient:
        client = PlainClient(name, on_payload)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.args.port,
                                                 timeout=30), client)
        return await client.ready

    async def make_group(self) -> None:
        self.sender = await self.connect("u0", self.answered)

    async def join(self, names: list[str], decode: bool) -> None:
        for start in range(0, len(names), 50):
            joined = await defer.gatherResults([
                defer.Deferred.fromCoroutine(self.connect(n, self.tally.got))
                for n in names[start:start + 50]])
            if not decode:
                for member in joined:
                    discard(member, self.tally)

    async def throughput(self, count: int) -> None:
        await windowed(self, count)

    def ask(self, payload: bytes) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.answers.append(d)
        assert self.sender is not None
        self.sender.sendString(payload)
        return d

    def post(self, seq: int) -> None:
        self.ask(body(seq))

    def message(self, seq: int) -> bytes:
        return body(seq)


# -- the run -----------------------------------------------------------------


def _stdin_line() -> defer.Deferred[str]:
    d: defer.Deferred[str] = defer.Deferred()
    reactor.callInThread(  # type: ignore[attr-defined]
        lambda: reactor.callFromThread(d.callback, sys.stdin.readline()))  # type: ignore[attr-defined]
    return d


def say(line: str) -> None:
    print(line, flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    side: Any = SecurechatSide(args, tally) if args.mode == "securechat" else BaselineSide(args, tally)
    decoding_set = measuring(args.members, args.measured)
    if args.readers:
        # The members that only read, in a process of their own.
        await side.join([f"u{i}" for i in range(1, args.members + 1) if i not in decoding_set],
                        decode=False)
        say("READY")
        await _stdin_line()
        return {"discarded_bytes": tally.discarded}
    await side.make_group()
    say("GROUPED")
    await _stdin_line()
    await side.join([f"u{i}" for i in sorted(decoding_set)], decode=True)
    say("READY")
    await _stdin_line()
    t0 = time.perf_counter()
    decoding = len(measuring(args.members, args.measured))
    expected = args.messages * decoding
    await side.throughput(args.messages)
    await tally.until(expected)
    result: dict[str, Any] = {"throughput_messages": args.messages,
                              "throughput_copies": args.messages * args.members,
                              "throughput_elapsed": time.perf_counter() - t0}
    say("PHASE")
    await _stdin_line()
    tally.latencies = []
    paced = int(args.rate * args.duration)
    start = time.perf_counter()
    state = {"sent": 0}
    finished: defer.Deferred[None] = defer.Deferred()

    def pace() -> None:
        due = min(paced, int((time.perf_counter() - start) * args.rate) + 1)
        while state["sent"] < due:
            side.post(args.messages + state["sent"])
            state["sent"] += 1
        if state["sent"] >= paced:
            loop.stop()
            finished.callback(None)
    loop = task.LoopingCall(pace)
    loop.start(0.001)
    await finished
    await tally.until(expected + paced * decoding)
    lat = sorted(tally.latencies)
    result.update(paced_messages=paced, paced_copies=paced * args.members,
                  latency_samples=len(lat), discarded_bytes=tally.discarded,
                  paced_elapsed=time.perf_counter() - start,
                  p50_ms=lat[len(lat) // 2] * 1e3,
                  p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("securechat", "baseline"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--data-dir", default="")
    p.add_argument("--members", type=int, default=100)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--measured", type=int, default=10,
                   help="members that decode and time what they receive")
    p.add_argument("--readers", action="store_true",
                   help="only log in the members that do not decode, and read until told")
    args = p.parse_args()
    out: dict[str, Any] = {}

    async def go() -> None:
        out.update(await run(args))

    def done(result: Any) -> Any:
        if reactor.running:
            reactor.stop()
        return result
    d = defer.Deferred.fromCoroutine(go())
    d.addErrback(lambda f: (sys.stderr.write(f.getTraceback()), out.update(error=str(f.value))))
    d.addBoth(done)
    reactor.run()
    say(json.dumps(out))


if __name__ == "__main__":
    main()
