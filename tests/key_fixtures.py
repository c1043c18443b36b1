"""
Private key files as securechat-admin and cryptography write them, for the
browser client's key import tests (securechat/web/tests/pkcs8.test.js):
each with its passphrase and the DER public key the import must give.

Regenerate with ``.venv/bin/python -m tests.key_fixtures``.
"""

from __future__ import annotations

import json
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "securechat", "web", "tests", "key-fixtures.json")


def main() -> None:
    out = []
    for kind, key in (("ed25519", ed25519.Ed25519PrivateKey.generate()),
                      ("ecdsa-p256", ec.generate_private_key(ec.SECP256R1())),
                      ("rsa-2048", rsa.generate_private_key(65537, 2048))):
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        for passphrase in ("", "correct horse"):
            encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                          else serialization.NoEncryption())
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    encryption).decode()
            out.append({"kind": kind, "passphrase": passphrase, "pem": pem, "spki": spki.hex()})
    traditional = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode()
    with open(PATH, "w") as f:
        json.dump({"keys": out, "traditional": traditional}, f, indent=1)
        f.write("\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
