# -*- test-case-name: tests.test_client_cli -*-
"""
How C{securechat-client} reaches the relay.

C{--server} is a Twisted client endpoint string.  C{tls:HOST:PORT} and
C{ssl:HOST:PORT} (TLS around the protocol, for a relay listening on an
C{ssl:} endpoint) verify the relay's TLS certificate against the operator's
CA, the same C{--ca} file that checks the relay inside the protocol, and
for the same name (C{--server-name}): the relay's TLS certificate is the
server certificate of its data directory.  A string that names its own
trust roots (C{trustRoots=DIR} for C{tls:}, C{caCertsDir=DIR} for C{ssl:})
is handed to Twisted unchanged; every other kind (C{tcp:}, C{unix:}, ...)
too.

L{RelayTLS} is the TLS client configuration: OpenSSL checks the chain to
the CA (Twisted's L{CertificateOptions}), then C{service_identity} checks
the name, as Twisted's own C{optionsForClientTLS} does, and it remembers
why a check failed.  When TLS ends the connection, L{describe_tls_failure}
turns that into one line (C{TLS: certificate verify failed: ...}) instead
of the bare "connection lost" the protocol would otherwise see.
"""

from __future__ import annotations

import datetime
import weakref
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import HostnameEndpoint, clientFromString, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, CertificateOptions
from twisted.python.failure import Failure
from zope.interface import implementer

#: Endpoint kinds that put TLS around the protocol.
TLS_KINDS = ("tls", "ssl")
#: Options with which the user chose the trust roots themselves.
TRUST_OPTIONS = ("trustRoots", "caCertsDir")
#: Options understood when the CA comes from C{--ca}.
PLAIN_OPTIONS = ("host", "port", "timeout", "bindAddress")

#: OpenSSL's X509_V_ERR_* codes that need no certificate to explain.
_VERIFY_ERRORS = {
    7: "certificate signature failure",
    23: "certificate revoked",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
}
#: Why TLS refused the relay, per TLS connection (kept by L{RelayTLS}).
_REFUSALS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


