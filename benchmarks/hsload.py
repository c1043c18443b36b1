"""
The handshake case of benchmarks/run.py (issue 20): a light load generator,
and the cost of the handshake's cryptography alone.

    python benchmarks/hsload.py --target securechat --port P --data-dir D \\
        --concurrency 16 --duration 4        # the generator (run.py starts it)
    python benchmarks/hsload.py --case crypto --data-dir D
                                             # the relay's crypto alone

The generator
-------------
The general generator (benchmarks/loadgen.py) logs in with the full client
(L{securechat.client.core.ChatClient} on Twisted), which checks the relay's
certificate chain and CRL on every handshake: it cost more CPU per
handshake than the relay and, on the one core the machine has for it, it
limited the rate (95 % of its core in the first round).  This one drives
the sans-IO core (L{securechat.crypto.handshake.Connection}) directly under
asyncio: HELLO, the relay's HELLO_REPLY and AUTH, our AUTH (signed with the
user's Ed25519 key, with its Finished MAC), then WELCOME, then the TCP
connection is closed (as loadgen.py closes it).  It trusts the relay it
was pointed at: it neither checks the chain and CRL nor verifies the
relay's handshake signature (an injected verifier that accepts), which the
relay cannot tell from a real client and which is not the relay's cost.
The baseline target gets the same loop with the baseline's login (its name,
answered with "ok").

Each of C{--concurrency} workers connects, logs in, closes and starts again
until C{--duration} has passed.  As loadgen.py, it prints READY, waits for
GO on standard input, and prints one JSON line.

The crypto alone
----------------
C{--case crypto} runs, in a loop, exactly the cryptographic calls the relay
makes in one client-server handshake, with C{cryptography} as the relay
calls them (docs/protocol.rst, 5): X25519 key generation (with its raw
public bytes) and exchange, one Ed25519 signature with the relay's key (the
data directory's), one Ed25519 verification of a user's signature, one
HKDF-Extract and the 14 HKDF-Expand-Label derivations (handshake and
application traffic secrets, key and IV of four directions, two Finished
keys), and the two Finished HMACs.  It prints the process CPU time per
handshake (C{crypto_us}) and, apart, what the three records (the two AUTH
records and WELCOME, each with a fresh AES-256-GCM context, as a cold
direction makes them) and the transcript hashing add (C{records_us}); the
issue's ratio is over C{crypto_us}.  run.py runs it pinned to the relay's
core, between the handshake runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import hmac
import json
import os
import resource
import struct
import sys
import time
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def user_key(name: str) -> ed25519.Ed25519PrivateKey:
    """The user's key, derived from its name as benchmarks/run.py registers it."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"securechat-bench " + name.encode()).digest())


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the generator ---------------------------------------------------------------


def _trust_relay(key: Any, scheme: int, signature: bytes, message: bytes) -> None:
    """A verifier that accepts: the generator trusts the relay it was given."""


class SecureChatLogin(asyncio.Protocol):
    """
    One login over the sans-IO core: done when WELCOME arrives.
    """

    def __init__(self, config: Any, server_key: Any, done: asyncio.Future[None]) -> None:
        from securechat.crypto.handshake import Connection
        self.connection = Connection(config)
        self.server_key = server_key
        self.done = done
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connection.initiate()
        transport.write(self.connection.data_to_send())

    def data_received(self, data: bytes) -> None:
        from securechat.crypto.events import (
            ConnectionClosed, ConnectionFailed, MessageReceived, PeerIdentityReceived)
        events = self.connection.receive_data(data)
        while events:
            event = events.pop(0)
            kind = type(event)
            if kind is PeerIdentityReceived:
                events.extend(self.connection.accept_peer(self.server_key))
            elif kind is MessageReceived:  # WELCOME: logged in
                if not self.done.done():
                    self.done.set_result(None)
            elif kind is ConnectionFailed or kind is ConnectionClosed:
                if not self.done.done():
                    self.done.set_exception(RuntimeError(f"login failed: {event}"))
        out = self.connection.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(f"connection lost before WELCOME: {exc}"))


class BaselineLogin(asyncio.Protocol):
    """
    One login to the baseline relay: its name framed, done at its "ok".
    """

    def __init__(self, name: bytes, done: asyncio.Future[None]) -> None:
        self.name = name
        self.done = done
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(struct.pack(">I", len(self.name)) + self.name)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= 6 and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(f"connection lost before ok: {exc}"))


async def stdin_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def handshakes(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    factories: list[Callable[[asyncio.Future[None]], asyncio.Protocol]] = []
    if args.target == "securechat":
        from securechat.crypto.config import CLIENT_SERVER, Config, Role
        from securechat.wire.mailbox import MAILBOX_FROM_SERVER
        from securechat.wire.messages import UserIdentity
        with open(os.path.join(args.data_dir, "server", "server.pem"), "rb") as f:
            server_key = x509.load_pem_x509_certificate(f.read()).public_key()
        for i in range(args.concurrency):
            name = f"u{args.first_user + i}"
            config = Config(CLIENT_SERVER, Role.INITIATOR, user_key(name), UserIdentity(name),
                            registry=MAILBOX_FROM_SERVER, verifier=_trust_relay)
            factories.append(functools.partial(SecureChatLogin, config, server_key))
    else:
        for i in range(args.concurrency):
            raw = f"u{args.first_user + i}".encode()
            factories.append(functools.partial(BaselineLogin, raw))

    print("READY", flush=True)
    if (await stdin_line()).strip() != "GO":
        raise SystemExit("expected GO")
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    deadline = t0 + args.duration
    count = 0

    async def worker(index: int) -> None:
        nonlocal count
        make = factories[index]
        while time.perf_counter() < deadline:
            done: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda: make(done), "127.0.0.1", args.port)
            try:
                await done
            finally:
                transport.close()
            count += 1
    await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
    elapsed = time.perf_counter() - t0
    return {"case": "handshakes", "target": args.target, "handshakes": count,
            "elapsed": elapsed, "generator_cpu": cpu_seconds() - cpu0}


