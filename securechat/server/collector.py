# -*- test-case-name: tests.test_collector -*-
"""
The cyclic garbage collector's settings for the relay process.

Profiled under the mailbox benchmark (benchmarks/RESULTS.md, issue 14), a
sixth of the relay's CPU went to the collector: every letter in flight
holds a few dozen container objects (Deferreds, callbacks, messages) for the
20 ms or so of its commit, so Python's default first-generation threshold
(700 allocations) ran a young collection every few letters, each of which
walked every letter still in flight, promoted them, and so triggered
frequent full collections, which walk the whole heap: the modules, the
PKI, the user directory, all of start-up's objects.

L{CollectorTuning}, a service started last by C{twistd securechat}:

  - I{freezes} what start-up made (C{gc.freeze}): those objects live as long
    as the process and are never walked again;
  - raises the first generation's threshold to L{YOUNG_THRESHOLD}
    allocations, so a young collection finds the objects of letters already
    answered freed (by reference counting, which the collector does not
    replace) instead of walking those still in flight.

Only reference cycles wait longer to be freed: at most L{YOUNG_THRESHOLD}
more container objects than before.  Stopping the service puts the previous
settings back and unfreezes.  Library users and the test suite never run it.
"""

from __future__ import annotations

import gc

from twisted.application.service import Service

#: Container allocations (net) between young collections: Python's
#: default is 700.
YOUNG_THRESHOLD = 20000


class CollectorTuning(Service):
    """
    On start, freeze start-up's objects and raise the young generation's
    threshold; on stop, undo both.
    """

    def __init__(self, young: int = YOUNG_THRESHOLD) -> None:
        self.young = young
        self._previous: tuple[int, int, int] | None = None

    def startService(self) -> None:
        super().startService()
        self._previous = gc.get_threshold()
        gc.collect()  # start-up's garbage is freed, not frozen
        gc.freeze()
        _, older, oldest = self._previous
        gc.set_threshold(max(self.young, self._previous[0]), older, oldest)

    def stopService(self) -> None:
        if self._previous is not None:
            gc.set_threshold(*self._previous)
            gc.unfreeze()
            self._previous = None
        super().stopService()


__all__ = ["CollectorTuning", "YOUNG_THRESHOLD"]
