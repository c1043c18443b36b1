"""
The cheapest possible Twisted relay, for comparison: length-prefixed frames,
login by name, route by name, write straight to the recipient's transport.
No cryptography, no queue, no limits.

Frames (uint32 length prefix, as Int32StringReceiver):
  - first frame from a client: its name (UTF-8), answered with ``ok`` once
    the name routes (so no message to the user can arrive before it does);
  - then: uint8 n | recipient name (n bytes) | payload, which the recipient
    receives as: uint8 n | sender name | payload.

Run: python benchmarks/baseline.py PORT  (prints "listening on PORT").

The floor (issue 20): ``python benchmarks/baseline.py PORT --crypto DATA_DIR``
is the same relay making, at each login before its "ok", all the
cryptography securechat's relay makes in one handshake (hsload.py's
C{crypto_once} and C{records_once}, with DATA_DIR's relay key): the cheapest
relay on Twisted that does this handshake's cryptography.  It does less
than any real one (one round trip instead of two, no protocol, no
session), so its CPU per login is a lower bound: what the cryptography
costs *in* a Twisted relay, between Twisted's own work, rather than in a
tight loop.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import Int32StringReceiver


class BaselineRelay(Int32StringReceiver):
    MAX_LENGTH = 65536

    def __init__(self, users: dict[bytes, "BaselineRelay"],
                 crypto: Callable[[], None] | None = None) -> None:
        self.users = users
        self.crypto = crypto
        self.name: bytes | None = None

    def stringReceived(self, data: bytes) -> None:
        if self.name is None:
            if self.crypto is not None:
                self.crypto()
            self.name = data
            self.users[data] = self
            self.sendString(b"ok")
            return
        n = data[0]
        peer = self.users.get(data[1:1 + n])
        if peer is not None:
            peer.sendString(bytes([len(self.name)]) + self.name + data[1 + n:])

    def connectionLost(self, reason: object = None) -> None:
        if self.name is not None and self.users.get(self.name) is self:
            del self.users[self.name]


class BaselineFactory(Factory):
    noisy = False

    def __init__(self, crypto: Callable[[], None] | None = None) -> None:
        self.users: dict[bytes, BaselineRelay] = {}
        self.crypto = crypto

    def buildProtocol(self, addr: object) -> BaselineRelay:
        return BaselineRelay(self.users, self.crypto)


if __name__ == "__main__":
    crypto = None
    if sys.argv[2:3] == ["--crypto"]:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from hsload import handshake_crypto
        crypto = handshake_crypto(sys.argv[3])
    port = reactor.listenTCP(int(sys.argv[1]), BaselineFactory(crypto),  # type: ignore[arg-type]
                             interface="127.0.0.1")
    print(f"listening on {port.getHost().port}", flush=True)  # type: ignore[attr-defined]
    reactor.run()
