# -*- test-case-name: tests.test_store_sqlite -*-
"""
The letters the group commit stored, logged once a minute rather than once
per commit.

At a few thousand letters a second the store commits tens of times a
second; a log line per commit was a tenth of the relay's reactor time under
the mailbox benchmark (formatting, and a write to the log file that waits
behind the database's fsyncs on the same disk).  L{CommitTally} adds the
commits up and logs one line per L{SUMMARY_SECONDS} in which any letter was
stored, and what is left when the store closes.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: How often, at most, the letters stored are logged.
SUMMARY_SECONDS = 60.0


class CommitTally:
    """
    Letters stored and commits since the last line; the line is due
    L{SUMMARY_SECONDS} after the first commit it counts.  C{report} logs
    it: C{report(letters, commits, seconds)}.
    """

    def __init__(self, clock: IReactorTime, report: Callable[[int, int, float], None],
                 every: float = SUMMARY_SECONDS) -> None:
        self._clock = clock
        self._report = report
        self._every = every
        self._letters = 0
        self._commits = 0
        self._since = 0.0
        self._call: IDelayedCall | None = None

    def add(self, letters: int) -> None:
        """A commit stored C{letters} letters (at least one)."""
        if self._call is None:
            self._since = self._clock.seconds()
            self._call = self._clock.callLater(self._every, self.flush)
        self._letters += letters
        self._commits += 1

    def flush(self) -> None:
        """Log what was counted since the last line, if anything."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if not self._commits:
            return
        letters, commits = self._letters, self._commits
        self._letters = self._commits = 0
        self._report(letters, commits, self._clock.seconds() - self._since)