# -- the crypto alone ------------------------------------------------------------

_SHA256 = hashes.SHA256()
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
#: The HkdfLabel info strings of the relay's 14 derivations (their exact
#: bytes do not change the cost; their lengths are the relay's).
_TH = bytes(32)
_INFO32 = [b"\x00\x20\x10sc1 i hs traffic\x20" + _TH, b"\x00\x20\x10sc1 r hs traffic\x20" + _TH,
           b"\x00\x20\x0csc1 finished\x00", b"\x00\x20\x0csc1 finished\x00",
           b"\x00\x20\x10sc1 i ap traffic\x20" + _TH, b"\x00\x20\x10sc1 r ap traffic\x20" + _TH]
_KEY_IV = [(32, b"\x00\x20\x07sc1 key\x00"), (12, b"\x00\x0c\x06sc1 iv\x00")]


def crypto_once(relay_key: Any, user_public: Any, user_signature: bytes, content: bytes,
                peer_share: bytes, salt: bytes) -> None:
    """
    The relay's cryptographic calls of one handshake (see the module
    docstring), nothing else.
    """
    ephemeral = X25519PrivateKey.generate()
    ephemeral.public_key().public_bytes(*_RAW)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(peer_share))
    secret = HKDF.extract(_SHA256, salt, shared)
    for info in _INFO32:
        HKDFExpand(_SHA256, 32, info).derive(secret)
    for _ in range(4):  # key and IV of each direction: handshake and application
        for length, info in _KEY_IV:
            HKDFExpand(_SHA256, length, info).derive(secret)
    relay_key.sign(content)
    user_public.verify(user_signature, content)
    hmac.digest(secret, _TH, "sha256")  # the two Finished MACs, as the relay makes them
    hmac.digest(secret, _TH, "sha256")


def records_once(key: bytes, auth: bytes, welcome: bytes, transcript: bytes) -> None:
    """
    What the three handshake-time records and the transcript add: our AUTH
    sealed, the client's opened, WELCOME sealed (a fresh AES-256-GCM
    context each), and the SHA-256 of the transcript with its seven copies.
    """
    nonce = bytes(12)
    sealed = AESGCM(key).encrypt(nonce, auth, b"h" * 13)
    AESGCM(key).decrypt(nonce, sealed, b"h" * 13)
    AESGCM(key).encrypt(nonce, welcome, b"h" * 13)
    h = hashlib.sha256(transcript)
    for _ in range(7):
        h.copy().digest()


def crypto_arguments(data_dir: str) -> tuple[Any, ...]:
    """
    The arguments of L{crypto_once}: the relay's key from C{data_dir}, a
    user's signature over a handshake-sized content and its public key, a
    peer's X25519 share and the salt.
    """
    from securechat.crypto.keys import load_private_key
    with open(os.path.join(data_dir, "server", "server.key"), "rb") as f:
        relay_key = load_private_key(f.read())
    user = user_key("u0")
    content = b"securechat/1 client-server initiator signature\x00" + bytes(32)
    signature = user.sign(content)
    user_public = ed25519.Ed25519PublicKey.from_public_bytes(
        user.public_key().public_bytes(*_RAW))
    peer_share = X25519PrivateKey.generate().public_key().public_bytes(*_RAW)
    salt = hashlib.sha256(b"securechat/1 client-server").digest()
    return relay_key, user_public, signature, content, peer_share, salt


#: The arguments of L{records_once}: sizes of the relay's AUTH, WELCOME and
#: handshake transcript.
RECORDS_ARGUMENTS = (bytes(32), bytes(260), bytes(24), bytes(1200))


def handshake_crypto(data_dir: str) -> Callable[[], None]:
    """
    All the cryptography of one handshake on the relay's side (L{crypto_once}
    and L{records_once}), as one call: what the floor relay
    (baseline.py --crypto) does per login.
    """
    arguments = crypto_arguments(data_dir)

    def once() -> None:
        crypto_once(*arguments)
        records_once(*RECORDS_ARGUMENTS)
    return once


def crypto_cost(args: argparse.Namespace) -> dict[str, Any]:
    arguments = crypto_arguments(args.data_dir)
    for _ in range(args.iterations // 10):  # warm up
        crypto_once(*arguments)
    t0 = time.process_time()
    for _ in range(args.iterations):
        crypto_once(*arguments)
    crypto = (time.process_time() - t0) / args.iterations
    t0 = time.process_time()
    for _ in range(args.iterations):
        records_once(*RECORDS_ARGUMENTS)
    records = (time.process_time() - t0) / args.iterations
    return {"case": "crypto", "crypto_us": crypto * 1e6, "records_us": records * 1e6,
            "iterations": args.iterations}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--case", choices=("handshakes", "crypto"), default="handshakes")
    p.add_argument("--target", choices=("securechat", "baseline"), default="securechat")
    p.add_argument("--port", type=int)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--first-user", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--iterations", type=int, default=2000)
    args = p.parse_args()
    if args.case == "crypto":
        print(json.dumps(crypto_cost(args)), flush=True)
        return
    print(json.dumps(asyncio.run(handshakes(args))), flush=True)


if __name__ == "__main__":
    main()
