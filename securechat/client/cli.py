# -*- test-case-name: tests.test_client_cli -*-
"""
C{securechat-client}: connect to a relay and chat from the terminal.

Settings come from the command line, else from the config file
(C{$XDG_CONFIG_HOME/securechat/client.ini}, section C{[securechat]}, keys
named like the long options: C{server}, C{ca}, C{server-name}, C{user},
C{key}, C{passphrase-file}, C{known-peers}, C{pkcs11-module}), so daily use is
C{securechat-client} alone.  In a path, a leading C{~} is the user's home
and C{$VAR} or C{${VAR}} an environment variable (an unset one is refused,
named); an unknown key or section is refused, naming the closest valid key.
C{securechat-client --init-config} writes a commented example file
(L{securechat.client.config}).

On a terminal (standard input and output both one) the client runs the
full-screen interface (L{securechat.client.tui}); with piped input or
output, or C{--line}, the line mode (L{securechat.client.terminal}): one
line in, one line out, for scripts.

With C{--irc [ENDPOINT]} the client is a local IRC gateway instead
(L{securechat.client.irc}): any IRC client connects to it, on loopback,
with the password from C{--irc-password-file}.

The relay connection is retried after it drops, except when retrying cannot
help (L{is_final}): then the client exits with status 1 after one line
saying why.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import os
import sqlite3
import sys
from typing import Any, Sequence, TextIO

from cryptography import x509 as cx509

from securechat import __version__
from securechat.client.config import (  # noqa: F401 -- re-exported for callers
    EXAMPLE_CONFIG,
    KEYS,
    PATH_KEYS,
    ClientError,
    config_dir,
    expand_path,
    read_config,
    write_example_config,
)
from securechat.client.groupstore import GroupKeyStore
from securechat.client.letterstore import LetterStore
from securechat.client.pins import PinStore
from securechat.client.session import (  # noqa: F401 -- re-exported for callers
    FinalError,
    FrontEnd,
    RelayConnection,
    RelaySession,
    SessionFactory,
    explain,
    is_final,
)
from securechat.client.terminal import ChatTerminal
from securechat.crypto import keys
from securechat.crypto.signer import ExternalKey
from securechat.wire.messages import CertificateIdentity

PROG = "securechat-client"
IRC_DEFAULT_ENDPOINT = "tcp:6667:interface=127.0.0.1"

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Chat end to end through a securechat relay.  On a terminal it runs "
                    "full screen (a window per chat, a status bar; /help once connected); "
                    "with piped input or output, or --line, one line in, one line out "
                    "(!help once connected).",
        epilog=f"Defaults for every option may be put in {os.path.join(config_dir(), 'client.ini')}, "
               "section [securechat], keys named like the options without '--', e.g. "
               "'server = tcp:chat.example.org:7070'; an unknown key is refused.  A leading ~ in "
               "a path (there or on the command line) is your home directory, and $VAR an "
               "environment variable.  --init-config writes a commented example.",
    )
    p.add_argument("--config", help="config file [default: %(default)s]",
                   default=os.path.join(config_dir(), "client.ini"))
    p.add_argument("--server", help="the relay, as a Twisted client endpoint: tcp:HOST:PORT, "
                   "tls:HOST:PORT or ssl:HOST:PORT (TLS around the protocol, for a relay's ssl: "
                   "listener; its certificate is checked against --ca for --server-name), "
                   "unix:PATH [default: tcp:127.0.0.1:7070]")
    p.add_argument("--ca", help="the operator's CA certificate (ca/ca.pem in the relay's data directory)")
    p.add_argument("--server-name", help="name the relay's certificate must carry "
                   "[default: the host in --server, or localhost for unix:]")
    p.add_argument("--user", help="your user name")
    p.add_argument("--key", help="your private key: a PEM file, or a key on a smart card or "
                   "token as a PKCS#11 URI, 'pkcs11:token=LABEL;object=KEY' (the PIN is asked "
                   "for, or read from ?pin-source=file:PATH, or typed on the token's PIN pad)")
    p.add_argument("--pkcs11-module", help="the PKCS#11 module for a pkcs11: --key, e.g. "
                   "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so [default: module-path in the URI]")
    p.add_argument("--passphrase-file", help="file holding the key's passphrase "
                   "[default: ask on the terminal if the key is encrypted]")
    p.add_argument("--known-peers", help="pinned peer keys; seen_crls.json, the newest CRL seen from the "
                   "CA, letters-USER.sqlite3, your letters and prekeys, and groups-USER.sqlite3, your "
                   "groups' verified logs and keys (both mode 0600), are kept "
                   "beside it [default: known_peers beside the config file]")
    p.add_argument("--init-config", action="store_true",
                   help="write a commented example config file at --config (not over an "
                   "existing one) and exit")
    p.add_argument("--line", "--plain", action="store_true",
                   help="line mode even on a terminal: one line in, one line out, as with piped "
                   "input (the full-screen interface is the default on a terminal)")
    p.add_argument("--irc", nargs="?", metavar="ENDPOINT", const=IRC_DEFAULT_ENDPOINT,
                   help="run as a local IRC gateway instead of a terminal: irssi, WeeChat or any "
                   "IRC client connects to ENDPOINT (a Twisted server endpoint) [default: "
                   f"{IRC_DEFAULT_ENDPOINT}]; /msg USER TEXT chats, /msg securechat help lists "
                   "the rest")
    p.add_argument("--irc-password-file", help="with --irc: a file whose first line is the "
                   "password the IRC client must send (PASS); required")
    p.add_argument("--irc-allow-remote", action="store_true", help="with --irc: allow an "
                   "ENDPOINT other machines can reach (refused otherwise)")
    p.add_argument("--irc-accept-pinned", action="store_true", help="with --irc: accept chat "
                   "requests at once from users whose key is already pinned")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def settings(argv: Sequence[str]) -> dict[str, Any]:
    """
    The merged settings: command line over config file over defaults.
    """
    args = parser().parse_args(argv)
    args.config = expand_path(args.config, "config")
    merged: dict[str, Any] = {}
    if os.path.exists(args.config):
        merged.update(read_config(args.config))
    for name in KEYS:
        value = getattr(args, name.replace("-", "_"))
        if value is not None:
            merged[name] = value
    merged["line"] = bool(args.line)
    merged["irc"] = args.irc
    merged["irc-allow-remote"] = bool(args.irc_allow_remote)
    merged["irc-accept-pinned"] = bool(args.irc_accept_pinned)
    merged.setdefault("server", "tcp:127.0.0.1:7070")
    merged.setdefault("known-peers", os.path.join(os.path.dirname(args.config), "known_peers"))
    for required in ("ca", "user", "key"):
        if not merged.get(required):
            raise ClientError(f"--{required} is required (or set it in {args.config})")
    if not merged.get("server-name"):
        merged["server-name"] = server_host(merged["server"])
    for name in PATH_KEYS:
        if merged.get(name):
            merged[name] = expand_path(merged[name], name)
    return merged


def server_host(endpoint: str) -> str:
    """
    The host an endpoint string connects to (for the certificate name).
    """
    kind, _, rest = endpoint.partition(":")
    if kind in ("unix",):
        return "localhost"
    parts = rest.split(":")
    for part in parts:
        if part.startswith("host="):
            return part[5:]
    positional = [p for p in parts if "=" not in p]
    if positional:
        return positional[0].strip("[]")
    raise ClientError(f"cannot tell the server's name from {endpoint!r}: give --server-name")


def read_private_key(path: str, passphrase_file: str | None, stdin: TextIO) -> keys.PrivateKey:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ClientError(f"cannot read the key {path}: {e.strerror}") from None
    passphrase: bytes | None = None
    if passphrase_file:
        try:
            with open(passphrase_file, "rb") as f:
                passphrase = f.read().rstrip(b"\r\n")
        except OSError as e:
            raise ClientError(f"cannot read the passphrase file {passphrase_file}: {e.strerror}") from None
    elif b"ENCRYPTED" in data:
        if not stdin.isatty():
            raise ClientError(f"{path} is encrypted: give --passphrase-file (standard input is not a terminal)")
        passphrase = getpass.getpass(f"passphrase for {path}: ").encode("utf-8")
    try:
        return keys.load_private_key(data, passphrase)
    except keys.WrongPassphrase as e:
        raise ClientError(f"{path}: {e}") from None
    except keys.KeyFormatError as e:
        raise ClientError(f"{path}: {e}") from None


def read_key(conf: dict[str, Any], stdin: TextIO,
             say: Any = None) -> keys.PrivateKey | ExternalKey:
    """
    The user's key: a PEM file (L{read_private_key}), or a key on a token
    when C{--key} is a PKCS#11 URI (logged in now, its public key read and
    its mechanism checked, so that any problem is told before connecting).
    """
    from securechat.p11uri import is_pkcs11_uri

    where = conf["key"]
    if not is_pkcs11_uri(where):
        if conf.get("pkcs11-module"):
            raise ClientError("--pkcs11-module is only for a key on a token (--key pkcs11:...)")
        return read_private_key(where, conf.get("passphrase-file"), stdin)
    from securechat.token import TokenError, open_key

    def warn(line: str) -> None:
        (say or (lambda text: sys.stderr.write(text + "\n")))(f"{PROG}: {line}")

    prompt = None
    if stdin.isatty():
        def prompt(text: str) -> str:
            return getpass.getpass(text)
    try:
        key = open_key(where, conf.get("pkcs11-module"), prompt, warn)
    except TokenError as e:
        raise ClientError(str(e)) from None
    warn(f"signing with {key.describe()}, fingerprint {keys.fingerprint(key.public_key())} "
         "(it must be the key registered for you)")
    return key


def read_ca(path: str) -> cx509.Certificate:
    try:
        with open(path, "rb") as f:
            return cx509.load_pem_x509_certificate(f.read())
    except OSError as e:
        raise ClientError(f"cannot read the CA certificate {path}: {e.strerror}") from None
    except ValueError as e:
        raise ClientError(f"{path} is not a PEM certificate: {e}") from None


def crl_state_path(known_peers: str) -> str:
    """
    Where the client remembers the CAs' CRLs: C{seen_crls.json} beside the
    known-peers file.
    """
    return os.path.join(os.path.dirname(os.path.abspath(known_peers)), "seen_crls.json")


def groups_path(known_peers: str, user: str) -> str:
    """The user's group file (verified change logs, sender chains), beside the letters file."""
    return os.path.join(os.path.dirname(os.path.abspath(known_peers)), f"groups-{user}.sqlite3")


