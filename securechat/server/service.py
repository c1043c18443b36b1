# -*- test-case-name: tests.test_service -*-
"""
The relay's service tree, as C{twistd securechat} runs it::

    RelayService (MultiService)
      listener per --listen endpoint   (strports: a failed listen stops start-up)
      HTTP listener per --listen-websocket endpoint (its /relay a WebSocket,
                                       securechat.server.websocket)
      web listener, if --web           (the browser client's page and /relay,
                                       securechat.server.web)
      metrics site, if --metrics       (/metrics, /health)
      TimerService                     (re-read users.json and the CRL when they change)
      mailbox-purge TimerService       (delete expired letters, every 15 minutes)

The mailbox store (C{mailbox.sqlite3} in the data directory, or the
PostgreSQL database of C{--store}) is opened
before anything is served (a file that cannot be used stops start-up with
one line) and closed when the service stops, after the sessions end.

The user directory is checked for changes at every lookup (one C{stat}), so
a user C{securechat-admin} registered, re-keyed or revoked is accepted or
refused at the next login; sessions of users revoked or re-keyed meanwhile
are ended within C{reload_interval} seconds.  The relay's credentials
(certificate, key and stapled CRL) are several files that change together
(C{rotate-server-cert} writes all three), and the relay serves them only
as a set that was complete on disk: a change is adopted at the first check
that finds the files as the check before found them (so within two
C{reload_interval}s), while no C{securechat-admin} command holds the data
directory's lock, and when the files did not change while being read
(L{RelayService.refresh}).  SIGHUP re-reads everything at once (after the
command holding the lock, if one does).

The relay checks its own credentials with the verifier clients use
(L{securechat.crypto.x509.check_relay_credentials}) before serving them: at
start-up a failure stops the relay with one line; on reload it keeps the
credentials it has and logs one line, except that a CRL revoking its own
certificate is adopted (staple the truth: a relay that kept the older CRL
would be doing the rollback that clients refuse).  Sessions established
under a certificate that is no longer the relay's current valid one are
ended with SERVER_REKEYED (docs/protocol.rst, 11.5).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
from typing import Any, Callable, Iterator, Sequence

from twisted.application import strports
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.address import UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Site

from securechat import pki
from securechat.datadir import DataDir
from securechat.datafiles import CorruptDataDir
from securechat.server.credentials import (  # noqa: F401 -- read_credentials re-exported
    EXPIRY_WARNING, _wall_clock, describe_credential_problem, describe_credentials,
    load_credentials, read_credentials, valid_until)
from securechat.server.userfile import FileUserDirectory  # noqa: F401 -- re-exported
from securechat.server.limits import Limits
from securechat.server.mailbox import mailbox_limits
from securechat.server.metrics import metrics_root
from securechat.server.relay import Relay, RelayFactory
from securechat.server.store import (
    SQLITE, IMailboxStore, UnusableDatabase, group_store, mailbox_store)
from securechat.server.store.expiry import purge_service
from securechat.server.store.sqlstore import SQLMailboxStore
from securechat.server.listeners import listening_service, websocket_listeners
from securechat.server.startup import (StartupError, client_server_option, inherited_sockets,
                                       systemd_problem, tool_command)

DEFAULT_SERVER_NAMES = ["localhost", "127.0.0.1", "::1"]


class RelayService(MultiService):
    """
    The relay and everything around it.
    """

    log = Logger()

    def __init__(self, data: DataDir, relay: Relay, directory: FileUserDirectory,
                 reload_interval: float = 2.0,
                 now: Callable[[], datetime.datetime] = _wall_clock,
                 store: IMailboxStore | None = None) -> None:
        super().__init__()
        #: The mailbox store, closed when the service stops.
        self.store = store
        self.data = data
        self.relay = relay
        self.directory = directory
        self.now = now
        #: The versions of the credential files being served.
        self._credential_stamps = self._stamps()
        #: The versions the previous check found (a change is adopted once
        #: two checks in a row find the same).
        self._seen_stamps = self._credential_stamps
        #: Whether a SIGHUP is waiting for a securechat-admin command to end.
        self._hup_waiting = False
        #: The files' versions whose problem was last logged (logged once).
        self._refused_stamps: tuple[Any, ...] | None = None
        #: When the credentials served go out of date, what to do, and
        #: which of the warning and the error has been logged about it.
        self._until, self._remedy = valid_until(relay.credentials)
        self._expiry_logged: set[str] = set()
        timer = TimerService(reload_interval, self.refresh)
        timer.clock = relay.clock
        timer.setServiceParent(self)
        self._previous_hup: Any = None
        #: The listening services, whose ports the start-up hint names.
        self.listeners: list[Any] = []
        #: The WebSocket listeners (--listen-websocket) and the web one (--web).
        self.websocket_listeners: list[Any] = []
        self.web_listener: Any = None
        #: Whether the data directory was created by this start.
        self.created = False

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
            self._poll_credentials(force)
            self._check_expiry()
        except CorruptDataDir as e:
            self.log.error("keeping the previous configuration: {error}", error=str(e))
        except Exception:
            self.log.failure("reloading the data directory failed")

    def _poll_credentials(self, force: bool) -> None:
        """
        Reload the credentials if their files changed and have settled:
        found unchanged since the previous check (a copy of several files,
        by hand or rsync, is over), with no securechat-admin command
        changing the directory (a rotation is not half done).  C{force}
        (SIGHUP) skips the first condition, not the second: it waits for
        the command and reloads at the first check after it.
        """
        stamps = self._stamps()
        settled = stamps == self._seen_stamps
        self._seen_stamps = stamps
        force = force or self._hup_waiting
        if not force and (stamps == self._credential_stamps or not settled):
            return
        if self.data.changing():
            if force and not self._hup_waiting:
                self.log.info("a securechat-admin command is changing {path}: reloading the "
                              "relay certificate and CRL when it is done", path=self.data.path)
            self._hup_waiting = force
            return
        self._hup_waiting = False
        self._reload_credentials(stamps, force)

    def _reload_credentials(self, stamps: tuple[Any, ...], force: bool) -> None:
        """
        Adopt the credentials on disk if clients would accept them (or if
        the CA has revoked the relay's certificate); else keep the current
        ones and log why, once per version of the files.  Files that
        changed while being read are read again at a later check.
        """
        try:
            credentials, problem = read_credentials(self.data, self.now())
        except CorruptDataDir as e:
            if self._stamps() != stamps:
                self._changed_while_read(force)
                return
            if stamps != self._refused_stamps or force:
                self._refused_stamps = stamps
                self.log.error("keeping the previous relay certificate: {error}", error=str(e))
            return
        if self._stamps() != stamps:
            self._changed_while_read(force)
            return
        if problem is not None and problem.code != "revoked":
            if stamps != self._refused_stamps or force:
                self._refused_stamps = stamps
                self.log.error("keeping the previous relay certificate: {error}",
                               error=describe_credential_problem(self.data, problem))
            return
        self._credential_stamps = stamps
        self._refused_stamps = None
        if problem is not None:
            self.log.error("{error}; ending every session", error=describe_credential_problem(
                self.data, problem))
        ended = self.relay.replace_credentials(credentials, valid=problem is None)
        self._until, self._remedy = valid_until(credentials)
        self._expiry_logged = set()
        self.log.info("relay certificate and CRL reloaded ({what}){ended}",
                      what=describe_credentials(credentials),
                      ended=f"; {ended} sessions under the previous certificate ended" if ended else "")

    def _changed_while_read(self, force: bool) -> None:
        """
        The files changed while they were read, so what was read may be
        half old, half new: nothing is adopted, and the next checks read
        them again once they settle (the next one, after a SIGHUP).
        """
        self._seen_stamps = self._stamps()
        if force:
            self._hup_waiting = True
            self.log.info("the relay certificate or CRL changed while being read: reading "
                          "them again at the next check")

    def _check_expiry(self) -> None:
        """
        Warn once when the credentials served are about to go out of date,
        and say once when they have: from then on every client refuses
        them, though nothing on disk changed.
        """
        now = self.now()
        when = self._until.strftime("%Y-%m-%d %H:%M UTC")
        if now > self._until and "error" not in self._expiry_logged:
            self._expiry_logged |= {"error", "warning"}
            self.log.error("every client now refuses the relay: {what}",
                           what=self._remedy.format(when=when).replace("goes out", "went out")
                           .replace("expires at", "expired at"))
        elif now > self._until - EXPIRY_WARNING and "warning" not in self._expiry_logged:
            self._expiry_logged.add("warning")
            self.log.warn("{what}", what=self._remedy.format(when=when))

    def privilegedStartService(self) -> None:
        # twistd binds the listening ports here, before dropping privileges.
        with _listen_errors_exit():
            super().privilegedStartService()

    def startService(self) -> None:
        with _listen_errors_exit():
            super().startService()
        self.log.info("{hint}", hint=self.hint())
        try:
            self._previous_hup = signal.signal(signal.SIGHUP, self._hup)
        except ValueError:  # not the main thread (tests)
            self._previous_hup = None

    def hint(self) -> str:
        """
        The line that says where the data is, where the relay listens, and
        how to add a user and connect, with commands that work when copied:
        the tools' full paths, the real port, and C{--server-name} when the
        address is not a name in the relay's certificate.
        """
        addresses = _bound_addresses(self.listeners)
        websocket = "".join(f", WebSocket on {_address_text(a)}/relay"
                            for a in _bound_addresses(self.websocket_listeners))
        websocket += "".join(f", web page on {_address_text(a)}/"
                             for a in _bound_addresses([self.web_listener] if self.web_listener
                                                       else []))
        try:
            names = pki.certificate_names(self.data.load_server_chain()[0])
        except CorruptDataDir:
            names = []
        path = self.data.path
        created = " (created now, with a certificate for localhost)" if self.created else ""
        listening = ", ".join(_address_text(a) for a in addresses) or "no listener"
        return (
            f"securechat relay: data directory {path}{created}; {len(self.directory)} users "
            f"registered; listening on {listening}{websocket}.  Add a user: "
            f"{tool_command('securechat-admin', 'securechat.admin')} --data-dir {path} new-user "
            f"NAME --out DIR.  Connect: {tool_command('securechat-client', 'securechat.client')} "
            f"{client_server_option(addresses, names)} --ca {self.data.ca_cert_path} --user NAME "
            "--key DIR/NAME.key")

    def _hup(self, signum: int, frame: Any) -> None:
        from twisted.internet import reactor
        reactor.callFromThread(self.refresh, True)  # type: ignore[attr-defined]

    def stopService(self) -> Any:
        if self._previous_hup is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
        for session in list(self.relay.sessions.values()):
            session.protocol.terminate("shutting-down", "the relay is stopping")
        stopped = super().stopService()
        if self.store is None:
            return stopped
        store = self.store

        def close(_: Any) -> Any:
            return store.close()
        if stopped is None:
            return store.close()
        return stopped.addCallback(close)


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
        # twistd has redirected sys.stderr into its log by now: the line
        # goes to the real standard error, so a failed start is one line.
        stream = sys.__stderr__ or sys.stderr
        stream.write(f"twistd securechat: error: cannot listen on {where}: {reason}\n")
        stream.flush()
        raise SystemExit(1) from None


def _bound_addresses(listeners: list[Any]) -> list[Any]:
    """
    The addresses C{listeners} are bound to (those that are).
    """
    addresses = []
    for listener in listeners:
        waiting = getattr(listener, "_waitingForPort", None)
        port = getattr(waiting, "result", None) if waiting is not None else None
        if port is not None and hasattr(port, "getHost"):
            addresses.append(port.getHost())
    return addresses


def _address_text(address: Any) -> str:
    if isinstance(address, UNIXAddress):
        return f"unix:{address.name.decode() if isinstance(address.name, bytes) else address.name}"
    host = getattr(address, "host", "?")
    return f"{host}:{getattr(address, 'port', '?')}"


def prepare_data_dir(path: str, create: bool, now: datetime.datetime,
                     allow_readable_keys: bool = False) -> tuple[DataDir, bool]:
    """
    Open the data directory after checking it can be trusted
    (L{DataDir.verify}); create it (CA, certificate for localhost) when
    C{create} is set and it does not exist yet or is empty.  Returns it and
    whether it was just created.

    @raise StartupError: if it is not a data directory and C{create} is
        not set (a mistyped C{--data-dir} must not become a new CA).
    """
    data = DataDir(path, allow_readable_keys=allow_readable_keys)
    data.verify()
    if data.initialized():
        return data, False
    admin = tool_command("securechat-admin", "securechat.admin")
    init = f"{admin} --data-dir {data.path} init --server-name NAME"
    if os.path.isdir(path) and [n for n in os.listdir(path) if n != ".lock"]:
        raise StartupError(
            f"{data.path} exists but holds no CA ({data.ca_cert_path} is missing): create one "
            f"with `{init}`, or point --data-dir elsewhere")
    if not create:
        state = "is empty" if os.path.isdir(path) else "does not exist"
        raise StartupError(
            f"{data.path} {state}: create the CA there with `{init}` (or start with --init "
            "for a relay on localhost only)")
    data.init(DEFAULT_SERVER_NAMES, now)
    return data, True


def relay_health(service: Any, link: Any = None) -> Callable[[], bool]:
    """
    What C{/health} answers: ready while C{service} runs and, with
    C{--cluster}, while its C{link} to Redis is up (a process cut off from
    Redis refuses logins, so a load balancer should send users elsewhere).
    """
    if link is None:
        return lambda: bool(service.running)
    return lambda: bool(service.running) and bool(link.linked)


def relay_service(data_dir: str, listen: Sequence[str], metrics: str | None, limits: Limits,
                  create: bool = True, clock: IReactorTime | None = None,
                  allow_readable_keys: bool = False,
                  now: Callable[[], datetime.datetime] | None = None,
                  websocket: Sequence[str] = (), origins: Sequence[str] = (),
                  web: str | None = None, store: str = SQLITE, cluster: str | None = None,
                  process_id: str | None = None, presence_ttl: float = 10.0,
                  reuse_port: bool = False) -> RelayService:
    """
    Build the whole service tree, or raise L{StartupError} /
    L{CorruptDataDir} saying what is wrong.  C{store} is C{--store}
    (L{securechat.server.store.mailbox_store}).  With C{reuse_port}, the
    C{tcp:}, C{tcp6:} and C{ssl:} endpoints of C{listen}, C{websocket} and
    C{web} listen with C{SO_REUSEPORT} (L{securechat.server.reuseport});
    C{metrics} never does (each process answers for itself).
    """
    if clock is None:
        from twisted.internet import reactor
        clock = reactor
    assert clock is not None
    if now is None:
        now = _wall_clock
    data, created = prepare_data_dir(data_dir, create, now(), allow_readable_keys)
    directory = FileUserDirectory(data, clock)
    credentials = load_credentials(data, now())
    try:
        mailbox = mailbox_store(data.path, clock, mailbox_limits(limits), store=store)
        groups = group_store(mailbox, clock)
    except UnusableDatabase as e:
        raise StartupError(f"cannot use the mailbox: {e}") from None
    relay = Relay(directory, credentials, clock, limits, store=mailbox, group_store=groups)
    if isinstance(mailbox, SQLMailboxStore):  # either engine
        on_sql = mailbox
        relay.metrics.letter_commits_source = lambda: on_sql.letter_commits
    service = RelayService(data, relay, directory, now=now, store=mailbox)
    purge_service(mailbox, clock).setServiceParent(service)
    purge_service(groups, clock, what="group messages", name="group-purge").setServiceParent(
        service)
    service.created = created
    link = None
    if cluster is not None:
        from securechat.server.cluster import RedisCluster, default_process_id
        from securechat.server.router import Router
        link = RedisCluster(cluster, process_id or default_process_id(), presence_ttl, clock)
        link.router = Router(relay, link, clock, presence_ttl)
        link.setServiceParent(service)
    factory = RelayFactory(relay)
    factory.noisy = False
    for description in listen:
        try:
            listener = listening_service(description, factory, reuse_port)
        except (IndexError, KeyError) as e:
            if description.startswith("systemd:"):
                raise StartupError(
                    systemd_problem(description, os.environ, inherited_sockets())) from None
            raise StartupError(f"cannot use --listen {description!r}: {e}") from None
        except (ValueError, TypeError, OSError) as e:
            raise StartupError(f"cannot use --listen {description!r}: {e}") from None
        listener.setServiceParent(service)
        service.listeners.append(listener)
    if websocket or web:
        websocket_listeners(service, factory, websocket, origins, clock, web, reuse_port)
    if metrics is not None:
        site = Site(metrics_root(relay.metrics, relay_health(service, link)))
        site.noisy = False
        try:
            strports.service(metrics, site).setServiceParent(service)
        except (ValueError, KeyError, IndexError, TypeError, OSError) as e:
            raise StartupError(f"cannot use --metrics {metrics!r}: {e}") from None
    return service
