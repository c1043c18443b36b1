# -*- test-case-name: tests.test_irc_listen -*-
"""
C{securechat-client --irc [ENDPOINT]}: where the gateway listens for the
IRC client, and who may use it.

  - ENDPOINT is any Twisted server endpoint string; the default,
    C{tcp:6667:interface=127.0.0.1}, is port 6667 on 127.0.0.1 only.  A listener that
    could be reached from another machine (a C{tcp:} or C{ssl:} endpoint
    whose C{interface} is not a loopback address, or any kind whose
    reach cannot be told from the string) is refused unless
    C{--irc-allow-remote} is given; C{unix:} is local.
  - The IRC client must send the gateway's password (C{PASS}), read from
    C{--irc-password-file} (its first line), so that other users of the
    machine cannot use the gateway; the gateway does not start without it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory

from securechat.client.config import ClientError
from securechat.client.irc.connection import IrcConnection
from securechat.client.irc.gateway import IrcGateway
from securechat.client.irc.text import SERVICE

_LOCAL_KINDS = frozenset({"unix"})
_NETWORK_KINDS = frozenset({"tcp", "tcp6", "ssl"})


def _fields(description: str) -> list[str]:
    # Twisted's syntax: fields split at ':' not escaped by '\'.
    return [re.sub(r"\\(.)", r"\1", f) for f in re.split(r"(?<!\\):", description)]


def check_local(description: str, allow_remote: bool = False) -> None:
    """
    Refuse (L{ClientError}) an endpoint another machine could reach,
    unless C{allow_remote}.
    """
    if allow_remote:
        return
    kind, *rest = _fields(description)
    kind = kind.lower()
    if kind in _LOCAL_KINDS:
        return
    if kind not in _NETWORK_KINDS:
        raise ClientError(f"cannot tell whether --irc {description!r} is reachable only from "
                          "this machine; use tcp:PORT:interface=127.0.0.1 or unix:PATH, or "
                          "--irc-allow-remote")
    interface = ""
    for field in rest:
        if field.startswith("interface="):
            interface = field[len("interface="):]
    if interface.lower() == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(interface).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        where = f"interface {interface}" if interface else "every interface"
        raise ClientError(f"--irc {description!r} would listen on {where}, reachable from other "
                          "machines; add interface=127.0.0.1 (or ::1), or give "
                          "--irc-allow-remote if you mean it")


def read_password(path: str | None) -> bytes:
    """The gateway's password: the first line of C{path}, not empty."""
    if not path:
        raise ClientError("--irc needs --irc-password-file: a file whose first line is the "
                          "password your IRC client sends (PASS)")
    try:
        with open(path, "rb") as f:
            first = f.readline().rstrip(b"\r\n")
    except OSError as e:
        raise ClientError(f"cannot read the IRC password file {path}: {e.strerror}") from None
    if not first:
        raise ClientError(f"the IRC password file {path} is empty; put the password on its "
                          "first line")
    return first


def check_user(user: str) -> None:
    """The user named like the service nick cannot run a gateway."""
    if user == SERVICE:
        raise ClientError(f"the user name {SERVICE!r} is the gateway's service nick; the IRC "
                          "gateway cannot run for it")


class IrcFactory(Factory):
    """One L{IrcConnection} per IRC client, all reporting to one gateway."""

    def __init__(self, gateway: IrcGateway, password: bytes) -> None:
        self.gateway = gateway
        self.password = password

    def buildProtocol(self, addr: Any) -> IrcConnection:
        return IrcConnection(self.gateway, self.password)


def listen(reactor: Any, description: str, gateway: IrcGateway, password: bytes) -> Any:
    """Start listening; a Deferred firing with the L{IListeningPort}."""
    endpoint = serverFromString(reactor, description)
    d = endpoint.listen(IrcFactory(gateway, password))

    def listening(port: IListeningPort) -> IListeningPort:
        return port
    return d.addCallback(listening)
