# -*- test-case-name: tests.test_store_sqlite.PurgeServiceTests -*-
"""
The relay's timers that purge expired letters (and group messages) from
its stores.

Each step is wrapped so that a failure is logged and the timer keeps going
(a failed Deferred would otherwise stop the C{LoopingCall} under a
C{TimerService} for good: the mailbox server learned this the hard way).
"""

from __future__ import annotations

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from typing import Protocol

from securechat.server.store.interface import IMailboxStore


class _Expiring(Protocol):
    def expire(self, now: int) -> Deferred[int]: ...

#: Seconds between purges.
PURGE_INTERVAL = 15 * 60

log = Logger(namespace="securechat.server.store.expiry")


def purge_once(store: IMailboxStore | _Expiring, clock: IReactorTime,
               what: str = "letters") -> Deferred[None]:
    """
    Purge what has expired by C{clock}'s time; log the count or the failure,
    never fail.
    """
    def purged(count: int) -> None:
        if count:
            log.info("purged {count} expired {what}", count=count, what=what)

    def failed(failure: Failure) -> None:
        log.failure("purging expired {what} failed; trying again at the next interval", failure,
                    what=what)

    d: Deferred[None] = maybeDeferred(store.expire, int(clock.seconds())).addCallback(purged)
    return d.addErrback(failed)


def purge_service(store: IMailboxStore | _Expiring, clock: IReactorTime,
                  interval: float = PURGE_INTERVAL, what: str = "letters",
                  name: str = "mailbox-purge") -> TimerService:
    """
    A C{TimerService} that runs L{purge_once} every C{interval} seconds
    (first at start-up).
    """
    service = TimerService(interval, purge_once, store, clock, what)
    service.clock = clock
    service.setName(name)
    return service
