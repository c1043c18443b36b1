"""
The edges of the relay certificate checks of docs/protocol.rst, section 9
(L{securechat.crypto.x509.verify_server_identity}), found unguarded by
mutation testing: equality of names, inclusive validity bounds, CRL
freshness up to nextUpdate, the time zone check, an unsupported key.
"""

from __future__ import annotations

import datetime

from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial import unittest

from securechat.crypto.x509 import CertificateError
from tests.test_x509 import PKI


class BoundaryTests(unittest.TestCase):
    """
    The edges of the section 9 checks (found unguarded by mutation testing).
    """

    def code(self, f, *a, **kw) -> str:  # type: ignore[no-untyped-def]
        return self.assertRaises(CertificateError, f, *a, **kw).code

    def test_nameSortingAfterIsMismatch(self) -> None:
        """
        A name that sorts after every name of the certificate is
        C{name-mismatch} too (names are compared for equality, not order).
        """
        self.assertEqual(self.code(PKI().verify, "zzz.example.org"), "name-mismatch")

    def test_validityBoundsInclusive(self) -> None:
        """
        The certificate is valid at exactly its notBefore and notAfter
        (RFC 5280: inclusive), and not a second outside them.
        """
        p = PKI()
        second = datetime.timedelta(seconds=1)
        start, end = p.cert.not_valid_before_utc, p.cert.not_valid_after_utc
        p.crl = p.make_crl(start - datetime.timedelta(hours=1), days=800)
        p.verify(now=start)
        p.verify(now=end)
        self.assertEqual(self.code(p.verify, now=start - second), "not-yet-valid")
        self.assertEqual(self.code(p.verify, now=end + second), "expired")

    def test_crlFreshUntilNextUpdate(self) -> None:
        """
        The stapled CRL is fresh up to exactly its nextUpdate, and
        C{crl-expired} a second later.
        """
        p = PKI()
        next_update = p.crl.next_update_utc
        assert next_update is not None
        p.verify(now=next_update)
        self.assertEqual(self.code(p.verify, now=next_update + datetime.timedelta(seconds=1)),
                         "crl-expired")

    def test_nowWithoutOffset(self) -> None:
        """
        A C{now} whose time zone gives no UTC offset is refused like a naive
        one (a caller's bug, ValueError).
        """
        class NoOffset(datetime.tzinfo):
            def utcoffset(self, dt: datetime.datetime | None) -> None:
                return None

        now = datetime.datetime(2026, 6, 1, 12, tzinfo=NoOffset())
        self.assertRaises(ValueError, PKI().verify, now=now)

    def test_unsupportedRelayKey(self) -> None:
        """
        A chain that verifies but whose leaf key is of a kind the protocol
        does not accept (ECDSA P-384) is C{bad-key}.
        """
        p = PKI(server_key=ec.generate_private_key(ec.SECP384R1()))
        self.assertEqual(self.code(p.verify), "bad-key")
