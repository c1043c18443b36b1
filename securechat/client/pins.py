# -*- test-case-name: tests.test_client_core -*-
"""
The known-peers file: each peer's key fingerprint, pinned the first time we
chat (trust on first use), so that a relay handing over a different key is
noticed.

The file has one line per peer, C{NAME SHA256:fingerprint}, and one line
C{NAME SHA256:fingerprint replaced} for each key the peer was pinned to
before (C{trust} re-pins a peer and keeps the old pin so): a letter or
receipt signed with a previous key verifies only with a key pinned here,
now or before (L{securechat.crypto.keyhistory}).  It is written atomically
with mode 0600.
"""

from __future__ import annotations

import enum
import os
import tempfile

from securechat.crypto import keys
from securechat.wire.names import BadUserName, check_user_name


class PinStatus(enum.Enum):
    NEW = "new"
    MATCH = "match"
    CHANGED = "changed"


class CorruptPinFile(ValueError):
    """
    The known-peers file cannot be read; the message names the line.
    """


class PinStore:
    """
    Pinned peer fingerprints, kept in a file (or only in memory when
    C{path} is C{None}).
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._pins: dict[str, str] = {}
        #: The fingerprints each peer was pinned to before, oldest first.
        self._replaced: dict[str, list[str]] = {}
        if path is not None and os.path.exists(path):
            self._load(path)

    def _load(self, path: str) -> None:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split()
                try:
                    if (len(parts) not in (2, 3) or not parts[1].startswith("SHA256:")
                            or parts[2:] not in ([], ["replaced"])):
                        raise ValueError("expected NAME SHA256:FINGERPRINT [replaced]")
                    check_user_name(parts[0])
                except (ValueError, BadUserName) as e:
                    raise CorruptPinFile(f"{path}, line {number}: {e}") from None
                if len(parts) == 3:
                    self._replaced.setdefault(parts[0], []).append(parts[1])
                else:
                    self._pins[parts[0]] = parts[1]

    def fingerprint(self, name: str) -> str | None:
        return self._pins.get(name)

    def check(self, name: str, key: keys.PublicKey) -> PinStatus:
        """
        Compare C{key} with what is pinned for C{name}.
        """
        pinned = self._pins.get(name)
        if pinned is None:
            return PinStatus.NEW
        return PinStatus.MATCH if pinned == keys.fingerprint(key) else PinStatus.CHANGED

    def was_pinned(self, name: str, key: keys.PublicKey) -> bool:
        """Whether C{name} is or was pinned to C{key} here."""
        fingerprint = keys.fingerprint(key)
        return fingerprint == self._pins.get(name) or fingerprint in self._replaced.get(name, ())

    def pin(self, name: str, key: keys.PublicKey) -> None:
        """
        Pin (or re-pin) C{name} to C{key} and save; a pin it replaces is
        kept as replaced.
        """
        fingerprint, old = keys.fingerprint(key), self._pins.get(name)
        if old is not None and old != fingerprint and old not in self._replaced.get(name, ()):
            self._replaced.setdefault(name, []).append(old)
        self._pins[name] = fingerprint
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".known_peers.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("# securechat known peers: NAME FINGERPRINT\n")
                for name in sorted(self._pins):
                    f.write(f"{name} {self._pins[name]}\n")
                for name in sorted(self._replaced):
                    for fingerprint in self._replaced[name]:
                        f.write(f"{name} {fingerprint} replaced\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
