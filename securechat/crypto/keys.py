# -*- test-case-name: tests.test_keys,tests.test_handshake,tests.test_pki -*-
"""
Long-term keys: loading, saving, fingerprints, and the signature schemes.

Three kinds of long-term key are accepted, for users and for the server:

  - Ed25519 (the default), signed as pure Ed25519;
  - ECDSA on P-256 with SHA-256, signatures in strict DER with a low S value;
  - RSA of 2048 to 4096 bits with public exponent 65537, signed with
    RSASSA-PSS, SHA-256, MGF1-SHA-256 and a 32-byte salt.  PKCS#1 v1.5
    signatures are never accepted.

The signature scheme numbers reuse the TLS 1.3 SignatureScheme code points so
that implementers recognise them (see docs/protocol.rst, "Signatures").
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from typing import Callable, Union, cast

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

PublicKey = Union[ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey, rsa.RSAPublicKey]
PrivateKey = Union[ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]

#: Signature scheme code points (TLS 1.3 SignatureScheme values).
ED25519 = 0x0807
ECDSA_P256_SHA256 = 0x0403
RSA_PSS_SHA256 = 0x0804

SCHEME_NAMES = {
    ED25519: "ed25519",
    ECDSA_P256_SHA256: "ecdsa-p256-sha256",
    RSA_PSS_SHA256: "rsa-pss-sha256",
}

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 4096
RSA_EXPONENT = 65537

#: Order of the P-256 group, for the low-S rule.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)

#: Checks a signature: L{verify}, or a stand-in a test injects.
Verifier = Callable[["PublicKey", int, bytes, bytes], None]


class KeyFormatError(ValueError):
    """
    A key could not be loaded: not PEM, not a supported type, or too weak.
    The message says which, in words an operator can act on.
    """


class WrongPassphrase(KeyFormatError):
    """
    An encrypted private key could not be decrypted with the passphrase given,
    or a passphrase is needed and none was given.
    """


class SignatureError(ValueError):
    """
    A signature did not verify.  C{reason} is one of C{"scheme-mismatch"},
    C{"non-canonical"}, C{"invalid"}.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_public_key(key: object) -> PublicKey:
    """
    Return C{key} if it is an acceptable long-term public key, else raise
    L{KeyFormatError} saying why.
    """
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyFormatError(
                f"unsupported elliptic curve {key.curve.name}: only P-256 "
                "(prime256v1) is accepted"
            )
        return key
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.key_size
        if bits < RSA_MIN_BITS:
            raise KeyFormatError(
                f"RSA key of {bits} bits is too weak: at least {RSA_MIN_BITS} bits "
                "are required"
            )
        if bits > RSA_MAX_BITS:
            raise KeyFormatError(
                f"RSA key of {bits} bits is too large: at most {RSA_MAX_BITS} bits "
                "are accepted"
            )
        if key.public_numbers().e != RSA_EXPONENT:
            raise KeyFormatError(
                f"RSA public exponent {key.public_numbers().e} is not accepted: "
                f"only {RSA_EXPONENT} is"
            )
        return key
    raise KeyFormatError(
        f"unsupported key type {type(key).__name__}: use Ed25519, ECDSA P-256 "
        "or RSA 2048-4096"
    )


