# -*- test-case-name: tests.test_client_cli,tests.test_client_config -*-
"""
The client's config file: its place, its keys, reading it (an unknown key
or section refused, naming the closest valid key), paths in it (C{~} and
environment variables), and the commented example C{--init-config} writes.
"""

from __future__ import annotations

import configparser
import difflib
import os
import re


#: The settings, by long option name; the config file takes the same keys.
KEYS = ("server", "ca", "server-name", "user", "key", "passphrase-file", "known-peers",
        "pkcs11-module", "irc-password-file")
#: The settings that are paths (a leading C{~} is expanded).
PATH_KEYS = ("ca", "key", "passphrase-file", "known-peers", "pkcs11-module", "irc-password-file")


class ClientError(Exception):
    """
    A problem the user can fix; shown as one line.
    """


def config_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "securechat")


def expand_path(value: str, key: str) -> str:
    """
    C{value} with a leading C{~} and environment variables (C{$VAR},
    C{${VAR}}) expanded; an unset variable is refused, naming it and the
    setting C{key}.
    """
    expanded = os.path.expandvars(value)
    unset = re.search(r"\$(\w+|\{[^}]*\})", expanded)
    if unset:
        raise ClientError(f"{key} = {value}: the environment variable "
                          f"{unset.group(1).strip('{}')} is not set")
    return os.path.expanduser(expanded)


EXAMPLE_CONFIG = """\
# securechat-client settings (securechat-client --help explains each).
# Options on the command line win over these.  In paths, a leading ~ is
# your home directory and $VAR an environment variable.  An unknown key is
# refused, so a misspelling is noticed.

[securechat]
# The relay: tcp:HOST:PORT, tls:HOST:PORT (TLS around the protocol, for a
# relay's ssl: listener) or unix:PATH.
#server = tcp:chat.example.org:7070

# The operator's CA certificate (ca/ca.pem in the relay's data directory).
#ca = ~/.config/securechat/ca.pem

# The name the relay's certificate must carry (default: the host above).
#server-name = chat.example.org

# Your user name and your private key (PEM), or a key on a smart card or
# token as a PKCS#11 URI (write each % in it as %%).
#user = alice
#key = ~/.config/securechat/me.key

# A file holding the key's passphrase (default: asked on the terminal).
#passphrase-file = $XDG_RUNTIME_DIR/securechat.pass

# Pinned peer keys (default: known_peers beside this file).
#known-peers = ~/.config/securechat/known_peers

# The PKCS#11 module for a key on a token (OpenSC's for most smart cards).
#pkcs11-module = /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so

# For securechat-client --irc (the local IRC gateway): a file whose first
# line is the password your IRC client must send (PASS).
#irc-password-file = ~/.config/securechat/irc.pass
"""


def write_example_config(path: str) -> None:
    """
    Write L{EXAMPLE_CONFIG} at C{path}, never over an existing file.
    """
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "x", encoding="utf-8") as f:
            f.write(EXAMPLE_CONFIG)
    except FileExistsError:
        raise ClientError(f"{path} already exists; not overwritten") from None
    except OSError as e:
        raise ClientError(f"cannot write {path}: {e.strerror}") from None


def read_config(path: str) -> dict[str, str]:
    """
    The settings in the config file C{path}: section C{[securechat]}, keys
    from L{KEYS} (C{_} may stand for C{-}).  Anything else is refused in one
    line naming the file, the key and the closest valid key.
    """
    cp = configparser.ConfigParser()
    try:
        cp.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        raise ClientError(f"cannot read {path}: {e}") from None
    for section in cp.sections():
        if section != "securechat":
            raise ClientError(f"{path}: unknown section [{section}]; the settings go in [securechat]")
    settings: dict[str, str] = {}
    try:
        found = (cp.items("securechat") if cp.has_section("securechat")
                 else list(cp.defaults().items()))
    except configparser.InterpolationError as e:
        # A PKCS#11 URI's percent escapes, say: ConfigParser reads % itself.
        raise ClientError(f"{path}: {e.message.splitlines()[0]} (write a % as %% in the "
                          "config file, e.g. in a PKCS#11 URI)") from None
    for raw, value in found:
        key = raw.replace("_", "-")
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"the keys are {', '.join(KEYS)}"
            raise ClientError(f"{path}: unknown key '{raw}' in [securechat]; {hint}")
        settings[key] = value
    return settings
