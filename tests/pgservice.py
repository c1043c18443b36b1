"""
A throwaway PostgreSQL for the tests (DESIGN §9): C{initdb} in a temporary
directory, C{postgres} listening only on a unix socket in that directory
(no TCP port), fsync kept on, stopped by its PID when the tests are done.

As root, C{initdb} and C{postgres} run as the C{postgres} user (they refuse
to run as root), the directory given to it; as another user, as that
user.  The binaries are Debian's (C{/usr/lib/postgresql/*/bin}, package
C{postgresql}); where they are missing a test is skipped loudly, or fails
under C{SECURECHAT_REQUIRE_SERVICES=1} (L{need_postgres}).

One L{Cluster} per test process is shared (L{shared_cluster}); each test
gets a fresh database in it (L{Cluster.fresh_database}, C{CREATE DATABASE},
a few milliseconds).  A test that stops and starts PostgreSQL makes its own
L{Cluster}.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from twisted.trial import unittest

from tests.services import need_service

#: How long start-up and shutdown may take before the test fails.
START_SECONDS = 60.0


def binaries() -> str | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def _run_as() -> dict[str, Any]:
    """Popen's arguments that run a server binary as the right user."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def missing() -> list[str]:
    """What is missing to run PostgreSQL here (empty: nothing)."""
    absent = []
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        absent.append("psycopg2 (pip install '.[postgresql]')")
    if binaries() is None:
        absent.append("initdb/postgres (/usr/lib/postgresql/*/bin)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            absent.append("the postgres user")
    return absent


def need_postgres(test: unittest.TestCase) -> None:
    """Skip C{test} loudly (or fail it, in CI) when PostgreSQL cannot run here."""
    need_service(test, missing(), "the PostgreSQL store", "apt-get install postgresql")


class Cluster:
    """
    One PostgreSQL server in its own temporary directory; C{start} runs
    C{initdb} the first time.
    """

    def __init__(self) -> None:
        bindir = binaries()
        assert bindir is not None
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="scpg-")
        self.data = os.path.join(self.dir, "data")
        self.socket_dir = self.dir
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._initdb()

    def _initdb(self) -> None:
        subprocess.run(
            [os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir,
            **_run_as())

    def url(self, database: str = "postgres") -> str:
        """The libpq URI of C{database}, on the socket."""
        return f"postgresql:///{database}?host={self.socket_dir}&user=postgres"

    def start(self) -> None:
        """Start the server and wait (bounded) until it accepts connections."""
        assert self.process is None
        log = open(os.path.join(self.dir, "server.log"), "ab")
        try:
            self.process = subprocess.Popen(
                [os.path.join(self.bindir, "postgres"), "-D", self.data,
                 "-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket_dir}",
                 "-c", "fsync=on", "-c", "max_connections=40", "-c", "shared_buffers=16MB"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.dir, **_run_as())
        finally:
            log.close()
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start-up: {self.log_tail()}")
            if self._accepts():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start in {START_SECONDS} s: {self.log_tail()}")
            time.sleep(0.05)

    def _accepts(self) -> bool:
        import psycopg2
        try:
            psycopg2.connect(self.url()).close()
        except psycopg2.OperationalError:
            return False
        return True

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server (fast shutdown: SIGINT to its PID), waiting for it."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(START_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def remove(self) -> None:
        """Stop it and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def execute(self, statement: str, database: str = "postgres") -> None:
        """Run one statement outside a transaction."""
        import psycopg2
        conn = psycopg2.connect(self.url(database))
        try:
            conn.autocommit = True
            conn.cursor().execute(statement)
        finally:
            conn.close()

    def fresh_database(self, test: unittest.TestCase, owner: str = "postgres") -> str:
        """
        A new empty database for C{test} owned by the role C{owner}, dropped
        after it; its URL (connecting as C{owner}).
        """
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name} OWNER {owner} TEMPLATE template0")

        def drop() -> None:
            if self.process is not None:
                self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        test.addCleanup(drop)
        return self.url(name).replace("user=postgres", f"user={owner}")

    def fresh_role(self, test: unittest.TestCase) -> str:
        """A new role that may log in and nothing else, dropped after C{test}; its name."""
        name = f"role_{os.getpid()}_{next(self._names)}"
        self.execute(f"CREATE ROLE {name} LOGIN")

        def drop() -> None:
            if self.process is not None:
                self.execute(f"DROP ROLE IF EXISTS {name}")
        test.addCleanup(drop)
        return name


_shared: Cluster | None = None


def shared_cluster(test: unittest.TestCase) -> Cluster:
    """
    This process's running cluster, started the first time (skipped or
    failed per L{need_postgres} when it cannot run), removed at exit.
    """
    global _shared
    need_postgres(test)
    if _shared is None:
        cluster = Cluster()
        atexit.register(cluster.remove)
        cluster.start()
        _shared = cluster
    return _shared
