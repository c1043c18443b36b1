# -*- test-case-name: tests.test_p11uri -*-
"""
PKCS#11 URIs (RFC 7512), parsed strictly: C{pkcs11:} then path attributes
separated by C{;}, then optionally C{?} and query attributes separated by
C{&}; values percent-decoded; an attribute this project does not use, a
repeated one or a malformed escape is refused in one line.

Accepted path attributes: C{token}, C{manufacturer}, C{serial}, C{model}
(which token), C{slot-id}, C{object} (the key's label), C{id} (its
CKA_ID, bytes), C{type} (C{private}, C{public} or C{cert}: which object the
URI names; the key pair is found either way).  Query attributes:
C{module-path}, C{pin-source} (C{file:PATH}), C{pin-value} (the PIN
itself: discouraged, anyone who sees the command line sees it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

SCHEME = "pkcs11:"

_PATH = ("token", "manufacturer", "serial", "model", "slot-id", "object", "id", "type")
_QUERY = ("module-path", "pin-source", "pin-value")
#: Attributes RFC 7512 defines that this project does not act on: refused
#: rather than silently ignored (they would not select what the user meant).
_KNOWN_UNUSED = ("library-manufacturer", "library-description", "library-version",
                 "slot-description", "slot-manufacturer", "module-name")
_TYPES = ("private", "public", "cert")
#: RFC 7512 2.3: pchar without the delimiters, or a percent escape.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class UriError(ValueError):
    """
    Not a PKCS#11 URI this client can use; the message says why in one line.
    """


@dataclass(frozen=True)
class TokenUri:
    """
    A parsed PKCS#11 URI.  Text attributes are decoded UTF-8; C{id} is bytes.
    """

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    slot_id: int | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    module_path: str | None = None
    pin_source: str | None = None
    pin_value: str | None = None


def is_pkcs11_uri(text: str) -> bool:
    """
    Whether C{text} is meant as a PKCS#11 URI (rather than a key file).
    """
    return text[:len(SCHEME)].lower() == SCHEME


def _decode(name: str, raw: str) -> bytes:
    if _BAD_ESCAPE.search(raw):
        raise UriError(f"PKCS#11 URI: bad percent escape in {name}={raw!r}")
    return unquote_to_bytes(raw)


def _text(name: str, raw: str) -> str:
    try:
        return _decode(name, raw).decode("utf-8")
    except UnicodeDecodeError:
        raise UriError(f"PKCS#11 URI: {name} is not UTF-8 once percent-decoded") from None


def parse(uri: str) -> TokenUri:
    """
    Parse C{uri}.

    @raise UriError: not C{pkcs11:}, an unknown, unsupported or repeated
        attribute, an attribute in the wrong part (path or query), a bad
        escape, a bad C{type} or C{slot-id}, or both C{pin-source} and
        C{pin-value}.
    """
    if not is_pkcs11_uri(uri):
        raise UriError(f"not a PKCS#11 URI (it must start with {SCHEME!r})")
    body = uri[len(SCHEME):]
    path, _, query = body.partition("?")
    values: dict[str, str] = {}
    for part, allowed, sep in ((path, _PATH, ";"), (query, _QUERY, "&")):
        if not part:
            continue
        for item in part.split(sep):
            name, eq, raw = item.partition("=")
            if not eq or not name:
                raise UriError(f"PKCS#11 URI: {item!r} is not NAME=VALUE")
            if name not in allowed:
                other = _QUERY if allowed is _PATH else _PATH
                if name in other:
                    where = "query (after ?)" if allowed is _PATH else "path (before ?)"
                    raise UriError(f"PKCS#11 URI: {name} belongs in the {where}")
                if name in _KNOWN_UNUSED:
                    raise UriError(f"PKCS#11 URI: attribute {name} is not supported here")
                raise UriError(f"PKCS#11 URI: unknown attribute {name!r}")
            if name in values:
                raise UriError(f"PKCS#11 URI: attribute {name} given twice")
            values[name] = raw
    fields: dict[str, object] = {}
    for name, raw in values.items():
        if name == "id":
            fields["id"] = _decode(name, raw)
        elif name == "slot-id":
            text = _text(name, raw)
            if not text.isdigit():
                raise UriError(f"PKCS#11 URI: slot-id must be a decimal number, not {text!r}")
            fields["slot_id"] = int(text)
        else:
            fields[name.replace("-", "_")] = _text(name, raw)
    if fields.get("type") not in (None,) + _TYPES:
        raise UriError(f"PKCS#11 URI: type must be one of {', '.join(_TYPES)}, "
                       f"not {fields['type']!r}")
    if "pin_source" in fields and "pin_value" in fields:
        raise UriError("PKCS#11 URI: give pin-source or pin-value, not both")
    return TokenUri(**fields)  # type: ignore[arg-type]


def pin_file(pin_source: str) -> str:
    """
    The file a C{pin-source} names: C{file:PATH}, C{file://PATH} or a bare
    absolute path.

    @raise UriError: another kind of source.
    """
    if pin_source.startswith("file://"):
        return pin_source[len("file://"):]
    if pin_source.startswith("file:"):
        return pin_source[len("file:"):]
    if pin_source.startswith("/"):
        return pin_source
    raise UriError(f"PKCS#11 URI: pin-source must be file:PATH, not {pin_source!r}")


__all__ = ["SCHEME", "TokenUri", "UriError", "is_pkcs11_uri", "parse", "pin_file"]