def letters_path(known_peers: str, user: str) -> str:
    """
    The user's letters file (prekeys' private halves, letters): beside the
    known-peers file, named for the user, so two users never share one.
    """
    return os.path.join(os.path.dirname(os.path.abspath(known_peers)), f"letters-{user}.sqlite3")


def make_server_verifier(ca: cx509.Certificate, server_name: str, now: Any = None,
                         crls: Any = None) -> Any:
    """
    A L{securechat.client.core.ServerVerifier} checking the relay's chain
    and stapled CRL against C{ca} for C{server_name}, refusing a CRL older
    than one C{crls} (a L{securechat.client.crlstate.CrlStore}) remembers
    and remembering every newer one (docs/protocol.rst, section 9).
    """
    from securechat.crypto.x509 import CertificateError, SeenCrl, ca_fingerprint, check_server_identity
    from securechat.delegate import PeerRejected

    fingerprint = ca_fingerprint(ca)

    def remember(seen: SeenCrl) -> str:
        if crls is None:
            return ""
        try:
            crls.remember(fingerprint, seen)
        except OSError as e:
            return f"cannot record the relay's CRL in {crls.path}: {e.strerror} [crl-memory]"
        except ValueError as e:  # CorruptCrlState: damaged since the client started
            return f"cannot record the relay's CRL: {e} [crl-memory]"
        return ""

    def verify(identity: CertificateIdentity) -> keys.PublicKey:
        when = now() if now is not None else datetime.datetime.now(datetime.timezone.utc)
        seen = crls.seen(fingerprint) if crls is not None else None
        try:
            result = check_server_identity(list(identity.chain), identity.crl, ca, server_name, when, seen)
        except CertificateError as e:
            problem = remember(e.seen) if e.seen is not None else ""
            raise PeerRejected("bad-certificate", f"{e} [{e.code}]" + (f"; {problem}" if problem else "")) from None
        problem = remember(result.seen)
        if problem:  # fail closed: an unrecorded CRL could be rolled back later
            raise PeerRejected("bad-certificate", problem)
        return result.public_key
    return verify


