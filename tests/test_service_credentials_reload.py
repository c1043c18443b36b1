"""
Tests for when the relay adopts its credentials after they change on disk
(L{securechat.server.service.RelayService.refresh}): never half of a
change.  C{rotate-server-cert} writes the key, the certificate and then the
CRL revoking the old certificate as separate files; a check that lands
between them must not serve the new certificate with the old CRL (a client
connecting then would remember the old CRL), nor log a false alarm about a
key that does not match its certificate.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any, Callable

from cryptography import x509
from twisted.logger import LogLevel, formatEvent

from securechat.client.crlstate import CrlStore
from securechat.crypto.x509 import ca_fingerprint
from securechat.datadir import DataDir
from securechat.datafiles import DataDirError
from securechat.server.relay import ServerCredentials
from securechat.server.service import describe_credentials
from tests.test_service_credentials import NOW, CredentialsCase, RunningRelayCase, connect

INTERVAL = 2


def served(credentials: ServerCredentials) -> tuple[int, int]:
    """
    The serial of the certificate and the number of the CRL in C{credentials}.
    """
    leaf = x509.load_der_x509_certificate(credentials.identity.chain[0])
    crl = x509.load_der_x509_crl(credentials.identity.crl)
    return leaf.serial_number, crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def on_disk(data: DataDir) -> tuple[int, int]:
    """
    The serial of the certificate and the number of the CRL in C{data}.
    """
    crl = data.load_crl()
    return (data.load_server_chain()[0].serial_number,
            crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


class ReloadTimingCase(RunningRelayCase):
    """
    A running relay (its checks every L{INTERVAL} seconds on a
    L{twisted.internet.task.Clock}) with alice registered.
    """

    def setUp(self) -> None:
        super().setUp()
        del self.events[:]
        self.before = served(self.service.relay.credentials)
        #: What the relay served after each check made during a rotation.
        self.during: list[tuple[int, int]] = []

    def lines(self, level: LogLevel | None = None) -> list[str]:
        return [formatEvent(e) for e in self.events if level is None or e["log_level"] == level]

    def check(self, times: int = 1) -> None:
        """
        Let the relay's timer run C{times} checks.
        """
        for _ in range(times):
            self.clock.advance(INTERVAL)

    def rotate_pausing(self, pause: Callable[[], None]) -> None:
        """
        Rotate the relay's certificate as C{securechat-admin
        rotate-server-cert} does, calling C{pause} after the new key and
        certificate are written and before the CRL revoking the old one is.
        """
        write_crl = self.data._write_crl

        def paused(*args: Any, **kwargs: Any) -> None:
            pause()
            write_crl(*args, **kwargs)
        self.patch(self.data, "_write_crl", paused)
        self.data.rotate_server_certificate(NOW)

    def checks_while_paused(self, times: int) -> Callable[[], None]:
        def pause() -> None:
            for _ in range(times):
                self.check()
                self.during.append(served(self.service.relay.credentials))
        return pause


class HalfRotationTests(ReloadTimingCase):
    """
    Checks made while a rotation is half written.
    """

    def test_checksDuringLockedRotationServePrevious(self) -> None:
        """
        However long C{rotate-server-cert} (holding the data directory's
        lock) takes between the certificate and the CRL, the checks made
        meanwhile keep serving the previous certificate and CRL, and log
        nothing; after it, the new certificate is served with the new CRL.
        """
        with self.data.locked():
            self.rotate_pausing(self.checks_while_paused(3))
        self.assertEqual(self.during, [self.before] * 3)
        self.assertEqual(self.lines(), [])
        self.check(2)
        self.assertEqual(served(self.service.relay.credentials), on_disk(self.data))
        self.assertNotEqual(on_disk(self.data), self.before)

    def test_checkDuringUnlockedCopyWaitsForItToSettle(self) -> None:
        """
        Files changed without the lock (copied by hand, by rsync): a check
        finding new files adopts nothing until the next check finds them
        unchanged, so a check between the certificate and the CRL serves
        neither half.
        """
        self.rotate_pausing(self.checks_while_paused(1))
        self.assertEqual(self.during, [self.before])
        self.check()
        self.assertEqual(served(self.service.relay.credentials), self.before)
        self.check()
        self.assertEqual(served(self.service.relay.credentials), on_disk(self.data))

    def test_clientReconnectingRemembersNewCrl(self) -> None:
        """
        alice is logged in; her session is ended by the rotation only when
        the new certificate is served, and the client reconnecting then
        verifies and remembers the CRL of the rotation (which revokes the
        old certificate), not the one from before it.
        """
        crls = CrlStore(None)
        fingerprint = ca_fingerprint(self.data.load_ca_certificate())
        client, view = connect(self.service, self.network, self.data, self.wall, crls=crls)
        self.assertTrue(client.logged_in, view.seen)

        def pause() -> None:
            self.check()
            self.network.pump()
            # Not ended yet: nothing new is served.
            self.assertTrue(client.logged_in)
        self.rotate_pausing(pause)
        self.check(2)
        self.network.pump()
        self.assertIn("changed its certificate; reconnecting", view.of("disconnected")[0][0])
        again, view = connect(self.service, self.network, self.data, self.wall, crls=crls)
        self.assertTrue(again.logged_in, view.seen)
        seen = crls.seen(fingerprint)
        assert seen is not None
        self.assertEqual(seen.number, on_disk(self.data)[1])
        self.assertIn(self.before[0], seen.revoked)

    def test_keyBeforeCertificateNoFalseAlarm(self) -> None:
        """
        A check between the new key and the new certificate (which do not
        belong together) logs no error: it waits for the files to settle.
        """
        write = self.data._write

        def write_checking(path: str, data: bytes, mode: int) -> None:
            write(path, data, mode)
            if path == self.data.server_key_path:
                self.check()
        self.patch(self.data, "_write", write_checking)
        self.data.rotate_server_certificate(NOW)
        self.check(2)
        self.assertEqual(self.lines(LogLevel.error), [])
        self.assertEqual(served(self.service.relay.credentials), on_disk(self.data))

    def test_filesChangedWhileReadRereadLater(self) -> None:
        """
        Files that change while the relay reads them (between its first
        and last file) are not adopted: what was read may be a mix.  They
        are read again once they settle, and the newest set is served.
        """
        self.data.rotate_server_certificate(NOW)
        self.check()
        relay_credentials = self.service.data.relay_credentials
        calls = []

        def read_then_change() -> Any:
            read = relay_credentials()
            if not calls:
                self.data.refresh_crl(NOW)
            calls.append(read)
            return read
        self.patch(self.service.data, "relay_credentials", read_then_change)
        self.check()
        self.assertEqual(len(calls), 1)
        self.assertEqual(served(self.service.relay.credentials), self.before)
        self.check()
        self.assertEqual(len(calls), 2)
        self.assertEqual(served(self.service.relay.credentials), on_disk(self.data))


class SighupTests(ReloadTimingCase):
    """
    SIGHUP (L{RelayService.refresh} with C{force}): the operator says the
    files are ready.
    """

    def test_sighupReloadsAtOnce(self) -> None:
        """
        Files changed by hand are adopted at once on SIGHUP, without
        waiting for them to settle, and one line says which certificate
        and CRL are now served.
        """
        self.data.rotate_server_certificate(NOW)
        self.service.refresh(force=True)
        now = served(self.service.relay.credentials)
        self.assertEqual(now, on_disk(self.data))
        [line] = [line for line in self.lines(LogLevel.info) if "CRL reloaded" in line]
        self.assertEqual(line, f"relay certificate and CRL reloaded (certificate serial "
                         f"{now[0]:x}, CRL number {now[1]})")

    def test_sighupDuringAdminCommandWaitsForIt(self) -> None:
        """
        A SIGHUP while a securechat-admin command holds the lock (half way
        through a rotation) adopts nothing and says so in one line; the
        first check after the command ends adopts the whole rotation.
        """
        def pause() -> None:
            self.service.refresh(force=True)
            self.service.refresh(force=True)
            self.check()
            self.during.append(served(self.service.relay.credentials))
        with self.data.locked():
            self.rotate_pausing(pause)
        self.assertEqual(self.during, [self.before])
        self.assertEqual([line for line in self.lines() if "changing" in line],
                         [f"a securechat-admin command is changing {self.path}: reloading the "
                          "relay certificate and CRL when it is done"])
        self.check()
        self.assertEqual(served(self.service.relay.credentials), on_disk(self.data))

    def test_sighupFilesChangedWhileReadRereadAtNextCheck(self) -> None:
        """
        A SIGHUP whose read saw the files change reads them again at the
        next check (not two), and says so.
        """
        relay_credentials = self.service.data.relay_credentials
        calls = []

        def read_then_change() -> Any:
            read = relay_credentials()
            if not calls:
                self.data.rotate_server_certificate(NOW)
            calls.append(read)
            return read
        self.patch(self.service.data, "relay_credentials", read_then_change)
        self.service.refresh(force=True)
        self.assertEqual(served(self.service.relay.credentials), self.before)
        self.assertIn("the relay certificate or CRL changed while being read: reading them "
                      "again at the next check", self.lines(LogLevel.info))
        self.check()
        self.assertEqual(served(self.service.relay.credentials), on_disk(self.data))


class DescribeTests(ReloadTimingCase):
    """
    The reload line names what is served.
    """

    def test_describeCredentials(self) -> None:
        serial, number = self.before
        self.assertEqual(describe_credentials(self.service.relay.credentials),
                         f"certificate serial {serial:x}, CRL number {number}")


class LockTests(CredentialsCase):
    """
    The data directory's lock, as the relay tests it
    (L{DataDir.changing}) and commands take it (L{DataDir.locked}).
    """

    def test_changingWhileCommandHoldsLock(self) -> None:
        """
        C{changing} is true while a command holds the lock, false before
        any command ran (no lock file) and after.
        """
        self.assertFalse(os.path.exists(self.data.lock_path))
        self.assertFalse(self.data.changing())
        with self.data.locked():
            self.assertTrue(self.data.changing())
        self.assertFalse(self.data.changing())

    def test_commandWaitsForRelayTest(self) -> None:
        """
        A command starting while a relay tests the lock (holding it shared
        for an instant) waits for the test instead of refusing as if
        another command were running.
        """
        with self.data.locked():
            pass
        relay = [os.open(self.data.lock_path, os.O_RDONLY)]
        self.addCleanup(lambda: [os.close(fd) for fd in relay])
        fcntl.flock(relay[0], fcntl.LOCK_SH | fcntl.LOCK_NB)
        waits: list[float] = []

        def relay_done(seconds: float) -> None:
            waits.append(seconds)
            os.close(relay.pop())
        with self.data.locked(sleep=relay_done):
            self.assertTrue(self.data.changing())
        self.assertEqual(len(waits), 1)

    def test_commandRefusedWhileAnotherHoldsLock(self) -> None:
        """
        A lock held beyond the wait is another command's: refused in one
        line.
        """
        with self.data.locked():
            e = self.assertRaises(DataDirError, self._lock_again)
        self.assertEqual(str(e), f"{self.path} is locked by another securechat-admin command")

    def _lock_again(self) -> None:
        with self.data.locked(wait=0):
            pass
