# -*- test-case-name: tests.test_pkcs11_ca -*-
"""
Certificates and CRLs signed by a CA key in memory or on a token.

C{cryptography}'s builders sign only with a key in memory.  For a CA key on
a PKCS#11 token (L{securechat.crypto.signer.ExternalKey}) the builder signs
a draft with a throwaway P-256 key, which fixes every byte of the
to-be-signed part (the signature algorithm, ecdsa-with-SHA256, included);
the token signs those bytes; and C{asn1crypto} puts the token's signature
in place of the draft's, leaving the to-be-signed part as it was.  The
result is loaded back and checked: the same to-be-signed bytes, and a
signature that verifies with the CA's public key.
"""

from __future__ import annotations

from typing import Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from securechat.crypto.signer import ExternalKey, SigningError

#: What signs for the CA: its P-256 key in memory, or one on a token.
CaKey = Union[ec.EllipticCurvePrivateKey, ExternalKey]


def ca_public_key(key: CaKey) -> ec.EllipticCurvePublicKey:
    """
    The CA key's public half, which must be P-256.

    @raise ValueError: a token key of another kind.
    """
    public = key.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
            public.curve, ec.SECP256R1):
        raise ValueError("the CA key must be ECDSA P-256 (the token's key is not)")
    return public


def _check(key: CaKey, tbs: bytes, got_tbs: bytes, signature: bytes) -> None:
    if got_tbs != tbs:  # pragma: no cover - asn1crypto keeps untouched parts as read
        raise SigningError("re-assembling the token-signed structure changed its content")
    try:
        ca_public_key(key).verify(signature, tbs, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SigningError("the token's signature does not verify with the CA's public "
                           "key") from None


def sign_certificate(builder: x509.CertificateBuilder, key: CaKey) -> x509.Certificate:
    """
    C{builder}'s certificate signed by C{key} with ECDSA-SHA256.
    """
    if not isinstance(key, ExternalKey):
        return builder.sign(key, hashes.SHA256())
    from asn1crypto import x509 as ax

    ca_public_key(key)
    draft = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    tbs = draft.tbs_certificate_bytes
    signature = key.sign_blocking(tbs)
    parsed = ax.Certificate.load(draft.public_bytes(serialization.Encoding.DER))
    parsed["signature_value"] = signature
    cert = x509.load_der_x509_certificate(parsed.dump())
    _check(key, tbs, cert.tbs_certificate_bytes, cert.signature)
    return cert


def sign_crl(builder: x509.CertificateRevocationListBuilder,
             key: CaKey) -> x509.CertificateRevocationList:
    """
    C{builder}'s CRL signed by C{key} with ECDSA-SHA256.
    """
    if not isinstance(key, ExternalKey):
        return builder.sign(key, hashes.SHA256())
    from asn1crypto import crl as acrl

    ca_public_key(key)
    draft = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    tbs = draft.tbs_certlist_bytes
    signature = key.sign_blocking(tbs)
    parsed = acrl.CertificateList.load(draft.public_bytes(serialization.Encoding.DER))
    parsed["signature"] = signature
    crl = x509.load_der_x509_crl(parsed.dump())
    _check(key, tbs, crl.tbs_certlist_bytes, crl.signature)
    return crl


__all__ = ["CaKey", "ca_public_key", "sign_certificate", "sign_crl"]
