# -*- test-case-name: tests.test_logtext -*-
"""
The relay's text log, the same lines as twistd's, written for less.

twistd logs with L{twisted.logger.textFileLogObserver}: for every event it
works out the local time zone and formats the time stamp, then formats the
message with a pure-Python C{string.Formatter}.  That came to about 30 µs
per line here, and a relay logs two lines per session (login, logout): after
a restart, when every user logs in again, a tenth of the relay's CPU per
handshake (benchmarks/RESULTS.md, issue 20).

L{classic_text} writes exactly what twistd's observer writes
(C{formatEventAsClassicLogText} with an RFC 3339 time stamp), but formats
the time stamp once per second, and a plain message (a C{str} format with
no C{()} call field, no failure, not flattened) with C{str.format_map},
which is what twistd's formatter does for such a format.  Everything else
(tracebacks, call fields, formats that do not format) goes through
Twisted's own formatter.

L{TurnFileObserver} writes those lines as twistd's observer would, but
the lines of one reactor turn together, in one write at the end of the
turn: twistd's observer writes (one system call) and flushes every line
through a lock, which with formatting came to a fifth of the relay's time
spent logging; a turn of a relay after a restart logs several logins and
logouts.

L{install} makes C{twistd securechat} use it: unless the operator chose
an observer (C{--logger}) or syslog (C{--syslog}), it names
L{twistd_observer} as twistd's log observer factory, which opens the log
where twistd would (C{--logfile}: a file, rotated at 1 MB and on SIGUSR1;
C{-}, or nothing with C{--nodaemon}: standard output; nothing otherwise:
C{twistd.log}).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
from time import time
from typing import IO, Any, Callable, cast

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
    timeFormatRFC3339,
)
from twisted.python import logfile, threadable
from twisted.python.compat import ioType
from zope.interface import implementer

#: Where L{twistd_observer} logs: (C{--logfile}, C{--nodaemon}), set by
#: L{install} while twistd parses its options.
_settings: tuple[str | None, bool] | None = None


class _SecondStamps:
    """
    The RFC 3339 time stamp of a time, formatted once per second.
    """

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second: int | None = None
        self._text = ""

    def __call__(self, when: float | None) -> str:
        if when is None:
            return "-"
        second = math.floor(when)
        if second != self._second:
            # The stamp has no fraction of a second, and a zone offset
            # changes on a whole second: the whole second formats the same.
            self._text = formatTime(second, timeFormatRFC3339)
            self._second = second
        return self._text


def classic_text(stamps: Callable[[float | None], str] | None = None
                 ) -> Callable[[LogEvent], str | None]:
    """
    A function that formats an event exactly as twistd's text log does
    (L{formatEventAsClassicLogText} with an RFC 3339 time stamp), with
    C{stamps} formatting the time (default: once per second).
    """
    stamp = stamps or _SecondStamps()

    def text(event: LogEvent) -> str | None:
        fmt = event.get("log_format")
        if (type(fmt) is str and "()" not in fmt and "log_failure" not in event
                and "log_flattened" not in event):
            try:
                message = fmt.format_map(event)
            except Exception:
                message = ""  # Twisted's formatter says why it could not
            if message:
                system = event.get("log_system")
                if system is None:
                    level = event.get("log_level")
                    system = (f"{event.get('log_namespace', '-')}#"
                              f"{'-' if level is None else level.name}")
                else:
                    try:
                        system = str(system)
                    except Exception:
                        system = "UNFORMATTABLE"
                line = f"{stamp(event.get('log_time'))} [{system}] {message}"
                return line.replace("\n", "\n\t") + "\n"
        return formatEventAsClassicLogText(event, formatTime=stamp)
    return text


def text_observer(out: IO[Any]) -> ILogObserver:
    """
    An observer writing twistd's text log lines to C{out} (flushed after
    each line, as twistd's).
    """
    return FileLogObserver(out, classic_text())


@implementer(ILogObserver)
class TurnFileObserver:
    """
    Writes what C{format_event} makes of each event to C{out}, as
    L{FileLogObserver} does, but, in the reactor's thread while it runs,
    the lines of one reactor turn together: the first line of a turn
    schedules a write for the start of the next turn (a delayed call of no
    delay), and every line until then joins it.  So the lines reach C{out}
    in order, a turn later at most, with one write and one flush per turn.

    Anything logged while the reactor is not running (start-up, and from
    the moment it stops: twistd's last lines), or from another thread, is
    written at once, after whatever is waiting; what waits when the reactor
    stops is written after its shutdown (a system event trigger), so
    nothing is left behind when the process exits.
    """

    def __init__(self, out: IO[Any], format_event: Callable[[LogEvent], str | None],
                 reactor: Any = None,
                 in_io_thread: Callable[[], bool] = threadable.isInIOThread) -> None:
        self._out = out
        self._in_io_thread = in_io_thread
        self._encoding: str | None = "utf-8" if ioType(out) is not str else None
        self._format = format_event
        self._reactor = reactor
        self._pending: list[str] = []
        #: A write is scheduled for the next turn.
        self._scheduled = False
        #: The reactor's after-shutdown trigger is added.
        self._watching = False
        # Reentrant: writing may fail, and the failure is logged.
        self._lock = threading.RLock()

    def __call__(self, event: LogEvent) -> None:
        text = self._format(event)
        if not text:
            return
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as installed
            reactor = self._reactor = installed
        later = reactor.running and self._in_io_thread()
        with self._lock:
            self._pending.append(text)
            if not later:
                self._write()
            elif not self._scheduled:
                self._scheduled = True
                if not self._watching:
                    self._watching = True
                    reactor.addSystemEventTrigger("after", "shutdown", self.flush)
                reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """
        Write (and flush) every line waiting.
        """
        with self._lock:
            self._scheduled = False
            self._write()

    def _write(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        text = pending[0] if len(pending) == 1 else "".join(pending)
        out = self._out
        out.write(text if self._encoding is None else text.encode(self._encoding))
        out.flush()


def turn_observer(out: IO[Any], reactor: Any = None) -> TurnFileObserver:
    """
    An observer writing twistd's text log lines to C{out}, one write per
    reactor turn (L{TurnFileObserver}).
    """
    return TurnFileObserver(out, classic_text(), reactor)


#: Every log level, to check an event's level against without sorting them
#: (L{Logger.emit} sorts them for every event).
_LEVELS = frozenset(LogLevel.iterconstants())


class EventLogger(Logger):
    """
    A L{Logger} that emits the same events for less: its C{emit} checks the
    level against a set of the levels, where L{Logger.emit} sorts them for
    every event (about a tenth of a login line's cost); anything that is
    not a level goes to L{Logger.emit}, which says why it is not.

    As a class attribute, the logger it makes for an instance (named
    after the class, the instance its source, as L{Logger}'s) is kept in
    the instance's C{__dict__} under the attribute's name, so later reads
    find it there instead of making another (assigning the attribute on
    an instance still replaces it, as with L{Logger}).  The instance and
    its logger then refer to each other: meant for long-lived objects
    (the relay), which the collector frees if they ever go.
    """

    _name: str | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, instance: object, owner: type | None = None) -> Logger:
        bound = super().__get__(instance, owner)
        if instance is not None and self._name is not None:
            try:
                vars(instance)[self._name] = bound
            except TypeError:
                pass  # no __dict__ (__slots__): made on every read, as Logger's
        return bound

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level not in _LEVELS:
            super().emit(level, format, **kwargs)
            return
        kwargs.update(log_logger=self, log_level=level, log_namespace=self.namespace,
                      log_source=self.source, log_format=format, log_time=time())
        if "log_trace" in kwargs:
            cast("list[Any]", kwargs["log_trace"]).append((self, self.observer))
        self.observer(kwargs)


def install(twistd_options: Any) -> None:
    """
    Make twistd log through L{twistd_observer}, unless its options (the
    parent of C{twistd securechat}'s) name an observer or syslog.  Called
    while twistd parses its options; does nothing without them (the
    options parsed on their own, as in tests).
    """
    global _settings
    if twistd_options is None:
        return
    try:
        chosen = twistd_options["logger"] or twistd_options.get("syslog")
        logfile_name = twistd_options["logfile"]
        nodaemon = bool(twistd_options["nodaemon"])
    except KeyError:
        return  # not twistd's options
    if chosen:
        return
    _settings = (logfile_name, nodaemon)
    # twistd resolves the name after the subcommand's options are parsed.
    twistd_options["logger"] = f"{__name__}.twistd_observer"


def twistd_observer() -> ILogObserver:
    """
    twistd's log observer factory (C{--logger}): the log where twistd would
    have put it, in the same lines (see the module docstring).
    """
    name, nodaemon = _settings or (None, False)
    return turn_observer(open_log(name, nodaemon))


def open_log(name: str | None, nodaemon: bool) -> IO[Any]:
    """
    Where twistd logs for C{--logfile} C{name} and C{--nodaemon}: standard
    output for C{-} (refused for a daemon, as twistd does) or for no name
    with C{--nodaemon}; else the file (C{twistd.log} by default), rotated
    at 1 MB and on SIGUSR1 (unless something else handles SIGUSR1).
    """
    if name == "-":
        if not nodaemon:
            sys.exit("Daemons cannot log to stdout, exiting!")
        return sys.stdout
    if nodaemon and not name:
        return sys.stdout
    log_file = logfile.LogFile.fromFullPath(name or "twistd.log")
    if not signal.getsignal(signal.SIGUSR1):
        def rotate(signum: int, frame: Any) -> None:
            from twisted.internet import reactor
            reactor.callFromThread(log_file.rotate)  # type: ignore[attr-defined]
        signal.signal(signal.SIGUSR1, rotate)
    return log_file
