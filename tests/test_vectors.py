"""
Tests that docs/protocol.rst's test vectors are what the implementation
produces.
"""

from __future__ import annotations

import pathlib

from twisted.trial import unittest

from tests.vectors import INPUT_FIELDS, OUTPUT_FIELDS, compute, inputs_of, parse

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

    def test_parserSeesTampering(self) -> None:
        """
        The check is real: a vector with one output byte changed fails.
        """
        vector = dict(self.vectors["end-to-end"])
        vector["hello"] = vector["hello"][:-1] + bytes([vector["hello"][-1] ^ 1])
        self.vectors["tampered"] = vector
        self.assertRaises(self.failureException, self.check, "tampered")
