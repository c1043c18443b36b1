"""
A throwaway SoftHSM2 token for the PKCS#11 tests: a token directory in a
temporary directory (C{SOFTHSM2_CONF} points at a config naming it),
tokens initialised with C{softhsm2-util}, keys generated on them through
python-pkcs11.

SoftHSM reads its config once, when the module is first loaded in a
process, so one directory serves every test of a process: L{softhsm}
makes it on first use, with every token the tests need, and removes it at
exit.  Without softhsm2 the tests skip with a loud reason, or fail when
C{SECURECHAT_REQUIRE_SERVICES=1} (as in .ci/run).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from twisted.trial import unittest

MODULE_PATHS = ("/usr/lib/softhsm/libsofthsm2.so",
                "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
PIN = "123456"
SO_PIN = "12345678"
#: The token with one key of each type, labelled by type.
USER_TOKEN = "securechat-user"
#: A token for wrong-PIN tests (the failed logins mark it).
PIN_TOKEN = "securechat-pin"
#: Tokens a test may delete (removed mid-session).
REMOVABLE = ("securechat-removable-1", "securechat-removable-2", "securechat-removable-3")
KEY_TYPES = ("ed25519", "p256", "rsa")


@dataclass(frozen=True)
class SoftHSM:
    module: str
    directory: str
    conf: str

    def uri(self, label: str, token: str = USER_TOKEN, pin: bool = True) -> str:
        pin_part = f"?pin-value={PIN}" if pin else ""
        return f"pkcs11:token={token};object={label}{pin_part}"


def _missing() -> str | None:
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util not found"
    if not any(os.path.exists(p) for p in MODULE_PATHS):
        return f"the SoftHSM2 module is not at {' or '.join(MODULE_PATHS)}"
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        return "python-pkcs11 is not installed"
    return None


def softhsm(test: unittest.TestCase) -> SoftHSM:
    """
    The process's SoftHSM2 with its tokens; skip C{test} loudly when
    softhsm2 is missing (fail under SECURECHAT_REQUIRE_SERVICES=1).
    """
    missing = _missing()
    if missing is not None:
        reason = (f"SKIPPED LOUDLY: PKCS#11 tests need SoftHSM2 ({missing}): "
                  "apt-get install softhsm2")
        if os.environ.get("SECURECHAT_REQUIRE_SERVICES") == "1":
            test.fail(reason.replace("SKIPPED LOUDLY", "REQUIRED (SECURECHAT_REQUIRE_SERVICES=1)"))
        raise unittest.SkipTest(reason)
    return _make()


@functools.lru_cache(maxsize=1)
def _make() -> SoftHSM:
    module = next(p for p in MODULE_PATHS if os.path.exists(p))
    directory = tempfile.mkdtemp(prefix="sc-softhsm-")
    atexit.register(shutil.rmtree, directory, True)
    tokens = os.path.join(directory, "tokens")
    os.mkdir(tokens)
    conf = os.path.join(directory, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                "log.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = conf
    for label in (USER_TOKEN, PIN_TOKEN) + REMOVABLE:
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                        "--pin", PIN, "--so-pin", SO_PIN],
                       check=True, capture_output=True)
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism
    from pkcs11.util.ec import encode_named_curve_parameters

    lib = pkcs11.lib(module)
    for label in (USER_TOKEN, PIN_TOKEN) + REMOVABLE:
        token = lib.get_token(token_label=label)
        with token.open(user_pin=PIN, rw=True) as session:
            for n, kind in enumerate(KEY_TYPES, 1):
                ident = bytes([n])
                if kind == "rsa":
                    session.generate_keypair(KeyType.RSA, 2048, store=True, label=kind, id=ident)
                elif kind == "p256":
                    session.generate_keypair(
                        KeyType.EC, store=True, label=kind, id=ident,
                        public_template={Attribute.EC_PARAMS:
                                         encode_named_curve_parameters("secp256r1")})
                else:
                    session.generate_keypair(
                        KeyType.EC_EDWARDS, store=True, label=kind, id=ident,
                        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                        public_template={Attribute.EC_PARAMS:
                                         encode_named_curve_parameters("1.3.101.112")})
            if label == USER_TOKEN:
                # A second key labelled like another: for "several keys match".
                session.generate_keypair(
                    KeyType.EC, store=True, label="twin", id=b"\x10",
                    public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")})
                session.generate_keypair(
                    KeyType.EC, store=True, label="twin", id=b"\x11",
                    public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")})
    return SoftHSM(module, directory, conf)


def delete_token(hsm: SoftHSM, label: str) -> None:
    """
    "Remove" a token: delete it from SoftHSM's directory while sessions on
    it are open, as pulling a card out does to them.
    """
    subprocess.run(["softhsm2-util", "--delete-token", "--token", label],
                   check=True, capture_output=True)