@implementer(IOpenSSLClientConnectionCreator)
class RelayTLS:
    """
    TLS to the relay: the chain must lead to C{ca_pem}, the certificate
    must be for C{server_name} (a DNS name or an IP address).
    """

    def __init__(self, ca_pem: bytes, server_name: str) -> None:
        self.ca = x509.load_pem_x509_certificate(ca_pem)
        self.server_name = server_name
        self.is_ip = isIPAddress(server_name) or isIPv6Address(server_name)
        self._context = CertificateOptions(trustRoot=Certificate.loadPEM(ca_pem)).getContext()

    def clientConnectionForTLS(self, tls: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tls)
        if not self.is_ip:
            connection.set_tlsext_host_name(self.server_name.encode("idna"))
        protocol = weakref.ref(tls)

        def verify(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
            current = protocol()
            leaf = cert.to_cryptography()
            if not ok:
                if current is not None and current not in _REFUSALS:
                    _REFUSALS[current] = self._why(errno, leaf)
                return False
            if depth != 0:
                return True
            try:
                if self.is_ip:
                    verify_certificate_ip_address(leaf, self.server_name)
                else:
                    verify_certificate_hostname(leaf, self.server_name)
            except VerificationError:
                if current is not None:
                    _REFUSALS[current] = (f"the relay's TLS certificate is not for "
                                          f"{self.server_name}")
                    current.failVerification(Failure())
                return False
            return True
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        return connection

    def _why(self, errno: int, cert: x509.Certificate) -> str:
        if errno in _VERIFY_ERRORS:
            return _VERIFY_ERRORS[errno]
        return why_unverified(cert, self.ca, errno)

def split_description(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    An endpoint string's kind, positional arguments and options, with
    Twisted's backslash escapes (C{\\:}, C{\\=}) undone.
    """
    fields: list[str] = []
    current: list[str] = []
    chars = iter(description)
    for char in chars:
        if char == "\\":
            current.append("\\" + next(chars, ""))
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    kind, args, options = fields[0], [], {}
    for field in fields[1:]:
        name, sep, value = _split_unescaped(field)
        if sep:
            options[_unescape(name)] = _unescape(value)
        else:
            args.append(_unescape(field))
    return kind, args, options


def _split_unescaped(field: str) -> tuple[str, str, str]:
    at = 0
    while at < len(field):
        if field[at] == "\\":
            at += 2
            continue
        if field[at] == "=":
            return field[:at], "=", field[at + 1:]
        at += 1
    return field, "", ""


def _unescape(text: str) -> str:
    out, chars = [], iter(text)
    for char in chars:
        out.append(next(chars, "") if char == "\\" else char)
    return "".join(out)


def relay_endpoint(reactor: Any, description: str, ca_pem: bytes, server_name: str
                   ) -> IStreamClientEndpoint:
    """
    The endpoint for C{--server C{description}}; for C{tls:} and C{ssl:}
    without trust options, TLS verified against C{ca_pem} for
    C{server_name}.  Raises L{ValueError} for a string it cannot use.
    """
    kind, args, options = split_description(description)
    if kind.lower() not in TLS_KINDS or any(name in options for name in TRUST_OPTIONS):
        return clientFromString(reactor, description)
    unknown = [name for name in options if name not in PLAIN_OPTIONS]
    if unknown:
        raise ValueError(f"{kind}: option {unknown[0]}= needs trust roots of your own "
                         f"({'trustRoots' if kind.lower() == 'tls' else 'caCertsDir'}=DIR); "
                         f"without them, {kind}: takes only {', '.join(PLAIN_OPTIONS)}")
    host = options.get("host") or (args[0] if args else "")
    port = options.get("port") or (args[1] if len(args) > 1 else "")
    if not host or not port.isdigit() or len(args) > 2:
        raise ValueError(f"write it as {kind}:HOST:PORT")
    timeout = options.get("timeout", "30")
    if not timeout.isdigit():
        raise ValueError(f"{kind}: timeout must be a number of seconds")
    bind = options.get("bindAddress")
    creator = RelayTLS(ca_pem, server_name)
    host_bytes = host.encode("ascii") if ":" in host else host.encode("idna")
    tcp = HostnameEndpoint(reactor, host_bytes, int(port), timeout=int(timeout),
                           bindAddress=(bind, 0) if bind else None)
    return wrapClientTLS(creator, tcp, clock=reactor)


def describe_tls_failure(reason: Failure, transport: Any) -> str | None:
    """
    One line for a connection that TLS ended (C{transport} is the TLS
    layer under the protocol), or None if C{reason} is not a TLS failure.
    """
    if not reason.check(SSL.Error, VerificationError):
        return None
    refusal = _REFUSALS.get(transport) if transport is not None else None
    if refusal is not None:
        return f"TLS: certificate verify failed: {refusal}"
    if reason.check(VerificationError):
        return "TLS: certificate verify failed"
    texts = [str(item[-1]) for item in (reason.value.args[0] if reason.value.args else [])
             if isinstance(item, tuple) and item]
    return "TLS: " + ("; ".join(texts) or "handshake failed")


def why_unverified(cert: x509.Certificate, ca: x509.Certificate, errno: int) -> str:
    """
    Why OpenSSL refused C{cert} (a certificate of the relay's chain) with
    C{errno} when checking it against C{ca}.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    if now > cert.not_valid_after_utc:
        return f"the relay's TLS certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    if now < cert.not_valid_before_utc:
        return f"the relay's TLS certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return (f"the relay's TLS certificate (issuer {cert.issuer.rfc4514_string()}) is not "
                f"issued by the CA given with --ca ({ca.subject.rfc4514_string()})")
    return f"X.509 verify error {errno}"
