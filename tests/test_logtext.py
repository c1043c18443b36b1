"""
Tests for L{securechat.server.logtext}: the relay's text log writes the same
lines as twistd's observer (issue 20: the same lines for less CPU), where
twistd would write them.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from typing import Any

from twisted.logger import (
    FileLogObserver,
    LogLevel,
    LogPublisher,
    Logger,
    formatTime,
    textFileLogObserver,
    timeFormatRFC3339,
)
from twisted.internet.task import Clock
from twisted.python import logfile
from twisted.python.failure import Failure
from twisted.scripts.twistd import ServerOptions
from twisted.trial import unittest

from securechat.server import logtext
from securechat.tap import Options


def _twistd_and_ours(events: list[dict[str, Any]]) -> tuple[str, str]:
    """
    What twistd's own text observer and L{logtext.text_observer} write for
    C{events}.
    """
    theirs, ours = io.StringIO(), io.StringIO()
    observers = (textFileLogObserver(theirs), logtext.text_observer(ours))
    for event in events:
        for observer in observers:
            observer(dict(event))
    return theirs.getvalue(), ours.getvalue()


class SameLinesTests(unittest.TestCase):
    """
    The relay's log lines are byte for byte what twistd's observer writes
    (operators read and grep them).
    """

    def test_reportedLines(self) -> None:
        """
        The relay's own lines (login, logout with a reason, refusals) through
        a Logger: the same text as twistd's.
        """
        captured: list[dict[str, Any]] = []
        log = Logger(namespace="securechat.server.relay.Relay",
                     observer=LogPublisher(captured.append))
        log.info("user {user} logged in from {host}", user="alice", host="127.0.0.1")
        log.info("user {user} disconnected: {why}", user="alice", why="connection lost")
        log.warn("refused a connection from {host}: {reason}", host="10.0.0.1",
                 reason="too many unauthenticated connections")
        log.info("connection from {host} ended before login: {reason}", host="10.0.0.2",
                 reason="no registered user 'mallory'")
        theirs, ours = _twistd_and_ours(captured)
        self.assertEqual(ours, theirs)
        self.assertIn("[securechat.server.relay.Relay#info] user alice logged in from 127.0.0.1\n",
                      ours)

    def test_unusualEvents(self) -> None:
        """
        Events off the fast path, and odd ones on it, are written as twistd
        writes them: a traceback, a call field, a format that fails, a
        multi-line message, a system name, no level or namespace or time,
        no format at all, attribute, index and conversion fields, a bytes
        format, an empty message.
        """
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        t = 1764662400.75
        events: list[dict[str, Any]] = [
            dict(log_format="boom {x}", x=1, log_failure=failure, log_time=t,
                 log_level=LogLevel.critical, log_namespace="n"),
            dict(log_format="called {f()}", f=lambda: "yes", log_time=t,
                 log_level=LogLevel.info, log_namespace="n"),
            dict(log_format="missing {nothere}", log_time=t, log_level=LogLevel.info,
                 log_namespace="n"),
            dict(log_format="positional {0}", log_time=t, log_level=LogLevel.info,
                 log_namespace="n"),
            dict(log_format="two\nlines {x}", x="a\nb", log_time=t, log_level=LogLevel.warn,
                 log_namespace="n"),
            dict(log_format="with system", log_system="TCP Port 7070", log_time=t),
            dict(log_format="bare"),
            dict(log_time=t, log_level=LogLevel.info),
            dict(log_format="{a.real} {b[1]} {c!r} {d:>5} {e!a}", a=3, b=[0, "one"], c="q",
                 d=7, e="é", log_time=t, log_level=LogLevel.debug, log_namespace="n"),
            dict(log_format=b"bytes {x}", x=2, log_time=t, log_level=LogLevel.info,
                 log_namespace="n"),
            dict(log_format="", log_time=t, log_level=LogLevel.info, log_namespace="n"),
            dict(log_format="none namespace", log_namespace=None, log_time=t),
        ]
        theirs, ours = _twistd_and_ours(events)
        self.assertEqual(ours, theirs)
        self.assertIn("ZeroDivisionError", ours)
        self.assertIn("called yes", ours)
        self.assertIn("two\n\tlines a\n\tb", ours)

    def test_secondsAndZones(self) -> None:
        """
        Times across second boundaries (and within one) get the stamp
        twistd's would, in the local zone, and each second is formatted
        once, not each line.
        """
        formatted: list[float] = []

        def counting(when: float, timeFormat: str | None = None) -> str:
            formatted.append(when)
            return formatTime(when, timeFormat)

        stamps = logtext._SecondStamps()
        times = [1764662400.0, 1764662400.2, 1764662400.999, 1764662401.0, 1764662461.5,
                 1764662461.6, 1700000000.5]
        expected = [formatTime(when, timeFormatRFC3339) for when in times]
        self.patch(logtext, "formatTime", counting)
        self.assertEqual([stamps(when) for when in times], expected)
        self.assertEqual(formatted, [1764662400, 1764662401, 1764662461, 1700000000])
        self.assertEqual(stamps(None), "-")

    def test_plainLinesSkipTwistedFormatter(self) -> None:
        """
        The relay's plain lines are formatted without Twisted's
        string.Formatter path (what made them cost 30 us each); only
        unusual events take it.
        """
        def refuse(*args: Any, **kw: Any) -> str:
            raise AssertionError("Twisted's formatter used for a plain line")
        self.patch(logtext, "formatEventAsClassicLogText", refuse)
        text = logtext.classic_text()
        line = text(dict(log_format="user {user} logged in from {host}", user="dave",
                         host="10.1.2.3", log_time=1764662400.5, log_level=LogLevel.info,
                         log_namespace="securechat.server.relay.Relay"))
        self.assertEqual(line, formatTime(1764662400.5, timeFormatRFC3339)
                         + " [securechat.server.relay.Relay#info] user dave logged in from "
                         "10.1.2.3\n")

    def test_legacyEvents(self) -> None:
        """
        Events from the legacy C{twisted.python.log} API (Twisted itself
        still logs through it: ports opening, "Main loop terminated") are
        written as twistd writes them, errors with their tracebacks.
        """
        from twisted.logger import globalLogPublisher
        from twisted.python import log as legacy
        captured: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(captured.append)
        try:
            legacy.msg("Main loop terminated.")
            legacy.msg(format="%(what)s starting on %(port)d", what="RelayFactory", port=7070)
            legacy.msg("braces {kept} as text", system="TCP Port 7070")
            try:
                1 / 0
            except ZeroDivisionError:
                legacy.err(None, "while testing")
        finally:
            globalLogPublisher.removeObserver(captured.append)
        self.flushLoggedErrors(ZeroDivisionError)
        theirs, ours = _twistd_and_ours(captured)
        self.assertEqual(ours, theirs)
        self.assertIn("RelayFactory starting on 7070", ours)
        self.assertIn("braces {kept} as text", ours)
        self.assertIn("ZeroDivisionError", ours)

    def test_flattenedEvent(self) -> None:
        """
        An event already flattened (as from a JSON log) goes through
        Twisted's formatter, as twistd's observer would format it.
        """
        from twisted.logger import eventFromJSON, eventAsJSON
        event = eventFromJSON(eventAsJSON(dict(
            log_format="user {user} logged in", user="bob", log_time=1764662400.5,
            log_level=LogLevel.info, log_namespace="n")))
        theirs, ours = _twistd_and_ours([event])
        self.assertEqual(ours, theirs)
        self.assertIn("user bob logged in", ours)


class TwistdWiringTests(unittest.TestCase):
    """
    C{twistd securechat} logs through L{logtext.twistd_observer}, to where
    twistd would have logged, unless the operator chose another observer.
    """

    def setUp(self) -> None:
        saved = logtext._settings
        self.addCleanup(setattr, logtext, "_settings", saved)
        handler = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, handler)
        self.data_dir = self.mktemp()

    def parse(self, *argv: str) -> ServerOptions:
        config = ServerOptions()
        config.parseOptions([*argv, "securechat", "--data-dir", self.data_dir])
        return config

    def test_namedAsTwistdsLogger(self) -> None:
        """
        With neither --logger nor --syslog, twistd's logger option names
        our observer factory (resolved by twistd itself), and it remembers
        --logfile and --nodaemon.
        """
        config = self.parse("--nodaemon", "--logfile", "relay.log")
        self.assertIs(config["logger"], logtext.twistd_observer)
        self.assertEqual(logtext._settings, ("relay.log", True))

    def test_operatorChoicesKept(self) -> None:
        """
        An observer chosen with --logger, or syslog, is left alone.
        """
        config = self.parse("--nodaemon", "--logger", "twisted.logger.textFileLogObserver")
        self.assertIs(config["logger"], textFileLogObserver)
        config = self.parse("--syslog")
        self.assertIsNone(config["logger"])

    def test_optionsOnTheirOwn(self) -> None:
        """
        securechat's options parsed without twistd's (as the tests do)
        install nothing.
        """
        logtext._settings = None
        Options().parseOptions(["--data-dir", self.data_dir])
        self.assertIsNone(logtext._settings)

    def test_logFile(self) -> None:
        """
        --logfile FILE: the lines go to FILE (rotated by twistd's LogFile,
        and on SIGUSR1), flushed line by line.
        """
        path = os.path.abspath(self.mktemp())
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        logtext._settings = (path, False)
        observer = logtext.twistd_observer()
        self.assertIsInstance(observer, logtext.TurnFileObserver)
        observer(dict(log_format="user {user} logged in from {host}", user="carol",
                      host="::1", log_time=1764662400.5, log_level=LogLevel.info,
                      log_namespace="securechat.server.relay.Relay"))
        observer.flush()  # written at once or at the end of the turn
        with open(path) as f:
            self.assertEqual(f.read(), formatTime(1764662400.5, timeFormatRFC3339)
                             + " [securechat.server.relay.Relay#info] user carol logged in "
                             "from ::1\n")
        self.assertTrue(callable(signal.getsignal(signal.SIGUSR1)))

    def test_standardOutput(self) -> None:
        """
        --logfile - with --nodaemon, or --nodaemon and no --logfile: standard
        output; a daemon with no --logfile: twistd.log; a daemon with
        --logfile -: refused as twistd refuses it.
        """
        self.assertIs(logtext.open_log("-", True), sys.stdout)
        self.assertIs(logtext.open_log(None, True), sys.stdout)
        self.assertIs(logtext.open_log("", True), sys.stdout)
        with self.assertRaises(SystemExit) as caught:
            logtext.open_log("-", False)
        self.assertEqual(str(caught.exception), "Daemons cannot log to stdout, exiting!")
        cwd = os.getcwd()
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        os.chdir(work)
        self.addCleanup(os.chdir, cwd)
        log_file = logtext.open_log(None, False)
        self.addCleanup(log_file.close)
        self.assertIsInstance(log_file, logfile.LogFile)
        self.assertEqual(os.path.basename(log_file.path), "twistd.log")  # type: ignore[attr-defined]


class _Reactor(Clock):
    """
    A clock that runs, and keeps the system event triggers added.
    """

    running = True

    def __init__(self) -> None:
        super().__init__()
        self.triggers: list[tuple[str, str, Any]] = []

    def addSystemEventTrigger(self, phase: str, event: str, f: Any) -> int:
        self.triggers.append((phase, event, f))
        return len(self.triggers)

    def shut_down(self) -> None:
        """Run the after-shutdown triggers (the reactor has stopped)."""
        self.running = False
        for phase, event, f in self.triggers:
            if (phase, event) == ("after", "shutdown"):
                f()


class _Out:
    """
    A file (text, as twistd's LogFile is taken) that records each write and
    each flush.
    """

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushes = 0
        self.lock = threading.Lock()

    def write(self, data: str) -> None:
        assert isinstance(data, str)
        with self.lock:
            self.writes.append(data)

    def flush(self) -> None:
        with self.lock:
            self.flushes += 1

    def text(self) -> str:
        return "".join(self.writes)


def _event(user: str, when: float = 1764662400.5) -> dict[str, Any]:
    return dict(log_format="user {user} logged in from {host}", user=user, host="127.0.0.1",
                log_time=when, log_level=LogLevel.info,
                log_namespace="securechat.server.relay.Relay")


class TurnFileObserverTests(unittest.TestCase):
    """
    L{logtext.TurnFileObserver} writes twistd's lines, those of a reactor
    turn together in one write at the start of the next, in order; at once
    when the reactor is not running or from another thread; and what waits
    when the reactor stops after its shutdown.
    """

    def setUp(self) -> None:
        self.reactor = _Reactor()
        self.out = _Out()
        self.io_thread = True
        self.observer = logtext.TurnFileObserver(self.out, logtext.classic_text(), self.reactor,
                                                 lambda: self.io_thread)

    def test_oneWritePerTurn(self) -> None:
        """
        Lines logged in one turn are written together, in order, in one
        write and one flush when the next turn starts; the next turn's
        lines in a write of their own.
        """
        for user in ("alice", "bob", "carol"):
            self.observer(_event(user))
        self.assertEqual(self.out.writes, [])
        self.reactor.advance(0)
        self.assertEqual(len(self.out.writes), 1)
        self.assertEqual(self.out.flushes, 1)
        text = self.out.text()
        self.assertEqual([line.split("] ")[1] for line in text.splitlines()],
                         ["user alice logged in from 127.0.0.1", "user bob logged in from "
                          "127.0.0.1", "user carol logged in from 127.0.0.1"])
        self.observer(_event("dave"))
        self.reactor.advance(0)
        self.assertEqual(len(self.out.writes), 2)
        self.assertIn("user dave logged in", self.out.writes[1])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_sameLinesAsTwistd(self) -> None:
        """
        The text written is twistd's observer's lines.
        """
        events = [_event("alice"), _event("bób", 1764662401.25),
                  dict(log_format="multi\nline", log_time=1764662402.0,
                       log_level=LogLevel.warn, log_namespace="n")]
        theirs = io.StringIO()
        twistd = textFileLogObserver(theirs)
        for event in events:
            twistd(dict(event))
            self.observer(dict(event))
        self.reactor.advance(0)
        self.assertEqual(self.out.text(), theirs.getvalue())

    def test_binaryFile(self) -> None:
        """
        A binary file is written UTF-8, as twistd's observer writes it.
        """
        out = io.BytesIO()
        observer = logtext.TurnFileObserver(out, logtext.classic_text(), self.reactor,
                                            lambda: True)
        observer(_event("alice"))
        observer(_event("bób"))
        self.reactor.advance(0)
        self.assertEqual(out.getvalue().count(b" logged in from 127.0.0.1\n"), 2)
        self.assertIn("user bób".encode(), out.getvalue())

    def test_notRunningWritesAtOnce(self) -> None:
        """
        While the reactor is not running (start-up, after it stopped), a
        line is written at once, after the lines still waiting, in one
        write.
        """
        self.observer(_event("alice"))
        self.reactor.running = False
        self.observer(_event("bob"))
        self.assertEqual(len(self.out.writes), 1)
        self.assertEqual(self.out.flushes, 1)
        self.assertLess(self.out.text().index("alice"), self.out.text().index("bob"))
        self.observer(_event("carol"))
        self.assertEqual(len(self.out.writes), 2)
        # The call scheduled for alice's line finds nothing left.
        self.reactor.advance(0)
        self.assertEqual(len(self.out.writes), 2)

    def test_otherThreadWritesAtOnce(self) -> None:
        """
        A line logged from another thread than the reactor's is written
        at once, after the lines waiting, and schedules nothing.
        """
        self.observer(_event("alice"))
        self.io_thread = False
        self.observer(_event("bob"))
        self.assertEqual(len(self.out.writes), 1)
        self.assertLess(self.out.text().index("alice"), self.out.text().index("bob"))
        self.io_thread = True
        self.reactor.advance(0)
        self.observer(_event("carol"))
        self.observer(_event("dave"))
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)

    def test_threadsLoseNothing(self) -> None:
        """
        Lines logged by several threads at once all reach the file, each
        whole, each thread's in its order.
        """
        self.io_thread = False
        count = 200

        def log(name: str) -> None:
            for i in range(count):
                self.observer(_event(f"{name}{i}"))
        threads = [threading.Thread(target=log, args=(f"t{n}x",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        lines = self.out.text().splitlines()
        self.assertEqual(len(lines), 4 * count)
        for n in range(4):
            mine = [line for line in lines if f"user t{n}x" in line]
            self.assertEqual([line.split("user ")[1].split(" ")[0] for line in mine],
                             [f"t{n}x{i}" for i in range(count)])

    def test_flushedAfterShutdown(self) -> None:
        """
        Lines waiting when the reactor stops (their turn never comes) are
        written by its after-shutdown trigger, which is added once.
        """
        self.observer(_event("alice"))
        self.reactor.advance(0)
        self.observer(_event("bob"))
        self.observer(_event("carol"))
        self.assertEqual(len(self.reactor.triggers), 1)
        self.reactor.shut_down()
        self.assertIn("user carol", self.out.text())
        self.assertEqual(len(self.out.writes), 2)

    def test_nothingToWrite(self) -> None:
        """
        An event that formats to nothing is not written and schedules
        nothing; a flush with nothing waiting writes nothing.
        """
        observer = logtext.TurnFileObserver(self.out, lambda event: None, self.reactor,
                                            lambda: True)
        observer(_event("alice"))
        observer.flush()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual((self.out.writes, self.out.flushes), ([], 0))

    def test_installedReactor(self) -> None:
        """
        With no reactor given, the observer uses the installed one.
        """
        from twisted.internet import reactor
        out = io.StringIO()
        observer = logtext.turn_observer(out)
        observer(_event("alice"))
        observer.flush()
        self.assertIs(observer._reactor, reactor)
        self.assertIn("user alice logged in", out.getvalue())


class EventLoggerTests(unittest.TestCase):
    """
    L{logtext.EventLogger} emits what L{Logger} emits.
    """

    def emitted(self, kind: type[Logger], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        captured: list[dict[str, Any]] = []
        kind(namespace="securechat.server.relay.Relay", source=self,
             observer=LogPublisher(captured.append)).emit(*args, **kwargs)
        return captured

    def test_sameEvents(self) -> None:
        """
        Every level's event has the same keys and values as Logger's (but
        the logger and the time).
        """
        for level in LogLevel.iterconstants():
            ours = self.emitted(logtext.EventLogger, level, "user {user} logged in from {host}",
                                user="alice", host="127.0.0.1")
            theirs = self.emitted(Logger, level, "user {user} logged in from {host}",
                                  user="alice", host="127.0.0.1")
            self.assertEqual(len(ours), 1)
            for events in (ours, theirs):
                self.assertIsInstance(events[0].pop("log_logger"), Logger)
                self.assertLess(abs(events[0].pop("log_time") - time.time()), 60)
            self.assertEqual(ours, theirs)
            self.assertIs(ours[0]["log_source"], self)

    def test_asDescriptor(self) -> None:
        """
        As a class attribute, it is an EventLogger named after the class,
        with the instance as its source.
        """
        class Relay:
            log = logtext.EventLogger()
        relay, other = Relay(), Relay()
        self.assertIsInstance(relay.log, logtext.EventLogger)
        self.assertIs(relay.log.source, relay)
        self.assertEqual(relay.log.namespace, f"{__name__}.Relay")
        self.assertIs(other.log.source, other)
        self.assertIsInstance(Relay.log, logtext.EventLogger)
        self.assertIs(Relay.log.source, Relay)

    def test_keptOnTheInstance(self) -> None:
        """
        The logger made for an instance is made once; assigning another
        on the instance replaces it; an instance without a __dict__ gets a
        new one on every read.
        """
        class Relay:
            log = logtext.EventLogger()

        class Slotted:
            __slots__ = ()
            log = logtext.EventLogger()
        relay = Relay()
        self.assertIs(relay.log, relay.log)
        replaced = Logger(observer=LogPublisher())
        relay.log = replaced  # type: ignore[misc]
        self.assertIs(relay.log, replaced)
        slotted = Slotted()
        self.assertIsNot(slotted.log, slotted.log)
        self.assertIs(slotted.log.source, slotted)

    def test_notALevel(self) -> None:
        """
        Something that is not a level is refused as Logger refuses it: a
        critical event that says so, not the event asked for.
        """
        ours = self.emitted(logtext.EventLogger, "info", "user {user}", user="alice")
        self.assertEqual(len(ours), 1)
        self.assertIs(ours[0]["log_level"], LogLevel.critical)
        self.assertEqual(ours[0]["invalidLevel"], "info")

    def test_trace(self) -> None:
        """
        A traced event records the logger and its observer, as Logger's.
        """
        trace: list[Any] = []
        ours = self.emitted(logtext.EventLogger, LogLevel.info, "x", log_trace=trace)
        theirs: list[Any] = []
        self.emitted(Logger, LogLevel.info, "x", log_trace=theirs)
        self.assertEqual(len(trace), len(theirs))
        self.assertEqual(trace[0], (ours[0]["log_logger"], ours[0]["log_logger"].observer))
