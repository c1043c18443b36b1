"""
Tests that docs/protocol.rst's group message vector (13.6) is what the
implementation produces, byte for byte.
"""

from __future__ import annotations

import pathlib

from twisted.trial import unittest

from securechat.crypto.letters import CONTENT_GROUP_KEY
from securechat.crypto.senderkeys import parse_distribution, parse_group_message
from tests.group_vectors import GROUP_INPUT_FIELDS, GROUP_OUTPUT_FIELDS, compute_group_message
from tests.vectors import Vector, parse

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.rst"


class GroupVectorTests(unittest.TestCase):
    """
    The group message vector (13.6), checked field by field.
    """

    def setUp(self) -> None:
        self.vector = parse(DOC.read_text())["group-message"]

    def check(self, vector: Vector) -> None:
        self.assertEqual(set(vector), set(GROUP_INPUT_FIELDS) | set(GROUP_OUTPUT_FIELDS))
        computed = compute_group_message({k: v for k, v in vector.items() if k in GROUP_INPUT_FIELDS})
        for field in GROUP_OUTPUT_FIELDS:
            self.assertEqual(computed[field].hex(), vector[field].hex(), f"group-message: {field} differs")

    def test_groupMessage(self) -> None:
        """
        From 13.6's inputs the implementation makes the same signing key,
        distribution, message key, nonce, next chain key, header,
        ciphertext, signature and body (and a receiver opens the body).
        """
        self.check(self.vector)

    def test_fieldsAsDocumented(self) -> None:
        """
        The vector's distribution and body parse to its inputs (16.2,
        16.3), and content type 2 is the letters' group sender key.
        """
        v = self.vector
        dist = parse_distribution(v["distribution"])
        self.assertEqual((dist.group_id, dist.epoch, dist.chain_id, dist.counter, dist.chain_key),
                         (v["group_id"], 3, 0x0BADC0DE, 5, v["chain_key"]))
        header = parse_group_message(v["body"]).header
        self.assertEqual((header.sender, header.epoch, header.counter), ("alice", 4, 5))
        self.assertEqual(CONTENT_GROUP_KEY, 2)

    def test_statedLengths(self) -> None:
        """
        The lengths section 16 states (the distribution's, the signature's
        69-byte M) are those of the vector.
        """
        import re

        text = DOC.read_text()
        stated = re.search(r"\*distribution\*, (\d+) bytes::", text)
        assert stated is not None
        self.assertEqual(int(stated.group(1)), len(self.vector["distribution"]))
        from securechat.crypto.senderkeys import group_signature_message
        self.assertIn("the 32-byte hash: 69 bytes", text)
        self.assertEqual(len(group_signature_message(b"")), 69)

    def test_tampering(self) -> None:
        """
        The check is real: the vector with one ciphertext byte changed
        fails.
        """
        vector = dict(self.vector)
        vector["ciphertext"] = bytes([vector["ciphertext"][0] ^ 1]) + vector["ciphertext"][1:]
        self.assertRaises(self.failureException, self.check, vector)
