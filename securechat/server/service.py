# -*- test-case-name: tests.test_service -*-
"""
The relay's service tree, as C{twistd securechat} runs it::

    RelayService (MultiService)
      listener per --listen endpoint   (strports: a failed listen stops start-up)
      metrics site, if --metrics       (/metrics, /health)
      TimerService                     (re-read users.json and the CRL when they change)

The user directory and the relay's credentials (certificate and stapled CRL)
are re-read within C{reload_interval} seconds of changing on disk, and at
once on SIGHUP; users revoked meanwhile are disconnected.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
from typing import Any, Iterator, Sequence

from twisted.application import strports
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Site
from zope.interface import implementer

from securechat.datadir import CorruptDataDir, DataDir, UserDirectory
from securechat.server.directory import IUserDirectory, UserEntry
from securechat.server.limits import Limits
from securechat.server.metrics import metrics_root
from securechat.server.relay import Relay, RelayFactory, ServerCredentials
from securechat.wire.messages import CertificateIdentity

DEFAULT_SERVER_NAMES = ["localhost", "127.0.0.1", "::1"]


class StartupError(Exception):
    """
    The relay cannot start; the message says why in one sentence.
    """


@implementer(IUserDirectory)
class FileUserDirectory:
    """
    The data directory's C{users.json}, re-read when it changes.
    """

    def __init__(self, data: DataDir) -> None:
        self._data = data
        self._stamp: Any = None
        self._users = UserDirectory()
        self.reload()

    def reload(self) -> bool:
        """
        Re-read the file if it changed; return whether it did.
        """
        stamp = self._data.stamp(self._data.users_path)
        if stamp == self._stamp:
            return False
        self._users = self._data.load_users()
        self._stamp = stamp
        return True

    def lookup(self, name: str) -> UserEntry | None:
        record = self._users.lookup(name)
        if record is None:
            return None
        return UserEntry(record.name, record.public_key, record.revoked is not None)

    def __len__(self) -> int:
        return len(self._users.users)


def load_credentials(data: DataDir) -> ServerCredentials:
    key, chain, crl = data.server_credentials()
    return ServerCredentials(key, CertificateIdentity(tuple(chain), crl))


class RelayService(MultiService):
    """
    The relay and everything around it.
    """

    log = Logger()

    def __init__(self, data: DataDir, relay: Relay, directory: FileUserDirectory,
                 reload_interval: float = 2.0) -> None:
        super().__init__()
        self.data = data
        self.relay = relay
        self.directory = directory
        self._credential_stamps = self._stamps()
        timer = TimerService(reload_interval, self.refresh)
        timer.clock = relay.clock
        timer.setServiceParent(self)
        self._previous_hup: Any = None

    def _stamps(self) -> tuple[Any, ...]:
        d = self.data
        return tuple(d.stamp(p) for p in (d.crl_path, d.server_cert_path, d.server_key_path))

    def refresh(self, force: bool = False) -> None:
        """
        Re-read what changed on disk.  Never raises: a bad file is logged and
        the previous version kept, so one mistake does not stop the relay.
        """
        try:
            if self.directory.reload() or force:
                self.log.info("user directory reloaded: {count} users", count=len(self.directory))
                self.relay.revalidate()
            stamps = self._stamps()
            if stamps != self._credential_stamps or force:
                self.relay.credentials = load_credentials(self.data)
                self._credential_stamps = stamps
                self.log.info("relay certificate and CRL reloaded")
        except CorruptDataDir as e:
            self.log.error("keeping the previous configuration: {error}", error=str(e))
        except Exception:
            self.log.failure("reloading the data directory failed")

    def privilegedStartService(self) -> None:
        # twistd binds the listening ports here, before dropping privileges.
        with _listen_errors_exit():
            super().privilegedStartService()

    def startService(self) -> None:
        with _listen_errors_exit():
            super().startService()
        try:
            self._previous_hup = signal.signal(signal.SIGHUP, self._hup)
        except ValueError:  # not the main thread (tests)
            self._previous_hup = None

    def _hup(self, signum: int, frame: Any) -> None:
        from twisted.internet import reactor
        reactor.callFromThread(self.refresh, True)  # type: ignore[attr-defined]

    def stopService(self) -> Any:
        if self._previous_hup is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
        for session in list(self.relay.sessions.values()):
            session.protocol.terminate("shutting-down", "the relay is stopping")
        return super().stopService()


@contextlib.contextmanager
def _listen_errors_exit() -> Iterator[None]:
    """
    A port that cannot be listened on stops start-up with one clear line
    (instead of a traceback) and a non-zero exit.
    """
    try:
        yield
    except CannotListenError as e:
        reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
        where = f"{e.interface or '*'}:{e.port}"
        sys.stderr.write(f"twistd securechat: error: cannot listen on {where}: {reason}\n")
        raise SystemExit(1) from None


def prepare_data_dir(path: str, create: bool, now: datetime.datetime) -> tuple[DataDir, bool]:
    """
    Open the data directory, creating it (CA, certificate for localhost)
    when C{create} is set and it does not exist yet.  Returns it and whether
    it was just created.
    """
    data = DataDir(path)
    if data.initialized():
        return data, False
    if os.path.exists(path) and os.listdir(path):
        raise StartupError(
            f"{path} exists but holds no CA ({data.ca_cert_path} is missing): "
            "run `securechat-admin init` there, or point --data-dir elsewhere")
    if not create:
        raise StartupError(f"{path} is not a securechat data directory: run `securechat-admin init`")
    data.init(DEFAULT_SERVER_NAMES, now)
    return data, True


def relay_service(data_dir: str, listen: Sequence[str], metrics: str | None, limits: Limits,
                  create: bool = True, clock: IReactorTime | None = None) -> RelayService:
    """
    Build the whole service tree, or raise L{StartupError} /
    L{CorruptDataDir} saying what is wrong.
    """
    if clock is None:
        from twisted.internet import reactor
        clock = reactor
    assert clock is not None
    log = Logger(namespace="securechat.server")
    data, created = prepare_data_dir(
        data_dir, create, datetime.datetime.now(datetime.timezone.utc))
    directory = FileUserDirectory(data)
    relay = Relay(directory, load_credentials(data), clock, limits)
    service = RelayService(data, relay, directory)
    factory = RelayFactory(relay)
    factory.noisy = False
    for description in listen:
        try:
            strports.service(description, factory).setServiceParent(service)
        except IndexError:
            if description.startswith("systemd:"):
                raise StartupError(
                    f"--listen {description!r}: systemd passed no such socket (LISTEN_FDS); run "
                    "under socket activation (etc/securechat.socket) or listen on tcp:") from None
            raise StartupError(f"cannot use --listen {description!r}") from None
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise StartupError(f"cannot use --listen {description!r}: {e}") from None
    if metrics is not None:
        site = Site(metrics_root(relay.metrics, lambda: bool(service.running)))
        site.noisy = False
        try:
            strports.service(metrics, site).setServiceParent(service)
        except (ValueError, KeyError, IndexError, TypeError, OSError) as e:
            raise StartupError(f"cannot use --metrics {metrics!r}: {e}") from None
    users = len(directory)
    log.info(
        "securechat relay: data directory {path}{created}; {users} users registered; listening "
        "on {listen}.  Add a user: securechat-admin --data-dir {path} new-user NAME --out DIR.  "
        "Connect: securechat-client --server tcp:127.0.0.1:PORT --ca {ca} --user NAME "
        "--key DIR/NAME.key",
        path=data.path, created=" (created now, with a certificate for localhost)" if created else "",
        users=users, listen=", ".join(listen), ca=data.ca_cert_path)
    return service
