"""
Tests for L{securechat.crypto.keys} written for what mutation testing found
unguarded (tests/MUTATION.rst): key loading and its errors, the RSA limits,
ECDSA low-S signing and strict verification.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from twisted.trial import unittest

from securechat.crypto import keys

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED = ed25519.Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)


def _rsa_public(bits: int, e: int = 65537) -> rsa.RSAPublicKey:
    """
    An RSA public key of exactly C{bits} bits (an odd modulus with the top
    bit set; no private key is needed to check the limits).
    """
    n = (1 << (bits - 1)) | 0xF1
    return rsa.RSAPublicNumbers(e, n).public_key()


class PrivateKeyLoadingTests(unittest.TestCase):
    """
    L{keys.load_private_key} and L{keys.private_key_pem}: every way a key
    file can be wrong has its own error.
    """

    def test_roundTrips(self) -> None:
        """
        A key written with a passphrase is encrypted and loads with it; one
        written without (None or empty) is not encrypted and loads without.
        """
        encrypted = keys.private_key_pem(ED, b"secret")
        self.assertIn(b"ENCRYPTED", encrypted)
        loaded = keys.load_private_key(encrypted, b"secret")
        self.assertEqual(keys.public_key_der(loaded.public_key()), keys.public_key_der(ED.public_key()))
        for nothing in (None, b""):
            plain = keys.private_key_pem(ED, nothing)
            self.assertNotIn(b"ENCRYPTED", plain)
            keys.load_private_key(plain, None)

    def test_passphraseErrors(self) -> None:
        """
        An encrypted key without a passphrase, a plain key with one, and a
        wrong passphrase are each a L{keys.WrongPassphrase} saying which.
        """
        encrypted = keys.private_key_pem(ED, b"secret")
        plain = keys.private_key_pem(ED, None)
        for data, passphrase, words in ((encrypted, None, "a passphrase is needed"),
                                        (plain, b"secret", "not encrypted"),
                                        (encrypted, b"wrong", "wrong passphrase")):
            e = self.assertRaises(keys.WrongPassphrase, keys.load_private_key, data, passphrase)
            self.assertIn(words, str(e))

    def test_notAKey(self) -> None:
        """
        Something that is not a PEM private key is a L{keys.KeyFormatError}
        (not a passphrase error), with or without a passphrase.
        """
        for passphrase in (None, b"secret"):
            e = self.assertRaises(keys.KeyFormatError, keys.load_private_key, b"hello", passphrase)
            self.assertNotIsInstance(e, keys.WrongPassphrase)
            self.assertIn("not a PEM private key", str(e))

    def test_privateKeyWhereAPublicKeyBelongs(self) -> None:
        """
        Registering a private key file by mistake is refused with advice;
        a public key loads.
        """
        e = self.assertRaises(keys.KeyFormatError, keys.load_public_key,
                              keys.private_key_pem(ED, None))
        self.assertIn("this is a private key", str(e))
        keys.load_public_key(keys.public_key_pem(ED.public_key()))


class PublicKeyLoadingTests(unittest.TestCase):
    """
    Public keys that are not keys at all.
    """

    def test_garbage(self) -> None:
        """
        Bytes that are neither PEM nor DER public keys are a
        L{keys.KeyFormatError} naming what was expected.
        """
        e = self.assertRaises(keys.KeyFormatError, keys.load_public_key, b"-----BEGIN nothing")
        self.assertIn("not a PEM public key", str(e))
        e = self.assertRaises(keys.KeyFormatError, keys.load_public_key_der, b"\x30\x03\x02\x01\x01")
        self.assertIsInstance(e, keys.KeyFormatError)


class RsaLimitTests(unittest.TestCase):
    """
    RSA keys of 2048 to 4096 bits with exponent 65537 only.
    """

    def test_sizeBounds(self) -> None:
        """
        2048 and 4096 bits are accepted; 2047 and 4097 refused.
        """
        for bits in (2048, 4096):
            keys.check_public_key(_rsa_public(bits))
        for bits, words in ((2047, "too weak"), (4097, "too large")):
            e = self.assertRaises(keys.KeyFormatError, keys.check_public_key, _rsa_public(bits))
            self.assertIn(words, str(e))

    def test_exponent(self) -> None:
        """
        An exponent other than 65537, below it (3) or above it (65539), is
        refused.
        """
        for exponent in (3, 65539):
            e = self.assertRaises(keys.KeyFormatError, keys.check_public_key,
                                  _rsa_public(2048, e=exponent))
            self.assertIn(f"exponent {exponent}", str(e))


class EcdsaTests(unittest.TestCase):
    """
    ECDSA P-256: low-S signatures made, strict ones demanded.
    """

    def test_signaturesAreLowS(self) -> None:
        """
        Every signature made is low-S (s <= n/2) and verifies; 64 of them,
        so that about half needed normalising.
        """
        key = ec.derive_private_key(12345, ec.SECP256R1())
        for i in range(64):
            scheme, signature = keys.sign(key, b"message %d" % i)
            r, s = decode_dss_signature(signature)
            self.assertLessEqual(s, P256_ORDER // 2)
            keys.verify(key.public_key(), scheme, signature, b"message %d" % i)

    def test_outOfRangeValuesRefused(self) -> None:
        """
        r = n, r = 0, s = 0 and a negative s (DER allows one) are
        C{non-canonical}, before any curve arithmetic.
        """
        key = ec.derive_private_key(12345, ec.SECP256R1())
        negative_s = bytes.fromhex("30060201010201ff")  # SEQUENCE { INTEGER 1, INTEGER -1 }
        for r, s in ((P256_ORDER, 1), (P256_ORDER + 1, 1), (0, 1), (1, 0), (1, -1)):
            der = negative_s if s < 0 else encode_dss_signature(r, s)
            e = self.assertRaises(keys.SignatureError, keys.verify, key.public_key(),
                                  keys.ECDSA_P256_SHA256, der, b"m")
            self.assertEqual(e.reason, "non-canonical", (r, s))


class SchemeTests(unittest.TestCase):
    """
    Section 7: one signature scheme per key type, with the TLS 1.3 code
    points, and RSA-PSS exactly as specified.
    """

    def test_codePoints(self) -> None:
        """
        Ed25519 is 0x0807, ECDSA P-256 0x0403, RSA-PSS 0x0804.
        """
        p256 = ec.derive_private_key(12345, ec.SECP256R1()).public_key()
        self.assertEqual([keys.scheme_for(k) for k in (ED.public_key(), p256, _rsa_public(2048))],
                         [0x0807, 0x0403, 0x0804])

    def test_otherSchemeRefused(self) -> None:
        """
        A good Ed25519 signature announced under a lower or a higher scheme
        code is C{scheme-mismatch}.
        """
        scheme, signature = keys.sign(ED, b"m")
        for other in (0x0403, 0x0808):
            e = self.assertRaises(keys.SignatureError, keys.verify, ED.public_key(), other,
                                  signature, b"m")
            self.assertEqual(e.reason, "scheme-mismatch")

    def test_rsaPssParameters(self) -> None:
        """
        RSA signatures are RSASSA-PSS with SHA-256, MGF1-SHA-256 and a
        32-byte salt: one made here verifies with exactly those parameters
        (and not with a 33-byte salt).
        """
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        key = rsa.generate_private_key(65537, 2048)
        scheme, signature = keys.sign(key, b"m")
        self.assertEqual(scheme, 0x0804)

        def pss(salt: int) -> padding.PSS:
            return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
        key.public_key().verify(signature, b"m", pss(32), hashes.SHA256())
        self.assertRaises(InvalidSignature, key.public_key().verify, signature, b"m", pss(33),
                          hashes.SHA256())

    def test_inRangeValuesReachVerification(self) -> None:
        """
        The edges of the accepted range (r = 1, s = 1, s = n/2 rounded
        down) pass the canonical check and fail only as C{invalid}
        signatures.
        """
        key = ec.derive_private_key(12345, ec.SECP256R1())
        for r, s in ((1, 1), (1, P256_ORDER // 2), (P256_ORDER - 1, 1)):
            e = self.assertRaises(keys.SignatureError, keys.verify, key.public_key(),
                                  keys.ECDSA_P256_SHA256, encode_dss_signature(r, s), b"m")
            self.assertEqual(e.reason, "invalid", (r, s))

    def test_describe(self) -> None:
        """
        Key types are named in messages as ed25519, ecdsa-p256 and rsa-BITS.
        """
        p256 = ec.derive_private_key(12345, ec.SECP256R1()).public_key()
        self.assertEqual([keys.describe(k) for k in (ED.public_key(), p256, _rsa_public(3072))],
                         ["ed25519", "ecdsa-p256", "rsa-3072"])
