"""
Relay certificate identities for the browser client's section-9 tests
(securechat/web/tests/x509.test.js), each with the verdict of the
reference implementation (L{securechat.crypto.x509.check_server_identity}):
the JavaScript checks must reach the same one.

Regenerate (the keys are random, so the bytes change; the verdicts must
not) with::

    .venv/bin/python -m tests.x509_fixtures

tests/test_browser_core.py checks that the reference still gives every
committed fixture its recorded verdict.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securechat.crypto.x509 import CertificateError, SeenCrl, check_server_identity

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "securechat", "web", "tests", "x509-fixtures.json")
NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
START = NOW - datetime.timedelta(days=30)
END = NOW + datetime.timedelta(days=365)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _der(obj: Any) -> bytes:
    return bytes(obj.public_bytes(serialization.Encoding.DER))


def make_ca(key: Any, cn: str = "fixture CA", algorithm: Any = hashes.SHA256()) -> x509.Certificate:
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(1000)
            .not_valid_before(START).not_valid_after(END)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .add_extension(ski, critical=False)
            .sign(key, algorithm))


def make_leaf(ca_key: Any, ca: x509.Certificate, names: list[str], *, serial: int = 77,
              eku: bool = True, is_ca: bool = False, algorithm: Any = hashes.SHA256(),
              key: Any = None, extra: list[tuple[Any, bool]] = (), aki: bool = True,
              san_critical: bool = False) -> x509.Certificate:
    key = key or ed25519.Ed25519PrivateKey.from_private_bytes(b"\x11" * 32)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    b = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca.subject)
         .public_key(key.public_key()).serial_number(serial)
         .not_valid_before(START).not_valid_after(END)
         .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, is_ca, False, False, False),
                        critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.SubjectAlternativeName(sans), critical=san_critical))
    if aki:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                            critical=False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    return b.sign(ca_key, algorithm)


def make_crl(key: Any, issuer: x509.Name, *, number: int | None = 5, revoked: tuple[int, ...] = (),
             critical_idp: bool = False, this_update: datetime.datetime = START
             ) -> x509.CertificateRevocationList:
    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer)
         .last_update(this_update).next_update(END))
    if number is not None:
        b = b.add_extension(x509.CRLNumber(number), critical=False)
    if critical_idp:
        b = b.add_extension(x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier("http://crl.example/ca.crl")],
            relative_name=None, only_contains_user_certs=False, only_contains_ca_certs=False,
            only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False),
            critical=True)
    for serial in revoked:
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                      .revocation_date(START).build())
    return b.sign(key, hashes.SHA256())


def verdict(chain: list[bytes], crl: bytes, ca: bytes, name: str, now: datetime.datetime,
            seen: dict[str, Any] | None) -> str:
    """
    The reference implementation's verdict: "ok" or the failed check's code.
    """
    memory = None if seen is None else SeenCrl(
        int(seen["number"]), frozenset(int(s, 16) for s in seen["revoked"]))
    try:
        check_server_identity(chain, crl, x509.load_der_x509_certificate(ca), name, now, memory)
    except CertificateError as e:
        return e.code
    return "ok"


def cases() -> list[dict[str, Any]]:
    ca_key = ec.derive_private_key(0x1234567, ec.SECP256R1())
    ca = make_ca(ca_key)
    other_key = ec.derive_private_key(0x7654321, ec.SECP256R1())
    impostor = make_ca(other_key)               # same name, another key
    stranger = make_ca(other_key, "another CA")  # another name
    crl = make_crl(ca_key, ca.subject)
    leaf = make_leaf(ca_key, ca, ["chat.example.org", "127.0.0.1", "::1"])
    rsa_key = rsa.generate_private_key(65537, 2048)
    rsa_ca = make_ca(rsa_key, "RSA CA")
    out: list[tuple[str, list[Any], Any, x509.Certificate, str, dict[str, Any] | None]] = [
        ("valid", [leaf], crl, ca, "chat.example.org", None),
        ("valid, any case, trailing dot", [leaf], crl, ca, "Chat.Example.ORG.", None),
        ("valid with a copy of the CA", [leaf, ca], crl, ca, "chat.example.org", None),
        ("IPv4 literal", [leaf], crl, ca, "127.0.0.1", None),
        ("IPv6 literal", [leaf], crl, ca, "::1", None),
        ("IPv6 literal written long", [leaf], crl, ca, "0:0:0:0:0:0:0:1", None),
        ("another name", [leaf], crl, ca, "example.org", None),
        ("a wildcard name asked", [leaf], crl, ca, "*.example.org", None),
        ("a leading-zero IPv4 is a DNS name", [leaf], crl, ca, "127.000.0.1", None),
        ("no serverAuth", [make_leaf(ca_key, ca, ["chat.example.org"], eku=False)], crl, ca,
         "chat.example.org", None),
        ("an intermediate", [leaf, stranger], crl, ca, "chat.example.org", None),
        ("three certificates", [leaf, ca, ca], crl, ca, "chat.example.org", None),
        ("signed by another key", [make_leaf(other_key, impostor, ["chat.example.org"])], crl, ca,
         "chat.example.org", None),
        ("the leaf is a CA", [make_leaf(ca_key, ca, ["chat.example.org"], is_ca=True)], crl, ca,
         "chat.example.org", None),
        ("signed with SHA-224", [make_leaf(ca_key, ca, ["chat.example.org"], algorithm=hashes.SHA224())],
         crl, ca, "chat.example.org", None),
        ("an unknown critical extension",
         [make_leaf(ca_key, ca, ["chat.example.org"],
                    extra=[(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"),
                                                       b"\x05\x00"), True)])],
         crl, ca, "chat.example.org", None),
        ("no authorityKeyIdentifier", [make_leaf(ca_key, ca, ["chat.example.org"], aki=False)],
         crl, ca, "chat.example.org", None),
        ("a critical subjectAltName",
         [make_leaf(ca_key, ca, ["chat.example.org"], san_critical=True)], crl, ca,
         "chat.example.org", None),
        ("CRL from another CA", [leaf], make_crl(other_key, stranger.subject), ca,
         "chat.example.org", None),
        ("CRL signed by another key", [leaf], make_crl(other_key, ca.subject), ca,
         "chat.example.org", None),
        ("CRL with a critical extension", [leaf], make_crl(ca_key, ca.subject, critical_idp=True),
         ca, "chat.example.org", None),
        ("CRL without a number", [leaf], make_crl(ca_key, ca.subject, number=None), ca,
         "chat.example.org", None),
        ("CRL older than seen", [leaf], crl, ca, "chat.example.org",
         {"number": "6", "revoked": []}),
        ("CRL as new as seen", [leaf], crl, ca, "chat.example.org", {"number": "5", "revoked": []}),
        ("CRL not yet valid", [leaf], make_crl(ca_key, ca.subject,
                                               this_update=NOW + datetime.timedelta(hours=1)),
         ca, "chat.example.org", None),
        ("revoked in the CRL", [leaf], make_crl(ca_key, ca.subject, revoked=(77,)), ca,
         "chat.example.org", None),
        ("revoked in an earlier CRL", [leaf], crl, ca, "chat.example.org",
         {"number": "4", "revoked": ["4d"]}),
        ("RSA CA, PKCS#1 v1.5 SHA-256",
         [make_leaf(rsa_key, rsa_ca, ["chat.example.org"])], make_crl(rsa_key, rsa_ca.subject),
         rsa_ca, "chat.example.org", None),
        ("ECDSA P-256 relay key",
         [make_leaf(ca_key, ca, ["chat.example.org"],
                    key=ec.derive_private_key(0x99, ec.SECP256R1()))], crl, ca,
         "chat.example.org", None),
    ]
    result = []
    for title, chain, the_crl, anchor, name, seen in out:
        chain_der = [_der(c) for c in chain]
        crl_der, ca_der = _der(the_crl), _der(anchor)
        result.append({
            "title": title, "chain": [c.hex() for c in chain_der], "crl": crl_der.hex(),
            "ca": ca_der.hex(), "name": name, "now": NOW.isoformat().replace("+00:00", "Z"),
            "seen": seen, "expect": verdict(chain_der, crl_der, ca_der, name, NOW, seen),
        })
    return result


def main() -> None:
    with open(PATH, "w") as f:
        json.dump(cases(), f, indent=1)
        f.write("\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
