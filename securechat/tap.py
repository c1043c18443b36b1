# -*- test-case-name: tests.test_tap -*-
"""
C{twistd securechat}: the relay's command-line options and its service tree.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from twisted.application.service import IService
from twisted.internet.testing import MemoryReactor
from twisted.internet.endpoints import serverFromString
from OpenSSL.SSL import Error as SSLError
from twisted.logger import Logger
from twisted.python import usage

from securechat import __version__
from securechat.server.limits import MAX_CLIENT_FRAME, MAX_LETTER, Limits

DEFAULT_LISTEN = "tcp:7070:interface=127.0.0.1"


def default_data_dir() -> str:
    """
    C{$SECURECHAT_DATA_DIR}, else C{~/.local/share/securechat} (the same
    default as C{securechat-admin}).
    """
    return os.environ.get("SECURECHAT_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), ".local", "share", "securechat")


def _positive(kind: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def coerce(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise usage.UsageError(f"--{name} must be a number, not {value!r}") from None
        if number <= 0:
            raise usage.UsageError(f"--{name} must be greater than zero")
        return number
    coerce.coerceDoc = "Must be greater than zero."  # type: ignore[attr-defined]
    return coerce


_D = Limits()

#: The most groups a user may be in: a GROUP_LIST entry is at most 94
#: bytes, so 500 of them (47,000 bytes) fit one record at the default
#: --max-frame (with a smaller frame the list is cut to fit, 15.2).
MAX_GROUPS_PER_USER = 500

#: (option, Limits field, type, help) for every limit; defaults come from
#: L{Limits} so they are written down once.
LIMIT_OPTIONS = [
    ("handshake-timeout", "handshake_timeout", float,
     "Seconds a connection has to complete the handshake."),
    ("idle-timeout", "idle_timeout", float,
     "Seconds without traffic before a session is closed (a keepalive goes out at half)."),
    ("max-unauthenticated", "max_unauthenticated", int,
     "Connections allowed in the handshake at once."),
    ("max-unauthenticated-per-host", "max_unauthenticated_per_host", int,
     "Connections allowed in the handshake at once from one address."),
    ("max-handshake-frame", "max_handshake_frame", int,
     "Largest frame in bytes before authentication."),
    ("max-frame", "max_frame", int,
     "Largest frame in bytes after authentication, 1024 to 65536 (clients accept no larger)."),
    ("rate", "rate", float, "Messages per second one user may send, sustained."),
    ("burst", "burst", int, "Messages one user may send above --rate in a burst."),
    ("queue-soft-limit", "queue_soft_limit", int,
     "Bytes queued for a user above which its senders are paused."),
    ("queue-hard-limit", "queue_hard_limit", int,
     "Bytes queued for a user above which it is disconnected as not reading."),
    ("stall-timeout", "stall_timeout", float,
     "Seconds a user's queue may stay above the soft limit before it is disconnected."),
    ("max-outgoing-requests", "max_outgoing_requests", int,
     "Open chat requests one user may make."),
    ("max-incoming-requests", "max_incoming_requests", int,
     "Open chat requests one user may receive."),
    ("request-timeout", "request_timeout", float,
     "Seconds a chat request waits for an answer."),
    ("max-chats", "max_chats", int, "Chats one user may have open at once."),
    ("max-letter", "max_letter", int,
     "Largest letter in bytes the mailbox stores, at most 49152 (and at most "
     "--max-frame minus 197, so a letter fits one record)."),
    ("mailbox-letters", "mailbox_letters", int,
     "Letters one user's mailbox may hold; more are refused as MAILBOX_FULL."),
    ("mailbox-bytes", "mailbox_bytes", int,
     "Bytes of letters one user's mailbox may hold; more are refused as MAILBOX_FULL."),
    ("expiry-days", "expiry_days", float,
     "Days a letter is kept before it expires (deleted with its status and receipts)."),
    ("max-one-time-prekeys", "max_one_time_prekeys", int,
     "One-time prekeys the relay keeps for one user; an upload past it is refused."),
    ("prekey-low-mark", "prekey_low_mark", int,
     "Fewer one-time prekeys than this left: the user is told to upload more."),
    ("letter-rate", "letter_rate", float, "Letters per second one user may post, sustained."),
    ("letter-burst", "letter_burst", int,
     "Letters one user may post above --letter-rate in a burst; more are refused as RATE_LIMITED."),
    ("group-members", "max_group_members", int,
     "Members one group may have; an add past it is refused as GROUP_FULL."),
    ("groups-per-user", "max_groups_per_user", int,
     "Groups one user may be in, at most 500; a creation or add past it is refused as "
     "TOO_MANY_GROUPS."),
    ("group-rate", "group_rate", float,
     "Group messages per second one user may post, sustained (all its groups together)."),
    ("group-burst", "group_burst", int,
     "Group messages one user may post above --group-rate in a burst; more are refused as "
     "GROUP_RATE."),
    ("max-group-message", "max_group_message", int,
     "Largest group message in bytes (and at most --max-frame minus 197); larger ones are "
     "refused as GROUP_MESSAGE_TOO_LARGE."),
]


#: --presence-ttl (its default is a float, unlike the other parameters here).
_PRESENCE_TTL: list[Any] = ["presence-ttl", None, 10.0,
     "Seconds a process's presence lasts in Redis without a heartbeat (one goes out "
     "every third of it): a dead process's users drop out within this time, and a "
     "process cut off from Redis this long ends its sessions.  Only with --cluster.",
     _positive(float, "presence-ttl")]


class Options(usage.Options):
    """
    Options for C{twistd securechat}.
    """

    synopsis = ("[--data-dir DIR [--init]] [--listen ENDPOINT ...] [--listen-websocket ENDPOINT ...] "
                "[--websocket-origin ORIGIN ...] [--web ENDPOINT] [--metrics ENDPOINT] "
                "[--cluster URL [--process-id ID]] [--reuse-port] [limits]")
    longdesc = (
        "Run the securechat relay.  With no options it uses the data directory "
        "$SECURECHAT_DATA_DIR or ~/.local/share/securechat, creating it on first run "
        "(a CA, a server certificate for localhost, no users), and listens on "
        f"{DEFAULT_LISTEN}.  A --data-dir given explicitly must already hold a CA "
        "(securechat-admin init), unless --init is given too.  Manage users with "
        "securechat-admin.  "
        "ENDPOINT is any Twisted server endpoint string: tcp:7070:interface=0.0.0.0, "
        "ssl:7443:privateKey=key.pem:certKey=cert.pem, unix:/run/securechat.sock, "
        "systemd:domain=INET:index=0 (socket activation).  "
        "--listen-websocket serves the same protocol to browsers at /relay on an HTTP "
        "listener (ssl: for wss://, or behind a reverse proxy), to pages from the origins "
        "given with --websocket-origin only.  --web serves the browser client's page "
        "with the same WebSocket at /relay beside it (off by default).  "
        "--reuse-port lets several relay processes on this host accept on one port.  "
        "Users added, re-keyed or revoked are seen at the next login; SIGHUP re-reads "
        "the user directory, the certificate and the CRL at once (they are also re-read "
        "within seconds of changing).  The data directory must belong to the user running "
        "the relay (or root), with no file others can write and private keys only its "
        "owner can read.  "
        "With --cluster, several relay processes (on this host or others, behind one "
        "address) share their users through Redis: each gets its own --process-id and the "
        "same data directory contents; a user on one process chats with users on any other."
    )

    optFlags: list[list[Any]] = [
        ["init", None, "Create the data directory given with --data-dir (a CA and a "
         "certificate for localhost) if it does not exist yet or is empty."],
        ["allow-readable-keys", None, "Accept a CA or relay private key that its group or "
         "others can read (refused by default)."],
        ["reuse-port", None, "Listen on the tcp:, tcp6: and ssl: endpoints of --listen, "
         "--listen-websocket and --web with SO_REUSEPORT (Linux only), so that several relay "
         "processes of the same system user on this host accept on the same port and the "
         "kernel spreads new connections among them; every process must be started with it. "
         "--metrics is never shared: give each process its own. Each process knows only the "
         "users connected to it (see README.rst, \"Running several relay processes\")."],
    ]

    optParameters: list[list[Any]] = [
        ["data-dir", "d", None,
         "Data directory made by `securechat-admin init`; one given here must exist "
         "unless --init is given too [default: $SECURECHAT_DATA_DIR or "
         "~/.local/share/securechat, created on first run]"],
        ["web", None, None,
         "Endpoint for the browser client: its page and, at /relay, the WebSocket "
         "(add the page's origin with --websocket-origin), e.g. tcp:8080:interface=127.0.0.1 "
         "[default: off]"],
        ["metrics", "m", None,
         "Endpoint for the HTTP /metrics (Prometheus) and /health listener, "
         "e.g. tcp:9090:interface=127.0.0.1 [default: off]"],
        ["store", None, "sqlite",
         "Where the mailbox and the groups are kept: sqlite (mailbox.sqlite3 in the data "
         "directory, for one relay process) or a PostgreSQL database as a libpq URL, "
         "postgresql://USER@HOST/DBNAME or, on a unix socket, "
         "postgresql:///DBNAME?host=/run/postgresql, which several relay processes share "
         "(keep the password in ~/.pgpass or $PGPASSFILE, not in the URL).  The user "
         "directory and the CRL stay in the data directory.  A database that cannot be "
         "reached stops start-up."],
        ["cluster", None, None,
         "Run as one of several relay processes sharing their users through Redis: "
         "redis://HOST[:PORT][/DB] or unix:///PATH/redis.sock (needs the extra "
         "securechat[cluster]).  Every process must use the same Redis and the same user "
         "directory and certificates; users on different processes chat as on one.  A "
         "process without its link to Redis refuses logins (UNAVAILABLE) [default: off, "
         "one process]"],
        ["process-id", None, None,
         "This process's id in the cluster, unique among the processes on one Redis "
         "(1 to 64 letters, digits, '.', '_', ':', '-'), e.g. relay1 [default: the host "
         "name and the process id, e.g. myhost-1234]"],
        _PRESENCE_TTL,
    ] + [
        [name, None, getattr(_D, field), help, _positive(kind, name)]
        for name, field, kind, help in LIMIT_OPTIONS
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["listen-websocket"] = []
        self["websocket-origin"] = []

    def opt_listen(self, endpoint: str) -> None:
        """
        Endpoint to accept clients on; repeat for several
        [default: tcp:7070:interface=127.0.0.1]
        """
        _check_endpoint(endpoint, "--listen")
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_listen_websocket(self, endpoint: str) -> None:
        """
        Endpoint of an HTTP listener whose /relay is a WebSocket carrying
        the same protocol, for browsers; repeat for several [default: none]
        """
        _check_endpoint(endpoint, "--listen-websocket")
        self["listen-websocket"].append(endpoint)

    def opt_websocket_origin(self, origin: str) -> None:
        """
        Origin (scheme://host[:port]) of a web page allowed to open the
        WebSocket, e.g. https://chat.example.org; repeat for several.
        Pages from other origins are refused [default: none]
        """
        from securechat.server.websocket import check_origin
        try:
            self["websocket-origin"].append(check_origin(origin))
        except ValueError as e:
            raise usage.UsageError(f"--websocket-origin: {e}") from None

    #: Whether a usage error ends the process with one line (as under
    #: twistd) rather than raising (for tests).
    exit_on_usage_error = True

    def opt_version(self) -> None:
        """
        Print securechat's version and exit.
        """
        sys.stdout.write(f"securechat {__version__}\n")
        raise SystemExit(0)

    def parseOptions(self, options: Any = None) -> None:
        """
        Parse C{options}; a mistake is one line on standard error and exit
        status 2, not twistd's whole usage text before it.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if not self.exit_on_usage_error:
                raise
            sys.stderr.write(f"twistd securechat: error: {e} (see twistd securechat --help)\n")
            raise SystemExit(2) from None

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        if self["metrics"] is not None:
            _check_endpoint(self["metrics"], "--metrics")
        if self["web"] is not None:
            _check_endpoint(self["web"], "--web")
        from securechat.server.store import UnusableDatabase, check_store
        try:
            check_store(self["store"])
        except UnusableDatabase as e:
            raise usage.UsageError(str(e)) from None
        self._check_cluster()
        if self["reuse-port"]:
            _check_reuse_port(self["listen"] + self["listen-websocket"]
                              + ([self["web"]] if self["web"] is not None else []))
        # Only the default directory is created unasked: a mistyped
        # --data-dir must not silently become a new CA.
        self["create"] = self["data-dir"] is None or bool(self["init"])
        if self["data-dir"] is None:
            self["data-dir"] = default_data_dir()
        self["limits"] = Limits(**{field: self[name] for name, field, _, _ in LIMIT_OPTIONS})
        limits = self["limits"]
        if limits.queue_hard_limit <= limits.queue_soft_limit:
            raise usage.UsageError("--queue-hard-limit must be above --queue-soft-limit")
        if limits.max_handshake_frame < 4096:
            raise usage.UsageError("--max-handshake-frame must be at least 4096 (certificates)")
        if limits.max_letter > MAX_LETTER:
            raise usage.UsageError(f"--max-letter must be at most {MAX_LETTER} (clients refuse "
                                   "larger letters)")
        if limits.max_groups_per_user > MAX_GROUPS_PER_USER:
            raise usage.UsageError(f"--groups-per-user must be at most {MAX_GROUPS_PER_USER} (a "
                                   "user's GROUP_LIST must fit one record)")
        if limits.prekey_low_mark > limits.max_one_time_prekeys:
            raise usage.UsageError("--prekey-low-mark must be at most --max-one-time-prekeys")
        if not 1024 <= limits.max_frame <= MAX_CLIENT_FRAME:
            raise usage.UsageError(f"--max-frame must be from 1024 to {MAX_CLIENT_FRAME} (the largest "
                                   "frame clients accept from the relay)")
        # twistd's text log, the same lines for less CPU (unless --logger or
        # --syslog chose another observer): securechat.server.logtext.
        from securechat.server import logtext
        logtext.install(getattr(self, "parent", None))


    def _check_cluster(self) -> None:
        """--cluster and --process-id: checked now, so a mistake stops start-up."""
        if self["cluster"] is None:
            if self["process-id"] is not None:
                raise usage.UsageError("--process-id needs --cluster")
            return
        try:
            import txredisapi  # noqa: F401
        except ImportError:
            raise usage.UsageError("--cluster needs txredisapi: pip install "
                                   "'securechat[cluster]'") from None
        from securechat.server.cluster import (ClusterConfigError, check_process_id,
                                               default_process_id, parse_url)
        try:
            parse_url(self["cluster"])
            if self["process-id"] is None:
                self["process-id"] = default_process_id()
            check_process_id(self["process-id"])
        except ClusterConfigError as e:
            raise usage.UsageError(str(e)) from None


def _check_endpoint(description: str, option: str) -> None:
    """
    Refuse an endpoint string that does not parse.  (systemd: endpoints are
    checked when the service starts, since they need the inherited sockets.)
    """
    if description.startswith("systemd:"):
        return
    try:
        serverFromString(MemoryReactor(), description)
    except OSError as e:
        raise usage.UsageError(
            f"{option}: cannot read {e.filename or 'a file'} for {description!r}: {e.strerror}"
        ) from None
    except (ValueError, TypeError, KeyError, IndexError, SSLError) as e:
        raise usage.UsageError(f"{option}: bad endpoint {description!r}: {e}") from None


def _check_reuse_port(endpoints: list[str]) -> None:
    """
    Refuse C{--reuse-port} where it cannot do what it says: on a platform
    without Linux's SO_REUSEPORT, or with no endpoint it applies to.
    """
    from securechat.server.reuseport import ReusePortUnavailable, applies_to, reuse_port_option
    try:
        reuse_port_option()
    except ReusePortUnavailable as e:
        raise usage.UsageError(f"--reuse-port: {e}") from None
    if not any(applies_to(e) for e in endpoints):
        raise usage.UsageError(
            "--reuse-port applies to tcp:, tcp6: and ssl: endpoints, and none is given (a unix: "
            "path cannot be shared; a systemd: socket takes ReusePort= in its socket unit)")


def makeService(options: Options) -> IService:
    """
    The relay's service tree (see L{securechat.server.service.relay_service}).
    """
    from securechat.datafiles import CorruptDataDir, DataDirError
    from securechat.server.service import StartupError, relay_service

    from securechat.server.collector import CollectorTuning

    try:
        service = relay_service(
            options["data-dir"], options["listen"], options["metrics"], options["limits"],
            create=options["create"], allow_readable_keys=bool(options["allow-readable-keys"]),
            websocket=options["listen-websocket"], origins=options["websocket-origin"],
            web=options["web"], store=options["store"], cluster=options["cluster"],
            process_id=options["process-id"], presence_ttl=options["presence-ttl"],
            reuse_port=bool(options["reuse-port"]),
        )
    except (StartupError, CorruptDataDir, DataDirError) as e:
        sys.stderr.write(f"twistd securechat: error: {e}\n")
        raise SystemExit(1) from None
    if options["reuse-port"] and not options["cluster"]:
        Logger().warn(
            "--reuse-port: other relay processes may accept on this port too, and each knows "
            "only the users connected to it: users on different processes cannot reach each "
            "other (fine while a new process takes over from an old one)")
    # Started last: freezes what start-up made (securechat.server.collector).
    CollectorTuning().setServiceParent(service)
    return service