def irc_setup(conf: dict[str, Any]) -> bytes | None:
    """
    For C{--irc}: check the listener and the user, and read the password
    (L{securechat.client.irc.listen}); None without C{--irc}.
    """
    if not conf.get("irc"):
        return None
    from securechat.client.irc.listen import check_local, check_user, read_password

    check_local(conf["irc"], conf.get("irc-allow-remote", False))
    check_user(conf["user"])
    return read_password(conf.get("irc-password-file"))


def wants_full_screen(conf: dict[str, Any], stdin: TextIO, stdout: TextIO) -> bool:
    """
    Whether to run the full-screen interface: standard input and output
    are both a terminal, and C{--line} was not given.  Piped input or
    output keeps the line mode, which scripts and tests use.
    """
    return not conf.get("line") and stdin.isatty() and stdout.isatty()


def run(reactor: Any, argv: Sequence[str]) -> Any:
    """
    Connect and chat until !exit or end of input; the Deferred's result is
    the exit status.
    """
    from cryptography.hazmat.primitives.serialization import Encoding
    from twisted.application.internet import ClientService, backoffPolicy
    from twisted.internet import stdio
    from twisted.internet.defer import Deferred, succeed

    from securechat.client.crlstate import CorruptCrlState, CrlStore
    from securechat.client.endpoint import relay_endpoint
    from securechat.client.pins import CorruptPinFile
    from securechat.wire.names import BadUserName, check_user_name

    args = parser().parse_args(argv)
    if args.init_config:
        try:
            path = expand_path(args.config, "config")
            write_example_config(path)
        except ClientError as e:
            raise SystemExit(f"{PROG}: error: {e}") from None
        sys.stdout.write(f"wrote an example config file to {path}; edit it, then run {PROG}\n")
        return succeed(0)
    try:
        conf = settings(argv)
        check_user_name(conf["user"])
        irc_password = irc_setup(conf)
        ca = read_ca(conf["ca"])
        private_key = read_key(conf, sys.stdin)
        pins = PinStore(conf["known-peers"])
        crls = CrlStore(crl_state_path(conf["known-peers"]))
        letters = LetterStore(letters_path(conf["known-peers"], conf["user"]))
        groups = GroupKeyStore(groups_path(conf["known-peers"], conf["user"]))
        endpoint = relay_endpoint(reactor, conf["server"], ca.public_bytes(Encoding.PEM),
                                  conf["server-name"])
    except (ClientError, BadUserName, CorruptPinFile, CorruptCrlState) as e:
        raise SystemExit(f"{PROG}: error: {e}") from None
    except sqlite3.Error as e:
        raise SystemExit(f"{PROG}: error: the letters file beside the known-peers file: {e}") from None
    except ValueError as e:
        raise SystemExit(f"{PROG}: error: bad --server {conf['server']!r}: {e}") from None

    done: Deferred[int] = Deferred()
    stopping: list[int] = []
    verify = make_server_verifier(ca, conf["server-name"], crls=crls)
    def write(text: str) -> None:
        # Synchronous, so a last line before exiting is never lost.
        sys.stdout.write(text)
        sys.stdout.flush()

    full_screen = irc_password is None and wants_full_screen(conf, sys.stdin, sys.stdout)
    terminal: FrontEnd
    screen: Any = None
    gateway: Any = None
    if irc_password is not None:
        from securechat.client.irc.gateway import IrcGateway

        terminal = gateway = IrcGateway(conf["user"], conf["irc-accept-pinned"],
                                        log_line=lambda line: write(line + "\n"))
    elif full_screen:
        from securechat.client.tui.app import ScreenLoop
        from securechat.client.tui.view import FullScreen as FullScreen

        view = FullScreen(conf["user"], conf["server"], on_exit=lambda: finish(0),
                          on_abort=lambda: abort())
        screen = ScreenLoop(view, reactor)
        terminal = view
    else:
        terminal = ChatTerminal(write=write, on_exit=lambda: finish(0))
    service: ClientService

    def finish(status: int) -> None:
        # Called from inside the service's own callbacks: stop it on the
        # next turn, not re-entrantly.
        reactor.callLater(0, stop, status)

    def stop(status: int) -> None:
        if done.called or stopping:
            return
        stopping.append(status)
        d = service.stopService()
        d.addBoth(lambda _: None if done.called else done.callback(status))

    def abort() -> None:
        # A second Ctrl-C: leave now, without waiting for the relay.
        if not done.called:
            done.callback(130)

    def restore_terminal(status: int) -> int:
        # Leave the full screen first; then repeat the last status lines
        # (why the client gave up) where the shell shows them.
        if screen is not None:
            screen.stop()
            if status:
                for line in screen.view.windows.status.lines[-3:]:
                    write(line.prefix + line.body + "\n")
        return status
    done.addCallback(restore_terminal)

    factory = SessionFactory(reactor, conf["user"], private_key, terminal, verify, pins,
                             finish, letters, groups)
    backoff = backoffPolicy(1.0, 30.0)

    def retry_policy(attempt: int) -> float:
        # The full screen's bar says when the next attempt comes.
        delay = backoff(attempt)
        if screen is not None:
            screen.view.retrying_in(delay)
        return delay
    service = ClientService(endpoint, factory, retryPolicy=retry_policy)
    if screen is not None:
        screen.start()
    service.startService()
    if gateway is not None and irc_password is not None:
        from securechat.client.irc.listen import listen

        def listening(port: Any) -> None:
            host = port.getHost()
            where = f"{host.host}:{host.port}" if hasattr(host, "port") else conf["irc"]
            write(f"* IRC gateway for {conf['user']} listening on {where}; connect your IRC "
                  "client there with the password from the password file\n")

        def cannot_listen(failure: Any) -> None:
            write(f"{PROG}: error: cannot listen for IRC on {conf['irc']}: "
                  f"{failure.getErrorMessage()}\n")
            finish(1)
        listen(reactor, conf["irc"], gateway, irc_password).addCallbacks(listening, cannot_listen)
        reactor.addSystemEventTrigger("before", "shutdown", gateway.shutdown, reactor)
    elif screen is None:
        stdio.StandardIO(terminal, reactor=reactor)

    first = service.whenConnected(failAfterFailures=1)

    def unreachable(failure: Any) -> None:
        terminal.say(f"! cannot reach the relay at {conf['server']}: {failure.getErrorMessage()}")
        terminal.login_abandoned()
        finish(1)
    first.addErrback(unreachable)
    return done


def main(argv: Sequence[str] | None = None) -> None:
    from twisted.internet.task import react

    def go(reactor: Any) -> Any:
        d = run(reactor, sys.argv[1:] if argv is None else argv)

        def status(code: int) -> None:
            if code:
                raise SystemExit(code)
        return d.addCallback(status)
    react(go)
