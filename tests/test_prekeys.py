"""
Tests for L{securechat.crypto.prekeys}: signed and one-time prekeys, their
encodings and the signed prekey's signature (docs/protocol.rst, 14.1).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from securechat.crypto import keys
from securechat.crypto.handshake import END_TO_END
from securechat.crypto.prekeys import (
    SIGNED_PREKEY_LABEL,
    LetterError,
    OneTimePrekey,
    PrekeyBundle,
    SignedPrekey,
    check_upload,
    encode_one_time_prekeys,
    generate_one_time_prekeys,
    generate_signed_prekey,
    parse_one_time_prekeys,
    signed_prekey_message,
    verify_signed_prekey,
)
from securechat.crypto.schedule import signature_content

_RSA = rsa.generate_private_key(65537, 2048)
_P256 = ec.generate_private_key(ec.SECP256R1())
_ED = ed25519.Ed25519PrivateKey.generate()
USER_KEYS: dict[str, keys.PrivateKey] = {"ed25519": _ED, "p256": _P256, "rsa": _RSA}


class SignedPrekeyTests(unittest.TestCase):
    """
    A signed prekey verifies against its owner's registered key only.
    """

    def test_roundTripEachKeyType(self) -> None:
        """
        For Ed25519, P-256 and RSA-PSS owners, a signed prekey survives
        encoding and verifies against the owner's key.
        """
        for kind, key in USER_KEYS.items():
            prekey, private = generate_signed_prekey("bob", key, 7, 1_700_000_000)
            parsed = SignedPrekey.parse(prekey.encode())
            self.assertEqual(parsed, prekey, kind)
            verify_signed_prekey("bob", parsed, key.public_key())
            self.assertEqual(parsed.scheme, keys.scheme_for(key.public_key()), kind)

    def test_otherKeyRefused(self) -> None:
        """
        A signed prekey signed by another key (a relay's substitute) is
        C{bad-prekey-signature}.
        """
        prekey, _ = generate_signed_prekey("bob", _ED, 1, 5)
        e = self.assertRaises(LetterError, verify_signed_prekey, "bob", prekey, _P256.public_key())
        self.assertEqual(e.code, "bad-prekey-signature")
        other = ed25519.Ed25519PrivateKey.generate()
        e = self.assertRaises(LetterError, verify_signed_prekey, "bob", prekey, other.public_key())
        self.assertEqual(e.code, "bad-prekey-signature")

    def test_everySignedFieldBound(self) -> None:
        """
        Changing the owner's name, the id, the public key or the creation
        time breaks the signature: C{bad-prekey-signature}.
        """
        prekey, _ = generate_signed_prekey("bob", _ED, 1, 5)
        variants = [
            ("carol", prekey),
            ("bob", SignedPrekey(2, prekey.public, 5, prekey.scheme, prekey.signature)),
            ("bob", SignedPrekey(1, bytes(32), 5, prekey.scheme, prekey.signature)),
            ("bob", SignedPrekey(1, prekey.public, 6, prekey.scheme, prekey.signature)),
        ]
        for user, variant in variants:
            e = self.assertRaises(LetterError, verify_signed_prekey, user, variant, _ED.public_key())
            self.assertEqual(e.code, "bad-prekey-signature")

    def test_handshakeSignatureNotAPrekeySignature(self) -> None:
        """
        The context label keeps signatures apart: a handshake signature over
        the same bytes is not accepted as a prekey signature.
        """
        prekey, _ = generate_signed_prekey("bob", _ED, 1, 5)
        message = signed_prekey_message("bob", 1, prekey.public, 5)
        self.assertTrue(message.startswith(SIGNED_PREKEY_LABEL))
        _, forged = keys.sign(_ED, signature_content(END_TO_END, b"responder", message[-32:]))
        variant = SignedPrekey(1, prekey.public, 5, prekey.scheme, forged)
        e = self.assertRaises(LetterError, verify_signed_prekey, "bob", variant, _ED.public_key())
        self.assertEqual(e.code, "bad-prekey-signature")

    def test_parseStrict(self) -> None:
        """
        A signed prekey cut short or with a byte more is C{malformed}.
        """
        prekey, _ = generate_signed_prekey("bob", _ED, 1, 5)
        data = prekey.encode()
        for bad in (data[:-1], data + b"\x00", data[:35]):
            e = self.assertRaises(LetterError, SignedPrekey.parse, bad)
            self.assertEqual(e.code, "malformed")

    def test_idZeroMeansNone(self) -> None:
        """
        A signed prekey's id is never 0 (PREKEYS_STORED uses 0 for none):
        parsing one is C{malformed}, and none is made.
        """
        prekey, _ = generate_signed_prekey("bob", _ED, 1, 5)
        e = self.assertRaises(LetterError, SignedPrekey.parse, bytes(4) + prekey.encode()[4:])
        self.assertEqual(e.code, "malformed")
        self.assertRaises(ValueError, generate_signed_prekey, "bob", _ED, 0, 5)

    def test_bundleFromMessageFields(self) -> None:
        """
        A bundle parses from BUNDLE's fields, with or without a one-time
        prekey; a one-time prekey of the wrong length is C{malformed}.
        """
        prekey, _ = generate_signed_prekey("bob", _ED, 1, 5)
        one = OneTimePrekey(4, b"\x02" * 32)
        self.assertEqual(PrekeyBundle.parse("bob", prekey.encode(), one.encode()),
                         PrekeyBundle("bob", prekey, one))
        self.assertEqual(PrekeyBundle.parse("bob", prekey.encode(), b""), PrekeyBundle("bob", prekey, None))
        e = self.assertRaises(LetterError, PrekeyBundle.parse, "bob", prekey.encode(), one.encode()[:-1])
        self.assertEqual(e.code, "malformed")

    def test_deterministicLayout(self) -> None:
        """
        The encoding is u32 id, 32-byte key, u64 created_at, u16 scheme,
        bytes16 signature (14.1).
        """
        prekey = SignedPrekey(0x01020304, b"\x11" * 32, 0x0506, 0x0807, b"\xaa\xbb")
        self.assertEqual(
            prekey.encode(),
            bytes.fromhex("01020304") + b"\x11" * 32 + bytes.fromhex("0000000000000506")
            + bytes.fromhex("0807") + bytes.fromhex("0002aabb"))


class OneTimePrekeyTests(unittest.TestCase):
    """
    One-time prekeys and their batches.
    """

    def test_batchRoundTrip(self) -> None:
        """
        A batch of one-time prekeys has consecutive ids, distinct keys, and
        survives encoding as an upload carries it.
        """
        batch = generate_one_time_prekeys(100, 5)
        public = [p for p, _ in batch]
        self.assertEqual([p.prekey_id for p in public], [100, 101, 102, 103, 104])
        self.assertEqual(len({p.public for p in public}), 5)
        self.assertEqual(parse_one_time_prekeys(encode_one_time_prekeys(public)), tuple(public))

    def test_batchRules(self) -> None:
        """
        An upload that is not a whole number of 36-byte prekeys, holds more
        than 100, or repeats an id is C{malformed}.
        """
        one = OneTimePrekey(1, b"\x01" * 32).encode()
        for bad in (one[:-1], one * 101, one + one):
            e = self.assertRaises(LetterError, parse_one_time_prekeys, bad)
            self.assertEqual(e.code, "malformed")
        self.assertEqual(len(parse_one_time_prekeys(b"")), 0)

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(st.integers(0, 0xFFFFFFFF), st.binary(min_size=32, max_size=32))
    def test_oneTimeRoundTrip(self, prekey_id: int, public: bytes) -> None:
        """
        Any one-time prekey parses back to itself.
        """
        prekey = OneTimePrekey(prekey_id, public)
        self.assertEqual(OneTimePrekey.parse(prekey.encode()), prekey)

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(st.integers(1, 0xFFFFFFFF), st.binary(min_size=32, max_size=32),
           st.integers(0, 2**64 - 1), st.integers(0, 0xFFFF), st.binary(max_size=512))
    def test_signedRoundTrip(self, prekey_id: int, public: bytes, created: int, scheme: int,
                             signature: bytes) -> None:
        """
        Any signed prekey encoding parses back to itself.
        """
        prekey = SignedPrekey(prekey_id, public, created, scheme, signature)
        self.assertEqual(SignedPrekey.parse(prekey.encode()), prekey)


class UploadCheckTests(unittest.TestCase):
    """
    The relay's check of an upload (14.7).
    """

    def test_goodUpload(self) -> None:
        """
        An upload with a signed prekey by the uploader and one-time prekeys
        yields them; one with only one-time prekeys yields no signed one.
        """
        prekey, _ = generate_signed_prekey("bob", _P256, 2, 5)
        batch = [p for p, _ in generate_one_time_prekeys(1, 3)]
        self.assertEqual(check_upload("bob", _P256.public_key(), prekey.encode(), encode_one_time_prekeys(batch)),
                         (prekey, tuple(batch)))
        self.assertEqual(check_upload("bob", _P256.public_key(), b"", b""), (None, ()))

    def test_signedByAnotherRefused(self) -> None:
        """
        A signed prekey not signed by the uploader's key, or signed for
        another user name, is C{bad-prekey-signature} (BAD_PREKEY).
        """
        mallory, _ = generate_signed_prekey("bob", _ED, 2, 5)
        e = self.assertRaises(LetterError, check_upload, "bob", _P256.public_key(), mallory.encode(), b"")
        self.assertEqual(e.code, "bad-prekey-signature")
        carol, _ = generate_signed_prekey("carol", _P256, 2, 5)
        e = self.assertRaises(LetterError, check_upload, "bob", _P256.public_key(), carol.encode(), b"")
        self.assertEqual(e.code, "bad-prekey-signature")
