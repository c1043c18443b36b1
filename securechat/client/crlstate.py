# -*- test-case-name: tests.test_crlstate -*-
"""
The client's memory of each CA's CRLs (docs/protocol.rst, section 9, "CRL
memory"): the highest CRL number verified and the serials revoked in the
CRLs verified, so that a relay replaying an older CRL (one from before its
certificate was revoked) is refused even after the client restarts.

The file is JSON::

    {"version": 1,
     "cas": {"SHA256:<CA certificate fingerprint>":
               {"crl_number": 7, "revoked": ["1f2e...", ...]}}}

serials in lower-case hexadecimal.  It is written atomically (temporary
file, fsync, rename) with mode 0600.  A file that cannot be read or parsed
is an error: resetting it silently would forget the very thing it guards.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from securechat.crypto.x509 import SeenCrl

FORMAT_VERSION = 1


class CorruptCrlState(ValueError):
    """
    The CRL memory file cannot be read; the message names it and says what
    to do.
    """


class CrlStore:
    """
    Each CA's L{SeenCrl}, kept in a file (or only in memory when C{path}
    is C{None}).
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._seen: dict[str, SeenCrl] = {}
        if path is not None and os.path.lexists(path):
            self._seen = self._load(path)

    def _corrupt(self, path: str, problem: str) -> CorruptCrlState:
        return CorruptCrlState(
            f"{path}: {problem}; it records the newest CRL seen from each CA, so that an old one "
            "cannot be replayed: fix or restore it (deleting it forgets that protection)")

    def _load(self, path: str) -> dict[str, SeenCrl]:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise CorruptCrlState(f"cannot read {path}: {e.strerror}") from None
        try:
            data: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise self._corrupt(path, f"not valid JSON ({e})") from None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise self._corrupt(path, f"not a version {FORMAT_VERSION} CRL memory file")
        cas = data.get("cas")
        if not isinstance(cas, dict):
            raise self._corrupt(path, 'no "cas" table')
        out: dict[str, SeenCrl] = {}
        for ca, entry in cas.items():
            try:
                number = entry["crl_number"]
                revoked = entry["revoked"]
                if (not isinstance(ca, str) or not ca.startswith("SHA256:")
                        or not isinstance(number, int) or isinstance(number, bool) or number < 0
                        or not isinstance(revoked, list)
                        or not all(isinstance(s, str) for s in revoked)):
                    raise ValueError
                out[ca] = SeenCrl(number, frozenset(int(s, 16) for s in revoked))
            except (KeyError, TypeError, ValueError):
                raise self._corrupt(path, f"the entry for {str(ca)[:60]!r} is malformed") from None
        return out

    def seen(self, ca: str) -> SeenCrl | None:
        """
        What is remembered of the CA with fingerprint C{ca}.
        """
        return self._seen.get(ca)

    def remember(self, ca: str, seen: SeenCrl) -> None:
        """
        Remember C{seen} for C{ca} and save, if it is news.  What another
        client process saved meanwhile is merged in, never overwritten by
        an older memory.

        @raise OSError: if the file cannot be written (nothing is lost:
            the previous file stays as it was).
        @raise CorruptCrlState: if the file was damaged meanwhile.
        """
        if self._seen.get(ca) == seen:
            return
        merged = dict(self._seen)
        if self.path is not None and os.path.lexists(self.path):
            for other, remembered in self._load(self.path).items():
                mine = merged.get(other)
                merged[other] = remembered if mine is None else mine.merged(
                    remembered.number, remembered.revoked)
        mine = merged.get(ca)
        merged[ca] = seen if mine is None else seen.merged(mine.number, mine.revoked)
        self._save(merged)
        self._seen = merged

    def _save(self, seen: dict[str, SeenCrl]) -> None:
        if self.path is None:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        data = {"version": FORMAT_VERSION, "cas": {
            ca: {"crl_number": s.number, "revoked": sorted(format(n, "x") for n in s.revoked)}
            for ca, s in sorted(seen.items())}}
        fd, tmp = tempfile.mkstemp(prefix=".seen_crls.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), 0o600)
                json.dump(data, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        try:  # the rename itself survives a crash once the directory is synced
            dfd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)
