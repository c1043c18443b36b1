# -*- test-case-name: tests.test_pkcs11 -*-
"""
Keys on a PKCS#11 token (a smart card, a YubiKey or Nitrokey, SoftHSM),
through the C{python-pkcs11} binding: find the token and the key a
L{securechat.p11uri} URI names, log in, read the public key, and sign with
the mechanisms docs/protocol.rst section 7 requires:

  - Ed25519: C{CKM_EDDSA} over the message (pure Ed25519);
  - ECDSA P-256: SHA-256 here, C{CKM_ECDSA} over the digest on the token,
    its raw C{r || s} turned into the strict low-S DER the protocol wants;
  - RSA: SHA-256 here, C{CKM_RSA_PKCS_PSS} over the digest with SHA-256,
    MGF1-SHA-256 and a 32-byte salt.

Every failure is a L{TokenError} with one line a user can act on: the token
absent, a wrong PIN (with what the token says of the tries left), the PIN
locked, the key missing, a mechanism the token lacks, the token removed
mid-session.  Signing blocks (IO to the device): L{TokenKey.sign_blocking}
runs off the reactor thread (L{securechat.signing.sign_later}).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from securechat.crypto import keys
from securechat.crypto.signer import ExternalKey, SigningError
from securechat.p11uri import TokenUri, UriError, parse, pin_file


class TokenError(SigningError):
    """
    The token could not do what was asked; the message is one line.
    """


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:  # pragma: no cover - a dependency of the package
        raise TokenError("PKCS#11 support needs the python-pkcs11 package "
                         "(pip install python-pkcs11)") from None
    return pkcs11


@functools.lru_cache(maxsize=8)
def load_module(path: str) -> Any:
    """
    The PKCS#11 module at C{path}, loaded once per process.
    """
    pkcs11 = _pkcs11()
    try:
        return pkcs11.lib(path)
    except (RuntimeError, OSError) as e:
        raise TokenError(f"cannot load the PKCS#11 module {path}: {e}") from None


def module_for(uri: TokenUri, module: str | None) -> str:
    """
    The module path: C{module-path} in the URI or C{module} (the
    C{--pkcs11-module} option); both, and different, is refused.
    """
    if uri.module_path and module and uri.module_path != module:
        raise TokenError(f"the URI's module-path {uri.module_path} differs from "
                         f"--pkcs11-module {module}: give one")
    path = uri.module_path or module
    if not path:
        raise TokenError("which PKCS#11 module? give --pkcs11-module PATH or module-path "
                         "in the URI (OpenSC: /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so)")
    return path


def _describe_uri(uri: TokenUri) -> str:
    parts = [f"{name}={value!r}" for name, value in (
        ("token", uri.token), ("serial", uri.serial), ("manufacturer", uri.manufacturer),
        ("model", uri.model), ("slot-id", uri.slot_id)) if value is not None]
    return ", ".join(parts) or "any token"


def find_token(lib: Any, uri: TokenUri, module: str) -> Any:
    """
    The one token present that the URI's token attributes select.
    """
    pkcs11 = _pkcs11()
    try:
        slots = lib.get_slots(token_present=True)
    except pkcs11.PKCS11Error as e:
        raise TokenError(f"the PKCS#11 module {module} cannot list its slots "
                         f"({type(e).__name__})") from None
    found = []
    for slot in slots:
        if uri.slot_id is not None and slot.slot_id != uri.slot_id:
            continue
        try:
            token = slot.get_token()
        except pkcs11.PKCS11Error:
            continue  # removed meanwhile, or not recognised
        serial = token.serial.decode("ascii", "replace").strip() if isinstance(
            token.serial, bytes) else str(token.serial)
        if ((uri.token is None or token.label == uri.token)
                and (uri.serial is None or serial == uri.serial)
                and (uri.manufacturer is None or token.manufacturer_id == uri.manufacturer)
                and (uri.model is None or token.model == uri.model)):
            found.append(token)
    if not found:
        raise TokenError(f"no token present matches {_describe_uri(uri)} in {module} "
                         "(is the card or key inserted?)")
    if len(found) > 1:
        labels = ", ".join(repr(t.label) for t in found)
        raise TokenError(f"{len(found)} tokens match ({labels}): name one with token= "
                         "or serial= in the URI")
    return found[0]


def read_pin(uri: TokenUri, token: Any, prompt: Callable[[str], str] | None,
             warn: Callable[[str], None]) -> Any:
    """
    The PIN: C{pin-value} (with a warning), the file C{pin-source} names,
    the token's own PIN pad if it has one (protected authentication path),
    else C{prompt}.
    """
    pkcs11 = _pkcs11()
    if uri.pin_value is not None:
        warn("warning: the PIN is in the PKCS#11 URI (pin-value): anyone who can see the "
             "command line or the config file sees it; prefer pin-source=file:PATH")
        return uri.pin_value
    if uri.pin_source is not None:
        path = pin_file(uri.pin_source)
        try:
            with open(path, "rb") as f:
                return f.read().rstrip(b"\r\n").decode("utf-8")
        except OSError as e:
            raise TokenError(f"cannot read the PIN file {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise TokenError(f"the PIN file {path} is not UTF-8 text") from None
    if token.flags & pkcs11.TokenFlag.PROTECTED_AUTHENTICATION_PATH:
        warn(f"enter the PIN for token {token.label!r} on its PIN pad")
        return pkcs11.PROTECTED_AUTH
    if prompt is None:
        raise TokenError(f"token {token.label!r} needs a PIN: add pin-source=file:PATH to "
                         "the URI (standard input is not a terminal)")
    return prompt(f"PIN for token {token.label!r}: ")


def tries_left(flags: int) -> str:
    """
    What the token's flags say about the PIN tries left, as a clause.
    """
    pkcs11 = _pkcs11()
    flag = pkcs11.TokenFlag
    if flags & flag.USER_PIN_LOCKED:
        return "; the PIN is now locked"
    if flags & flag.USER_PIN_FINAL_TRY:
        return "; one try left before the PIN locks"
    if flags & flag.USER_PIN_COUNT_LOW:
        return "; few tries left before the PIN locks"
    return ""


def login(token: Any, pin: Any, slot_token: Callable[[], Any] | None = None) -> Any:
    """
    Open a session on C{token} and log in with C{pin}.
    """
    pkcs11 = _pkcs11()
    exc = pkcs11.exceptions
    try:
        return token.open(user_pin=pin)
    except exc.UserAlreadyLoggedIn:
        # Login is per process and token: another session here logged in.
        return token.open()
    except exc.PinIncorrect:
        try:
            flags = (slot_token or token.slot.get_token)().flags
        except pkcs11.PKCS11Error:
            flags = 0
        raise TokenError(f"wrong PIN for token {token.label!r}{tries_left(flags)}") from None
    except exc.PinLocked:
        raise TokenError(f"the PIN of token {token.label!r} is locked: unblock it with the "
                         "security officer PIN (pkcs11-tool --unblock-pin)") from None
    except (exc.PinInvalid, exc.PinLenRange):
        raise TokenError(f"token {token.label!r} refused the PIN as malformed "
                         "(wrong length or characters)") from None
    except exc.PinExpired:
        raise TokenError(f"the PIN of token {token.label!r} has expired: change it first") from None
    except (exc.TokenNotPresent, exc.DeviceRemoved):
        raise TokenError(f"token {token.label!r} was removed") from None
    except exc.FunctionCancelled:
        raise TokenError(f"PIN entry on token {token.label!r} was cancelled") from None
    except pkcs11.PKCS11Error as e:
        raise TokenError(f"cannot log in to token {token.label!r} ({type(e).__name__})") from None


def _one(session: Any, attrs: dict[Any, Any]) -> list[Any]:
    return list(session.get_objects(attrs))


def _selector(uri: TokenUri) -> dict[Any, Any]:
    pkcs11 = _pkcs11()
    attrs: dict[Any, Any] = {}
    if uri.object is not None:
        attrs[pkcs11.Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[pkcs11.Attribute.ID] = uri.id
    return attrs


def _named(uri: TokenUri) -> str:
    parts = [f"object={uri.object!r}" if uri.object is not None else "",
             f"id={uri.id.hex()}" if uri.id is not None else ""]
    return " ".join(p for p in parts if p) or "(no object= or id=)"


def find_public_key(session: Any, uri: TokenUri, private: Any = None) -> keys.PublicKey:
    """
    The public key the URI names (or C{private}'s, found by its CKA_ID or
    label): a public key object, else a certificate.
    """
    pkcs11 = _pkcs11()
    Attribute, ObjectClass = pkcs11.Attribute, pkcs11.ObjectClass
    attrs = _selector(uri)
    if private is not None:
        ident = private[Attribute.ID]
        attrs = {Attribute.ID: ident} if ident else {Attribute.LABEL: private[Attribute.LABEL]}
    for cls in (ObjectClass.PUBLIC_KEY, ObjectClass.CERTIFICATE):
        objs = _one(session, {**attrs, Attribute.CLASS: cls})
        if len(objs) > 1:
            raise TokenError(f"several {cls.name.lower().replace('_', ' ')}s match "
                             f"{_named(uri)}: name one with object= and id=")
        if objs:
            try:
                return _public_from(objs[0], cls == ObjectClass.CERTIFICATE)
            except keys.KeyFormatError as e:
                raise TokenError(f"the key on the token is not usable here: {e}") from None
    raise TokenError(f"no public key or certificate matches {_named(uri)} on the token")


def _public_from(obj: Any, is_cert: bool) -> keys.PublicKey:
    pkcs11 = _pkcs11()
    Attribute, KeyType = pkcs11.Attribute, pkcs11.KeyType
    if is_cert:
        cert = x509.load_der_x509_certificate(obj[Attribute.VALUE])
        return keys.check_public_key(cert.public_key())
    key_type = obj[Attribute.KEY_TYPE]
    if key_type == KeyType.RSA:
        n = int.from_bytes(obj[Attribute.MODULUS], "big")
        e = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
        return keys.check_public_key(rsa.RSAPublicNumbers(e, n).public_key())
    if key_type == KeyType.EC:
        from pkcs11.util.ec import encode_ec_public_key
        return keys.load_public_key_der(encode_ec_public_key(obj))
    if key_type == KeyType.EC_EDWARDS:
        point = obj[Attribute.EC_POINT]
        if len(point) == 34 and point[:2] == b"\x04\x20":
            point = point[2:]  # a DER OCTET STRING around the 32 bytes
        if len(point) != 32:
            raise keys.KeyFormatError("unsupported Edwards curve key (only Ed25519 is accepted)")
        return ed25519.Ed25519PublicKey.from_public_bytes(point)
    raise keys.KeyFormatError(f"unsupported key type {key_type!r} on the token: use Ed25519, "
                              "ECDSA P-256 or RSA 2048-4096")


#: The mechanism each key type signs with, by name (for "the token lacks").
MECHANISMS = {keys.ED25519: "EDDSA", keys.ECDSA_P256_SHA256: "ECDSA",
              keys.RSA_PSS_SHA256: "RSA_PKCS_PSS"}

#: Errors that mean the token went away (removed, or its session lost).
_GONE = ("DeviceRemoved", "TokenNotPresent", "SessionHandleInvalid", "SessionClosed",
         "DeviceError", "UserNotLoggedIn", "KeyHandleInvalid", "ObjectHandleInvalid")


class TokenKey(ExternalKey):
    """
    A private key on a token, logged in: signs in its session, one call at
    a time.  Once the token is gone (removed, timed out), it signs no more
    (L{broken} says why).
    """

    def __init__(self, label: str, session: Any, private: Any, public: keys.PublicKey) -> None:
        self.label = label
        self._session = session
        self._private = private
        self._public = public
        self.scheme = keys.scheme_for(public)
        self._lock = threading.Lock()

    def public_key(self) -> keys.PublicKey:
        return self._public

    def describe(self) -> str:
        return f"the {keys.describe(self._public)} key on token {self.label!r}"

    def close(self) -> None:
        """
        Close the session (the last one closed logs out of the token).
        """
        pkcs11 = _pkcs11()
        self.broken = self.broken or f"token {self.label!r}: the key was closed"
        try:
            self._session.close()
        except pkcs11.PKCS11Error:
            pass

    def sign_blocking(self, message: bytes) -> bytes:
        if self.broken is not None:
            raise TokenError(self.broken)
        with self._lock:
            return self._sign(message)

    def _sign(self, message: bytes) -> bytes:
        pkcs11 = _pkcs11()
        Mechanism = pkcs11.Mechanism
        try:
            if self.scheme == keys.ED25519:
                return bytes(self._private.sign(message, mechanism=Mechanism.EDDSA))
            digest = hashlib.sha256(message).digest()
            if self.scheme == keys.ECDSA_P256_SHA256:
                raw = bytes(self._private.sign(digest, mechanism=Mechanism.ECDSA))
                if len(raw) != 64:
                    raise TokenError(f"token {self.label!r} returned an ECDSA signature of "
                                     f"{len(raw)} bytes, not 64")
                r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
                return keys.ecdsa_der_low_s(r, s)
            return bytes(self._private.sign(
                digest, mechanism=Mechanism.RSA_PKCS_PSS,
                mechanism_param=(Mechanism.SHA256, pkcs11.MGF.SHA256, 32)))
        except pkcs11.PKCS11Error as e:
            name = type(e).__name__
            if name in _GONE:
                self.broken = (f"token {self.label!r} was removed or lost its session "
                               f"({name}): no more signing with it; reinsert it and restart")
                raise TokenError(self.broken) from None
            raise TokenError(f"token {self.label!r} refused to sign ({name})") from None


def check_mechanism(token: Any, scheme: int, public: keys.PublicKey) -> None:
    """
    @raise TokenError: the token lacks the mechanism C{scheme} needs.
    """
    pkcs11 = _pkcs11()
    name = MECHANISMS[scheme]
    try:
        have = token.slot.get_mechanisms()
    except pkcs11.PKCS11Error as e:
        raise TokenError(f"cannot list the mechanisms of token {token.label!r} "
                         f"({type(e).__name__})") from None
    if getattr(pkcs11.Mechanism, name) not in have:
        raise TokenError(f"the token lacks mechanism CKM_{name} (needed to sign with its "
                         f"{keys.describe(public)} key)")


def _locate(uri_text: str, module: str | None) -> tuple[TokenUri, Any]:
    """
    The parsed URI and the token it names (through the module it or
    C{module} gives).

    @raise TokenError: in one line (a bad URI too).
    """
    try:
        uri = parse(uri_text)
    except UriError as e:
        raise TokenError(str(e)) from None
    path = module_for(uri, module)
    return uri, find_token(load_module(path), uri, path)


def open_key(uri_text: str, module: str | None = None,
             prompt: Callable[[str], str] | None = None,
             warn: Callable[[str], None] = lambda line: None) -> TokenKey:
    """
    Log in to the token C{uri_text} names and return its private key, with
    the public key read from the token and the mechanism checked.

    @raise TokenError: anything wrong, in one line (L{UriError} too).
    """
    pkcs11 = _pkcs11()
    uri, token = _locate(uri_text, module)
    session = login(token, read_pin(uri, token, prompt, warn))
    try:
        privates = _one(session, {**_selector(uri),
                                  pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY})
        if not privates:
            raise TokenError(f"no private key matches {_named(uri)} on token {token.label!r}")
        if len(privates) > 1:
            raise TokenError(f"{len(privates)} private keys match {_named(uri)} on token "
                             f"{token.label!r}: name one with object= or id=")
        public = find_public_key(session, uri, privates[0])
        scheme = keys.scheme_for(public)
        check_mechanism(token, scheme, public)
    except TokenError:
        session.close()
        raise
    except pkcs11.PKCS11Error as e:
        session.close()
        raise TokenError(f"cannot read the key from token {token.label!r} "
                         f"({type(e).__name__})") from None
    return TokenKey(token.label, session, privates[0], public)


def read_public_key(uri_text: str, module: str | None = None) -> keys.PublicKey:
    """
    The public key C{uri_text} names, read without logging in (public key
    objects and certificates are public): for C{securechat-admin add-user
    --from-token}.
    """
    pkcs11 = _pkcs11()
    uri, token = _locate(uri_text, module)
    try:
        with token.open() as session:
            return find_public_key(session, uri)
    except pkcs11.PKCS11Error as e:
        raise TokenError(f"cannot read the public key from token {token.label!r} "
                         f"({type(e).__name__})") from None


__all__ = ["MECHANISMS", "TokenError", "TokenKey", "check_mechanism", "find_token", "login",
           "module_for", "open_key", "read_pin", "read_public_key", "tries_left"]
