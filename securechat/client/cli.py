# -*- test-case-name: tests.test_client_cli -*-
"""
C{securechat-client}: connect to a relay and chat from the terminal.

Settings come from the command line, else from the config file
(C{$XDG_CONFIG_HOME/securechat/client.ini}, section C{[securechat]}, keys
named like the long options: C{server}, C{ca}, C{server-name}, C{user},
C{key}, C{passphrase-file}, C{known-peers}), so daily use is
C{securechat-client} alone.
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import getpass
import os
import sys
from typing import Any, Sequence, TextIO

from cryptography import x509 as cx509

from securechat.crypto import keys
from securechat.wire.messages import CertificateIdentity

PROG = "securechat-client"


class ClientError(Exception):
    """
    A problem the user can fix; shown as one line.
    """


def config_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "securechat")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Chat end to end through a securechat relay.  Type !help once connected.",
        epilog=f"Defaults for every option may be put in {os.path.join(config_dir(), 'client.ini')}, "
               "section [securechat], e.g. 'server = tcp:chat.example.org:7070'.",
    )
    p.add_argument("--config", help="config file [default: %(default)s]",
                   default=os.path.join(config_dir(), "client.ini"))
    p.add_argument("--server", help="the relay, as a Twisted client endpoint: tcp:HOST:PORT, "
                   "tls:HOST:PORT (TLS outside the protocol), unix:PATH [default: tcp:127.0.0.1:7070]")
    p.add_argument("--ca", help="the operator's CA certificate (ca/ca.pem in the relay's data directory)")
    p.add_argument("--server-name", help="name the relay's certificate must carry "
                   "[default: the host in --server, or localhost for unix:]")
    p.add_argument("--user", help="your user name")
    p.add_argument("--key", help="your private key (PEM)")
    p.add_argument("--passphrase-file", help="file holding the key's passphrase "
                   "[default: ask on the terminal if the key is encrypted]")
    p.add_argument("--known-peers", help="pinned peer keys [default: known_peers beside the config file]")
    return p


def settings(argv: Sequence[str]) -> dict[str, Any]:
    """
    The merged settings: command line over config file over defaults.
    """
    args = parser().parse_args(argv)
    merged: dict[str, Any] = {}
    if os.path.exists(args.config):
        cp = configparser.ConfigParser()
        try:
            cp.read(args.config, encoding="utf-8")
        except configparser.Error as e:
            raise ClientError(f"cannot read {args.config}: {e}") from None
        if cp.has_section("securechat"):
            merged.update({k.replace("_", "-"): v for k, v in cp.items("securechat")})
    for name in ("server", "ca", "server-name", "user", "key", "passphrase-file", "known-peers"):
        value = getattr(args, name.replace("-", "_"))
        if value is not None:
            merged[name] = value
    merged.setdefault("server", "tcp:127.0.0.1:7070")
    merged.setdefault("known-peers", os.path.join(os.path.dirname(args.config), "known_peers"))
    for required in ("ca", "user", "key"):
        if not merged.get(required):
            raise ClientError(f"--{required} is required (or set it in {args.config})")
    if not merged.get("server-name"):
        merged["server-name"] = server_host(merged["server"])
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


def read_ca(path: str) -> cx509.Certificate:
    try:
        with open(path, "rb") as f:
            return cx509.load_pem_x509_certificate(f.read())
    except OSError as e:
        raise ClientError(f"cannot read the CA certificate {path}: {e.strerror}") from None
    except ValueError as e:
        raise ClientError(f"{path} is not a PEM certificate: {e}") from None


def make_server_verifier(ca: cx509.Certificate, server_name: str, now: Any = None) -> Any:
    """
    A L{securechat.client.core.ServerVerifier} checking the relay's chain
    and stapled CRL against C{ca} for C{server_name}.
    """
    from securechat.crypto.x509 import CertificateError, verify_server_identity
    from securechat.protocol import PeerRejected

    def verify(identity: CertificateIdentity) -> keys.PublicKey:
        when = now() if now is not None else datetime.datetime.now(datetime.timezone.utc)
        try:
            return verify_server_identity(list(identity.chain), identity.crl, ca, server_name, when)
        except CertificateError as e:
            raise PeerRejected("bad-certificate", f"{e} [{e.code}]") from None
    return verify


def is_final(error: Any) -> bool:
    """
    Whether the relay connection ended in a way reconnecting cannot fix:
    the login refused, access revoked, the session replaced by another
    login, or a relay that is not the one configured.
    """
    from securechat.errors import Alert, PeerAlert

    if isinstance(error, PeerAlert):
        return error.peer_alert in (Alert.HANDSHAKE_FAILED, Alert.ACCESS_REVOKED,
                                    Alert.SESSION_REPLACED, Alert.UNSUPPORTED_VERSION)
    return error.code in ("bad-certificate", "wrong-identity-kind", "bad-signature",
                          "bad-handshake-record")


def run(reactor: Any, argv: Sequence[str]) -> Any:
    """
    Connect and chat until !exit or end of input; the Deferred's result is
    the exit status.
    """
    from twisted.application.internet import ClientService, backoffPolicy
    from twisted.internet import stdio
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import clientFromString
    from twisted.internet.protocol import Factory

    from securechat.client.core import ChatClient
    from securechat.client.pins import CorruptPinFile, PinStore
    from securechat.client.terminal import ChatTerminal
    from securechat.crypto.handshake import CLIENT_SERVER, Config, Role
    from securechat.protocol import SecureChatProtocol
    from securechat.wire.messages import UserIdentity
    from securechat.wire.names import BadUserName, check_user_name
    from securechat.wire.relay import FROM_SERVER

    try:
        conf = settings(argv)
        check_user_name(conf["user"])
        ca = read_ca(conf["ca"])
        private_key = read_private_key(conf["key"], conf.get("passphrase-file"), sys.stdin)
        pins = PinStore(conf["known-peers"])
        endpoint = clientFromString(reactor, conf["server"])
    except (ClientError, BadUserName, CorruptPinFile) as e:
        raise SystemExit(f"{PROG}: error: {e}") from None
    except ValueError as e:
        raise SystemExit(f"{PROG}: error: bad --server {conf['server']!r}: {e}") from None

    done: Deferred[int] = Deferred()
    stopping: list[int] = []
    verify = make_server_verifier(ca, conf["server-name"])
    def write(text: str) -> None:
        # Synchronous, so a last line before exiting is never lost.
        sys.stdout.write(text)
        sys.stdout.flush()

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

    class Session(ChatClient):
        def connection_ended(self, reason: Any) -> None:
            super().connection_ended(reason)
            if terminal.exiting:
                return
            final = reason is not None and is_final(reason)
            if terminal.input_ended or (final and not terminal.was_logged_in):
                # Refused, or a script whose input has ended, which cannot
                # wait for a reconnection: what was not run is said.
                terminal.login_abandoned()
                finish(1 if reason is not None or not terminal.was_logged_in else 0)
                return
            if reason is None:
                return
            if final:
                finish(1)  # refused, revoked, replaced, or not the right relay
            else:
                terminal.say("* reconnecting...")

    class SessionFactory(Factory):
        def buildProtocol(self, addr: Any) -> SecureChatProtocol:
            client = Session(conf["user"], private_key, terminal, verify, pins)
            terminal.client = client
            config = Config(CLIENT_SERVER, Role.INITIATOR, private_key, UserIdentity(conf["user"]),
                            registry=FROM_SERVER)
            return SecureChatProtocol(config, client, reactor, handshake_timeout=30,
                                      idle_timeout=None)

    service = ClientService(endpoint, SessionFactory(), retryPolicy=backoffPolicy(1.0, 30.0))
    service.startService()
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