def load_public_key(data: bytes) -> PublicKey:
    """
    Load a PEM C{SubjectPublicKeyInfo} public key (what C{openssl pkey -pubout}
    and C{openssl rsa -pubout} write) and check it with L{check_public_key}.
    """
    if b"PRIVATE KEY" in data:
        raise KeyFormatError(
            "this is a private key: register the public key instead "
            "(openssl pkey -in KEY -pubout)"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyFormatError(f"not a PEM public key ({e})") from None
    return check_public_key(key)


def load_public_key_der(data: bytes) -> PublicKey:
    """
    Load a DER C{SubjectPublicKeyInfo} and check it with L{check_public_key}.
    """
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyFormatError(f"not a DER public key ({e})") from None
    return check_public_key(key)


def load_private_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """
    Load a PEM private key (PKCS#8, or the traditional formats C{openssl}
    writes), decrypting it with C{passphrase} if it is encrypted.

    @raise WrongPassphrase: the key is encrypted and C{passphrase} is missing
        or wrong.
    @raise KeyFormatError: anything else wrong with it.
    """
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise WrongPassphrase("the private key is encrypted: a passphrase is needed") from None
        raise WrongPassphrase("the private key is not encrypted, but a passphrase was given") from None
    except ValueError as e:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise WrongPassphrase("wrong passphrase for the private key") from None
        raise KeyFormatError(f"not a PEM private key ({e})") from None
    except UnsupportedAlgorithm as e:
        raise KeyFormatError(f"unsupported private key ({e})") from None
    check_public_key(key.public_key())
    return key  # type: ignore[return-value]


def public_key_der(key: PublicKey) -> bytes:
    """
    The DER C{SubjectPublicKeyInfo} encoding of C{key}.
    """
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_pem(key: PublicKey) -> bytes:
    """
    The PEM C{SubjectPublicKeyInfo} encoding of C{key}.
    """
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_key_pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """
    The PKCS#8 PEM encoding of C{key}, encrypted with C{passphrase} when one
    is given (the best encryption the library offers).
    """
    encryption: serialization.KeySerializationEncryption
    if passphrase:
        encryption = serialization.BestAvailableEncryption(passphrase)
    else:
        encryption = serialization.NoEncryption()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def fingerprint(key: PublicKey) -> str:
    """
    A fingerprint people can compare out of band: C{SHA256:} and the unpadded
    base64 of the SHA-256 of the DER C{SubjectPublicKeyInfo}, as OpenSSH
    prints them.
    """
    digest = hashlib.sha256(public_key_der(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def describe(key: PublicKey) -> str:
    """
    A short name for the type of C{key}: C{ed25519}, C{ecdsa-p256},
    C{rsa-3072}.
    """
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa-p256"
    return f"rsa-{key.key_size}"


def scheme_for(key: PublicKey) -> int:
    """
    The one signature scheme that goes with C{key}.
    """
    scheme = _SCHEME_OF_TYPE.get(type(key))
    if scheme is None:
        scheme = _SCHEME_OF_TYPE[type(key)] = _scheme_by_class(key)
    return scheme


def _scheme_by_class(key: PublicKey) -> int:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ECDSA_P256_SHA256
    return RSA_PSS_SHA256


#: L{scheme_for} by the key's class, which decides it: the three key
#: classes are abstract, and an C{isinstance} against each (a Python-level
#: check) on every handshake cost more than the answer is worth.
_SCHEME_OF_TYPE: dict[type, int] = {}
#: The scheme L{sign} makes with a private key, by its class (only the
#: three kinds it signs with go in).
_SIGNING_SCHEME_OF_TYPE: dict[type, int] = {}


def sign(key: PrivateKey, message: bytes) -> tuple[int, bytes]:
    """
    Sign C{message} with C{key}; return the scheme and the signature.  ECDSA
    signatures are normalised to the low-S form that L{verify} demands.
    """
    scheme = _SIGNING_SCHEME_OF_TYPE.get(type(key))
    if scheme is None:
        if isinstance(key, ed25519.Ed25519PrivateKey):
            scheme = ED25519
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            scheme = ECDSA_P256_SHA256
        elif isinstance(key, rsa.RSAPrivateKey):
            scheme = RSA_PSS_SHA256
        else:
            raise TypeError(f"cannot sign with {type(key).__name__} here: a key held on a token "
                            "signs off the reactor thread (securechat.signing.sign_later)")
        _SIGNING_SCHEME_OF_TYPE[type(key)] = scheme
    if scheme == ED25519:
        return ED25519, cast(ed25519.Ed25519PrivateKey, key).sign(message)
    if scheme == ECDSA_P256_SHA256:
        r, s = decode_dss_signature(
            cast(ec.EllipticCurvePrivateKey, key).sign(message, ec.ECDSA(hashes.SHA256())))
        return ECDSA_P256_SHA256, ecdsa_der_low_s(r, s)
    return RSA_PSS_SHA256, cast(rsa.RSAPrivateKey, key).sign(message, _PSS, hashes.SHA256())


def ecdsa_der_low_s(r: int, s: int) -> bytes:
    """
    The strict DER encoding of the P-256 signature C{(r, s)} in its low-S
    form (s replaced by n - s when above n/2), as L{verify} demands.  For
    signatures made elsewhere too: a token's raw C{r || s}
    (L{securechat.token}).
    """
    if s > _P256_ORDER // 2:
        s = _P256_ORDER - s
    return encode_dss_signature(r, s)


def verify(key: PublicKey, scheme: int, signature: bytes, message: bytes) -> None:
    """
    Check that C{signature} is C{key}'s signature of C{message} under
    C{scheme}.

    @raise SignatureError: the scheme does not belong to the key, an ECDSA
        signature is not strict DER with 0 < r, 0 < s <= n/2, or the
        signature is simply wrong.
    """
    expected = scheme_for(key)
    if scheme != expected:
        raise SignatureError(
            "scheme-mismatch",
            f"signature scheme 0x{scheme:04x} does not match the {describe(key)} key",
        )
    # The scheme, being the key's, says which kind of key it is.
    try:
        if scheme == ED25519:
            cast(ed25519.Ed25519PublicKey, key).verify(signature, message)
        elif scheme == ECDSA_P256_SHA256:
            _check_canonical_ecdsa(signature)
            cast(ec.EllipticCurvePublicKey, key).verify(
                signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            cast(rsa.RSAPublicKey, key).verify(signature, message, _PSS, hashes.SHA256())
    except InvalidSignature:
        raise SignatureError("invalid", "signature does not verify") from None


def _check_canonical_ecdsa(signature: bytes) -> None:
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        raise SignatureError("non-canonical", "ECDSA signature is not valid DER") from None
    if not (0 < r < _P256_ORDER and 0 < s <= _P256_ORDER // 2):
        raise SignatureError(
            "non-canonical", "ECDSA signature values out of range or high-S"
        )
    if encode_dss_signature(r, s) != signature:
        raise SignatureError("non-canonical", "ECDSA signature is not strict DER")


def signature_fits(key: PublicKey, scheme: int, signature: bytes) -> bool:
    """
    Whether C{signature} has the shape C{key} implies: its scheme and, for
    RSA, a length equal to the modulus length.  A signature that does not
    fit is checked against L{stand_in_key} instead (see there).
    """
    if scheme != scheme_for(key):
        return False
    if scheme == RSA_PSS_SHA256 and isinstance(key, rsa.RSAPublicKey):
        # A signature at least the modulus fails at once in OpenSSL, before
        # any arithmetic: it goes to the stand-in, whose modulus is larger.
        return (len(signature) == (key.key_size + 7) // 8
                and int.from_bytes(signature, "big") < key.public_numbers().n)
    return True


def stand_in_key(scheme: int, signature: bytes) -> PublicKey:
    """
    A public key of the shape C{scheme} and C{signature} imply, that
    nobody holds the private key of: an Ed25519 or P-256 key made at
    random in this process, or an RSA modulus of the signature's length
    (clamped to 2048 to 4096 bits), partly random, with exponent 65537.

    A side that refuses a claimed identity (an unknown or revoked user), or
    whose peer's signature does not fit the real key, still verifies the
    signature once, against this key, so that the refusal costs what a
    failed verification costs: how long the answer takes then depends only
    on the signature the peer sent, never on whether the name is registered
    or which key it has (docs/protocol.rst, 5.1).  An unknown scheme gets
    the Ed25519 key, which L{verify} refuses at once for any other scheme,
    as it would a registered key.
    """
    if scheme == ECDSA_P256_SHA256:
        return _stand_in_ecdsa()
    if scheme == RSA_PSS_SHA256:
        length = min(max(len(signature), RSA_MIN_BITS // 8), RSA_MAX_BITS // 8)
        return _stand_in_rsa(length)
    return _stand_in_ed25519()


@functools.lru_cache(maxsize=1)
def _stand_in_ed25519() -> PublicKey:
    return ed25519.Ed25519PrivateKey.generate().public_key()


@functools.lru_cache(maxsize=1)
def _stand_in_ecdsa() -> PublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


@functools.lru_cache(maxsize=RSA_MAX_BITS // 8 - RSA_MIN_BITS // 8 + 1)
def _stand_in_rsa(length: int) -> PublicKey:
    # An odd modulus of exactly C{length} bytes whose top 64 bits are all
    # ones, the rest random: verification costs what it costs with a real
    # key of that size, and only a signature with 64 leading one bits is
    # too large for it (one too large for a registered key is sent here).
    # Whatever it verifies is ignored: the caller fails anyway.
    bits = 8 * length
    n = ((1 << bits) - (1 << (bits - 64))) | int.from_bytes(os.urandom(length - 8), "big") | 1
    return rsa.RSAPublicNumbers(RSA_EXPONENT, n).public_key()
