"""
Tests for L{securechat.p11uri}: PKCS#11 URIs (RFC 7512) parsed strictly.
"""

from __future__ import annotations

from twisted.trial import unittest

from securechat.p11uri import TokenUri, UriError, is_pkcs11_uri, parse, pin_file


class ParseTests(unittest.TestCase):
    """
    What is accepted, decoded.
    """

    def test_pathAndQuery(self) -> None:
        """
        Path attributes before C{?} (separated by C{;}), query attributes
        after (separated by C{&}), all percent-decoded; C{id} stays bytes.
        """
        uri = parse("pkcs11:token=My%20Card;manufacturer=OpenSC;serial=0042;model=PKCS%2315;"
                    "slot-id=3;object=Sign%C3%A9;id=%01%ff;type=private"
                    "?module-path=/usr/lib/p11.so&pin-source=file:/run/pin")
        self.assertEqual(uri, TokenUri(
            token="My Card", manufacturer="OpenSC", serial="0042", model="PKCS#15", slot_id=3,
            object="Signé", id=b"\x01\xff", type="private", module_path="/usr/lib/p11.so",
            pin_source="file:/run/pin"))

    def test_empty(self) -> None:
        """
        C{pkcs11:} alone is valid: any token, any key.
        """
        self.assertEqual(parse("pkcs11:"), TokenUri())

    def test_schemeCaseInsensitive(self) -> None:
        """
        The scheme is case-insensitive (RFC 3986); a file path is not a URI.
        """
        self.assertTrue(is_pkcs11_uri("PKCS11:token=a"))
        self.assertFalse(is_pkcs11_uri("/home/alice/key.pem"))
        self.assertEqual(parse("PKCS11:object=k").object, "k")

    def test_pinFile(self) -> None:
        """
        pin-source is file:PATH, file://PATH or an absolute path; nothing else.
        """
        self.assertEqual(pin_file("file:/run/pin"), "/run/pin")
        self.assertEqual(pin_file("file:///run/pin"), "/run/pin")
        self.assertEqual(pin_file("/run/pin"), "/run/pin")
        with self.assertRaises(UriError) as e:
            pin_file("|/bin/cat pin")
        self.assertEqual(str(e.exception), "PKCS#11 URI: pin-source must be file:PATH, "
                                           "not '|/bin/cat pin'")


class RefusedTests(unittest.TestCase):
    """
    Each malformed URI is refused in one line saying why.
    """

    def refused(self, uri: str) -> str:
        with self.assertRaises(UriError) as e:
            parse(uri)
        return str(e.exception)

    def test_notPkcs11(self) -> None:
        """Another scheme."""
        self.assertEqual(self.refused("file:/key.pem"),
                         "not a PKCS#11 URI (it must start with 'pkcs11:')")

    def test_unknownAttribute(self) -> None:
        """An attribute RFC 7512 does not define."""
        self.assertEqual(self.refused("pkcs11:token=a;colour=blue"),
                         "PKCS#11 URI: unknown attribute 'colour'")

    def test_unsupportedAttribute(self) -> None:
        """An RFC 7512 attribute this client does not act on is not ignored."""
        self.assertEqual(self.refused("pkcs11:token=a;library-version=1"),
                         "PKCS#11 URI: attribute library-version is not supported here")

    def test_wrongPart(self) -> None:
        """A query attribute in the path, and the other way round."""
        self.assertEqual(self.refused("pkcs11:token=a;pin-value=1"),
                         "PKCS#11 URI: pin-value belongs in the query (after ?)")
        self.assertEqual(self.refused("pkcs11:token=a?object=k"),
                         "PKCS#11 URI: object belongs in the path (before ?)")

    def test_repeated(self) -> None:
        """An attribute given twice."""
        self.assertEqual(self.refused("pkcs11:object=a;object=b"),
                         "PKCS#11 URI: attribute object given twice")

    def test_badEscape(self) -> None:
        """A percent not followed by two hex digits."""
        self.assertEqual(self.refused("pkcs11:object=a%2"),
                         "PKCS#11 URI: bad percent escape in object='a%2'")
        self.assertEqual(self.refused("pkcs11:object=%zz"),
                         "PKCS#11 URI: bad percent escape in object='%zz'")

    def test_notUtf8(self) -> None:
        """A text attribute that is not UTF-8 once decoded."""
        self.assertEqual(self.refused("pkcs11:object=%ff"),
                         "PKCS#11 URI: object is not UTF-8 once percent-decoded")

    def test_noValue(self) -> None:
        """An attribute without C{=}."""
        self.assertEqual(self.refused("pkcs11:token"),
                         "PKCS#11 URI: 'token' is not NAME=VALUE")

    def test_badType(self) -> None:
        """type other than private, public, cert."""
        self.assertEqual(self.refused("pkcs11:type=secret-key"),
                         "PKCS#11 URI: type must be one of private, public, cert, not "
                         "'secret-key'")

    def test_badSlotId(self) -> None:
        """slot-id not a decimal number."""
        self.assertEqual(self.refused("pkcs11:slot-id=0x1"),
                         "PKCS#11 URI: slot-id must be a decimal number, not '0x1'")

    def test_pinTwice(self) -> None:
        """pin-source and pin-value together."""
        self.assertEqual(self.refused("pkcs11:token=a?pin-value=1&pin-source=file:/p"),
                         "PKCS#11 URI: give pin-source or pin-value, not both")
