# -*- test-case-name: tests.test_service -*-
"""
What the relay tells its operator at start-up: the hint that says how to add
a user and connect (with commands that work when copied), and what exactly
is missing when a C{systemd:} listener finds no inherited socket.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from typing import Mapping, Sequence

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

class StartupError(Exception):
    """
    The relay cannot start; the message says why in one sentence.
    """


#: The first descriptor a socket manager passes (sd_listen_fds(3)).
LISTEN_FDS_START = 3


def tool_command(script: str, module: str) -> str:
    """
    How to run one of securechat's tools from the installation that is
    running now: the console script beside the interpreter when it is there
    (a virtualenv's bin directory need not be on C{PATH}), else
    C{python -m MODULE} with this interpreter.
    """
    path = os.path.join(os.path.dirname(sys.executable), script)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return shlex.quote(path)
    return f"{shlex.quote(sys.executable)} -m {module}"


def _endpoint_host(host: str) -> str:
    return host.replace(":", "\\:")


def client_server_option(addresses: Sequence[object], names: Sequence[str]) -> str:
    """
    The C{--server} (and, when needed, C{--server-name}) options a client
    on this machine uses to reach the first listening address, given the
    names in the relay's certificate.
    """
    lowered = [n.lower() for n in names]
    for address in addresses:
        if isinstance(address, (IPv4Address, IPv6Address)):
            host = address.host
            if host in ("0.0.0.0", "::", ""):
                host = names[0] if names else "127.0.0.1"
            server = f"--server tcp:{_endpoint_host(host)}:{address.port}"
            if host.lower() not in lowered and names:
                server += f" --server-name {names[0]}"
            return server
        if isinstance(address, UNIXAddress) and address.name:
            name = address.name.decode() if isinstance(address.name, bytes) else address.name
            return f"--server unix:{name}" + (f" --server-name {names[0]}" if names else "")
    return "--server ENDPOINT" + (f" --server-name {names[0]}" if names else "")


def inherited_sockets(start: int = LISTEN_FDS_START) -> int:
    """
    How many consecutive descriptors from C{start} are sockets (what a
    socket manager passes).
    """
    count = 0
    while True:
        try:
            mode = os.fstat(start + count).st_mode
        except OSError:
            return count
        if not stat.S_ISSOCK(mode):
            return count
        count += 1


def systemd_problem(description: str, environ: Mapping[str, str], sockets: int) -> str:
    """
    Why C{--listen DESCRIPTION} (a C{systemd:} endpoint) found no socket.

    Twisted adopts inherited sockets only when the socket manager passes
    both C{LISTEN_FDS} and C{LISTEN_FDNAMES} (systemd always does, from
    C{FileDescriptorName=} or the socket unit's name), even for C{index=}.

    @param environ: the environment (C{LISTEN_FDNAMES} is left in it).
    @param sockets: how many inherited sockets there are
        (L{inherited_sockets}).
    """
    names = [n for n in environ.get("LISTEN_FDNAMES", "").split(":") if n]
    fields = dict(part.split("=", 1) for part in description.split(":")[1:] if "=" in part)
    if sockets and not names:
        return (f"--listen {description!r}: the socket manager passed {sockets} socket(s) but no "
                "names (LISTEN_FDNAMES), and Twisted adopts sockets only with their names: set "
                "FileDescriptorName= in the socket unit (systemd always passes names; "
                "systemd-socket-activate needs --fdname=NAME)")
    if not sockets:
        return (f"--listen {description!r}: no socket was passed to the relay (no LISTEN_FDS "
                "for this process): run it under socket activation (etc/securechat.socket) or "
                "listen on tcp:")
    if "name" in fields:
        return (f"--listen {description!r}: no socket named {fields['name']!r}; the socket "
                f"manager passed {', '.join(names)}")
    return (f"--listen {description!r}: the socket manager passed {len(names)} socket(s) "
            f"({', '.join(names)}); index= counts from 0")
