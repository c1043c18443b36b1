# -*- test-case-name: tests.test_handshake, tests.test_login_refusal -*-
"""
What the peer's AUTH must prove: the kind of identity the context and our
role call for, and a signature over the transcript that its key made,
checked in constant work whether or not the name has a key
(docs/protocol.rst, 5.1).  No IO, no Twisted.
"""

from __future__ import annotations

from securechat.crypto import keys
from securechat.crypto.config import CLIENT_SERVER
from securechat.crypto.schedule import signature_content
from securechat.errors import RemoteProtocolError
from securechat.wire.messages import Auth, CertificateIdentity, Identity, UserIdentity


def check_identity_kind(context: int, is_initiator: bool, identity: Identity) -> None:
    """
    The relay (to a client initiator in C{CLIENT_SERVER}) proves itself with
    a certificate; everyone else with a user identity.

    @raise RemoteProtocolError: C{wrong-identity-kind}.
    """
    if context == CLIENT_SERVER and is_initiator:
        wanted: type = CertificateIdentity
    else:
        wanted = UserIdentity
    if not isinstance(identity, wanted):
        raise RemoteProtocolError(
            "wrong-identity-kind", f"expected {wanted.__name__}, got {type(identity).__name__}"
        )


def check_signature(context: int, is_initiator: bool, verifier: keys.Verifier, auth: Auth,
                    transcript_hash: bytes, public_key: keys.PublicKey | None) -> None:
    """
    Verify the peer's signature over C{transcript_hash} (the transcript
    followed by the peer's identity) exactly once: with C{public_key} if
    the signature fits it (L{keys.signature_fits}), else (no key: the
    identity is refused; or a signature of another shape) with
    L{keys.stand_in_key}, whose outcome is ignored.  So the time spent
    depends on the signature received, not on the key the name has or
    whether it has one.

    @raise RemoteProtocolError: C{bad-signature}, when C{public_key} is
        given and did not verify it.
    """
    peer_role = b"responder" if is_initiator else b"initiator"
    content = signature_content(context, peer_role, transcript_hash)
    fits = public_key is not None and keys.signature_fits(public_key, auth.scheme, auth.signature)
    key = public_key if fits else keys.stand_in_key(auth.scheme, auth.signature)
    assert key is not None
    try:
        verifier(key, auth.scheme, auth.signature, content)
    except keys.SignatureError as e:
        problem = str(e)
    else:
        problem = "" if fits else "signature does not fit the key"
    if problem and public_key is not None:
        if not fits:
            problem = (f"signature scheme 0x{auth.scheme:04x} of {len(auth.signature)} bytes "
                       f"does not fit the {keys.describe(public_key)} key")
        raise RemoteProtocolError("bad-signature", f"peer signature: {problem}")


__all__ = ["check_identity_kind", "check_signature"]
