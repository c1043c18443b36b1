# -*- test-case-name: tests.test_protocol -*-
"""
The keepalive of many connections on one timer (L{KeepaliveSweep}): each
member's idle check runs every period, instead of a delayed call per
connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall, IReactorTime

if TYPE_CHECKING:
    from securechat.protocol import SecureChatProtocol

#: How often per idle timeout the keepalive checks a connection: a quiet
#: one is PINGed, or given up on, at most a tenth of the timeout late.
KEEPALIVE_CHECKS = 10


class KeepaliveSweep:
    """
    The keepalive of many connections on one timer: every C{period} seconds
    it checks each member, instead of a delayed call per connection (about
    400 bytes each in Twisted, for every idle user).  A quiet connection is
    therefore PINGed, and given up on, up to one period later than its
    idle timeout says.  The relay shares one among all its connections.
    """

    __slots__ = ("_clock", "period", "_members", "_call")

    def __init__(self, clock: IReactorTime, period: float) -> None:
        if period <= 0:
            raise ValueError("the keepalive period must be positive")
        self._clock = clock
        self.period = period
        self._members: dict[SecureChatProtocol, None] = {}
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._members)

    def add(self, protocol: SecureChatProtocol) -> None:
        self._members[protocol] = None
        if self._call is None:
            self._call = self._clock.callLater(self.period, self._sweep)

    def discard(self, protocol: SecureChatProtocol) -> None:
        self._members.pop(protocol, None)
        if not self._members and self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _sweep(self) -> None:
        self._call = None
        now = self._clock.seconds()
        for protocol in list(self._members):
            protocol._idle_check(now)
        if self._members and self._call is None:
            self._call = self._clock.callLater(self.period, self._sweep)


__all__ = ["KEEPALIVE_CHECKS", "KeepaliveSweep"]
