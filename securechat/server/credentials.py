# -*- test-case-name: tests.test_service_credentials -*-
"""
The relay's own credentials (its key, certificate chain and the CRL it
staples) as read from the data directory, checked with the verifier
clients use (L{securechat.crypto.x509.check_relay_credentials}), and the
one line that tells the operator what clients would refuse and what to run.
L{securechat.server.service} decides when to read them.
"""

from __future__ import annotations

import datetime

from securechat.crypto.x509 import CertificateError, check_relay_credentials
from securechat.datadir import DataDir
from securechat.server.relay import ServerCredentials
from securechat.server.startup import StartupError
from securechat.wire.messages import CertificateIdentity


#: What the operator does about each way the relay's own credentials fail.
_REMEDIES = {
    "revoked": "run `securechat-admin rotate-server-cert`",
    "expired": "run `securechat-admin rotate-server-cert`",
    "not-yet-valid": "check the clock, or run `securechat-admin rotate-server-cert`",
    "crl-expired": "run `securechat-admin refresh-crl`",
    "crl-not-yet-valid": "check the clock, or run `securechat-admin refresh-crl`",
}


#: How long before its CRL (or certificate) goes out of date the relay warns.
EXPIRY_WARNING = datetime.timedelta(days=3)


def _wall_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def valid_until(credentials: ServerCredentials) -> tuple[datetime.datetime, str]:
    """
    When clients start refusing C{credentials} by the clock alone, and
    what the operator runs before then: the CRL's nextUpdate
    (C{refresh-crl}) or the certificate's notAfter (C{rotate-server-cert}),
    whichever comes first.
    """
    from cryptography import x509
    leaf = x509.load_der_x509_certificate(credentials.identity.chain[0])
    next_update = x509.load_der_x509_crl(credentials.identity.crl).next_update_utc
    if next_update is not None and next_update < leaf.not_valid_after_utc:
        return next_update, "the relay's CRL goes out of date at {when}: run `securechat-admin refresh-crl`"
    return leaf.not_valid_after_utc, ("the relay's certificate expires at {when}: run "
                                      "`securechat-admin rotate-server-cert`")


def describe_credentials(credentials: ServerCredentials) -> str:
    """
    Which certificate and CRL C{credentials} are, as C{securechat-admin}
    names them: the certificate's serial (hexadecimal) and the CRL's number.
    """
    from cryptography import x509
    leaf = x509.load_der_x509_certificate(credentials.identity.chain[0])
    crl = x509.load_der_x509_crl(credentials.identity.crl)
    try:
        number = str(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        number = "none"
    return f"certificate serial {leaf.serial_number:x}, CRL number {number}"


def read_credentials(data: DataDir, now: datetime.datetime
                     ) -> tuple[ServerCredentials, CertificateError | None]:
    """
    The relay's credentials from C{data}, and why clients would refuse
    them (or C{None}): the same checks a client makes.

    @raise CorruptDataDir: a file is missing, unreadable, or the key is not
        the certificate's.
    """
    creds = data.relay_credentials()
    identity = CertificateIdentity(tuple(creds.chain), creds.crl)
    try:
        check_relay_credentials(creds.private_key, creds.chain, creds.crl, creds.ca, now,
                                len(identity.encode()))
    except CertificateError as e:
        return ServerCredentials(creds.private_key, identity), e
    return ServerCredentials(creds.private_key, identity), None


def describe_credential_problem(data: DataDir, error: CertificateError) -> str:
    """
    One line for the operator: what clients would say, and what to do.
    """
    if error.code == "too-large":
        remedy = ""  # the error says what to do
    else:
        remedy = "; " + _REMEDIES.get(
            error.code, f"{data.server_cert_path} must hold a certificate issued by the CA in "
            f"{data.ca_cert_path} (and at most a copy of the CA after it): run "
            "`securechat-admin rotate-server-cert`")
    return (f"every client would refuse the relay's certificate ({data.server_cert_path}, "
            f"{data.crl_path}): {error} [{error.code}]{remedy}")


def load_credentials(data: DataDir, now: datetime.datetime | None = None) -> ServerCredentials:
    """
    The relay's credentials, checked as clients will check them.

    @raise StartupError: if clients would refuse them.
    @raise CorruptDataDir: a file is missing, unreadable, or the key is not
        the certificate's.
    """
    credentials, problem = read_credentials(data, now or _wall_clock())
    if problem is not None:
        raise StartupError(describe_credential_problem(data, problem))
    return credentials
