"""
Tests that docs/protocol.rst's test vectors are what the implementation
produces.
"""

from __future__ import annotations

import pathlib

from twisted.trial import unittest

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.crypto import keys
from securechat.crypto.x509 import verify_server_identity
from tests.letter_vectors import COMPUTE as MAILBOX_VECTORS
from tests.vectors import (
    CLIENT_SERVER_NOW,
    INPUT_FIELDS,
    OUTPUT_FIELDS,
    compute,
    inputs_of,
    parse,
)

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.rst"


class VectorTests(unittest.TestCase):
    """
    The document's vectors, checked field by field.
    """

    def setUp(self) -> None:
        self.vectors = parse(DOC.read_text())

    def check(self, name: str) -> None:
        vector = self.vectors[name]
        self.assertEqual(set(vector) - set(INPUT_FIELDS) - set(OUTPUT_FIELDS), set())
        computed = compute(inputs_of(vector))
        for field in OUTPUT_FIELDS:
            self.assertIn(field, vector, f"{name}: {field} missing from the document")
            self.assertEqual(
                computed[field].hex(), vector[field].hex(), f"{name}: {field} differs"
            )

    def test_endToEnd(self) -> None:
        """
        The end-to-end vector (section 13.1) matches byte for byte.
        """
        self.check("end-to-end")

    def test_clientServer(self) -> None:
        """
        The client-server vector (section 13.2) matches byte for byte, and
        its certificate and CRL verify for localhost at the stated time.
        """
        self.check("client-server")
        vector = self.vectors["client-server"]
        ca = x509.load_der_x509_certificate(vector["ca.certificate"])
        now = datetime.datetime.strptime(CLIENT_SERVER_NOW, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
        key = verify_server_identity(
            [vector["responder.certificate"]], vector["responder.crl"], ca, "localhost", now)
        seed_key = ed25519.Ed25519PrivateKey.from_private_bytes(vector["responder.seed"])
        self.assertEqual(keys.public_key_der(key), keys.public_key_der(seed_key.public_key()))

    def check_mailbox(self, name: str) -> None:
        vector = self.vectors[name]
        input_fields, output_fields, compute_one = MAILBOX_VECTORS[name]
        self.assertEqual(set(vector), set(input_fields) | set(output_fields), name)
        computed = compute_one({k: v for k, v in vector.items() if k in input_fields})
        for field in output_fields:
            self.assertEqual(computed[field].hex(), vector[field].hex(), f"{name}: {field} differs")

    def test_letter(self) -> None:
        """
        The letter vector (section 13.3) matches byte for byte: prekeys,
        header, key derivation, ciphertext, signature, sealed letter (and
        the letter opens with bob's prekeys).
        """
        self.check_mailbox("letter")

    def test_receipt(self) -> None:
        """
        The receipt vector (section 13.4) matches byte for byte, and is
        for the letter of 13.3, whose sender accepts it.
        """
        self.check_mailbox("receipt")
        self.assertEqual(self.vectors["receipt"]["letter"], self.vectors["letter"]["letter"])
        from securechat.crypto.letters import parse_letter
        from securechat.crypto.receipts import verify_receipt
        bob = ed25519.Ed25519PrivateKey.from_private_bytes(self.vectors["letter"]["recipient.seed"])
        verify_receipt(self.vectors["receipt"]["receipt"], parse_letter(self.vectors["letter"]["letter"]),
                       bob.public_key())

    def test_mailboxTampering(self) -> None:
        """
        The mailbox check is real: a letter vector with one output byte
        changed fails.
        """
        vector = dict(self.vectors["letter"])
        vector["ciphertext"] = bytes([vector["ciphertext"][0] ^ 1]) + vector["ciphertext"][1:]
        self.vectors["letter"] = vector
        self.assertRaises(self.failureException, self.check_mailbox, "letter")

    def test_parserSeesTampering(self) -> None:
        """
        The check is real: a vector with one output byte changed fails.
        """
        vector = dict(self.vectors["end-to-end"])
        vector["hello"] = vector["hello"][:-1] + bytes([vector["hello"][-1] ^ 1])
        self.vectors["tampered"] = vector
        self.assertRaises(self.failureException, self.check, "tampered")
