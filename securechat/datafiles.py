# -*- test-case-name: tests.test_datadir -*-
"""
The data directory's files: everything the relay and the operator's tool
keep on disk, and the only code that reads or writes them
(L{securechat.datadir} holds the operations on them: the CA, the CRL, the
users).

Layout::

    DATA_DIR/                 mode 0700
      ca/ca.pem               CA certificate: users need it to verify the relay
      ca/ca.key               CA private key, PKCS#8 PEM, 0600 (encrypted if asked)
      ca/crl.pem              the current CRL
      ca/state.json           certificates issued, serials revoked, next CRL number
      server/server.pem       the relay's certificate (leaf first)
      server/server.key       the relay's private key, PKCS#8 PEM, 0600, unencrypted
      users.json              registered users
      mailbox.sqlite3         letters, receipts, prekeys (securechat.server.store), 0600
      .lock                   held (flock) by commands that change anything; the
                              relay does not adopt its certificate and CRL while
                              it is held (L{DataFiles.changing})

Every file is written atomically (a temporary file in the same directory,
fsync, rename, fsync of the directory), so a crash leaves either the old or
the new version, never a torn one; when root writes into a directory owned
by another user, the files and subdirectories are given to that user.  A
missing, unreadable or mangled file is reported as L{CorruptDataDir} with
one sentence naming the file.

Nothing is believed that another user could have written, or read when it
is a private key (L{securechat.filetrust}): every file is checked as it is
read, and L{DataFiles.verify} checks the whole directory; a refusal is an
L{UnsafeDataDir} naming the file and the fix.  The user records themselves
are in L{securechat.users}.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from securechat.crypto import keys
from securechat.crypto.signer import ExternalKey
from securechat.extsign import CaKey
from securechat.users import UserDirectory, user_from_json
from securechat.filetrust import (UnsafeFile, check_file, check_link, new_file_owner,
                                  permission_denied, verify_tree)

FORMAT_VERSION = 1

#: How long a changing command waits for the directory's lock before
#: refusing (seconds): long enough for a relay's L{DataFiles.changing} test,
#: which holds it for two system calls, far shorter than any command.
LOCK_WAIT = 0.25


class CorruptDataDir(Exception):
    """
    The data directory is missing something or holds something unreadable;
    the message says which file and what is wrong.
    """


class UnsafeDataDir(CorruptDataDir):
    """
    A file or directory is not safe to trust (L{securechat.filetrust}): the
    message names it, says why and gives the command that fixes it.
    """


class DataDirError(Exception):
    """
    An operation on the data directory was refused (duplicate user, CA
    already present, ...); the message says why.
    """


def atomic_write(path: str, data: bytes, mode: int = 0o600,
                 owner: tuple[int, int] | None = None) -> None:
    """
    Replace C{path} with C{data} atomically, with permissions C{mode}: a
    temporary file in the same directory is written, flushed to disk and
    renamed over C{path}, and the directory itself is flushed, so a crash
    leaves the old or the new content and no temporary file is left behind.

    @param owner: the user and group ids to give the file, if not the
        writer's (root writing into the service user's directory).
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            # Name the file the caller asked for, not the temporary one.
            raise OSError(e.errno, e.strerror, path) from None
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class RelayCredentials:
    """
    The relay's identity as stored in the data directory.

    @ivar private_key: the relay's private key.
    @ivar chain: its certificate chain as DER, leaf first.
    @ivar crl: the current CRL as DER.
    @ivar ca: the CA certificate the chain leads to.
    """

    private_key: keys.PrivateKey
    chain: tuple[bytes, ...]
    crl: bytes
    ca: x509.Certificate


@dataclass
class CAState:
    """
    What the CA has done: certificates issued, serials revoked, CRL number.
    """

    issued: list[dict[str, str]] = field(default_factory=list)
    revoked: list[dict[str, str]] = field(default_factory=list)
    crl_number: int = 1
    server_serial: str | None = None


class DataFiles:
    """
    One data directory's files: where each is, reading and checking them,
    writing them atomically, and the lock.  L{securechat.datadir.DataDir}
    adds the operations.

    @ivar allow_readable_keys: accept private keys that others can read.
    @ivar uid: the effective user id of whoever uses it (the files must
        belong to that user or to root).
    """

    def __init__(self, path: str, allow_readable_keys: bool = False, uid: int | None = None) -> None:
        self.path = os.path.abspath(path)
        self.allow_readable_keys = allow_readable_keys
        self.uid = os.geteuid() if uid is None else uid
        self.ca_dir = os.path.join(self.path, "ca")
        self.server_dir = os.path.join(self.path, "server")
        self.ca_cert_path = os.path.join(self.ca_dir, "ca.pem")
        self.ca_key_path = os.path.join(self.ca_dir, "ca.key")
        self.crl_path = os.path.join(self.ca_dir, "crl.pem")
        self.state_path = os.path.join(self.ca_dir, "state.json")
        self.server_cert_path = os.path.join(self.server_dir, "server.pem")
        self.server_key_path = os.path.join(self.server_dir, "server.key")
        self.users_path = os.path.join(self.path, "users.json")
        #: The relay's mailbox (L{securechat.server.store}), created by the relay.
        self.mailbox_path = os.path.join(self.path, "mailbox.sqlite3")
        self.lock_path = os.path.join(self.path, ".lock")
        #: Opens the CA key when it is on a token (C{ca/ca.key} holds its
        #: PKCS#11 URI): set by the admin tool, which knows the module and
        #: can ask for the PIN.
        self.ca_token_opener: Callable[[str], ExternalKey] | None = None

    # -- reading ---------------------------------------------------------------

    def initialized(self) -> bool:
        """
        Whether C{init} has run here (the CA certificate exists).
        """
        return os.path.exists(self.ca_cert_path)

    def _secret(self, path: str) -> bool:
        return path in (self.ca_key_path, self.server_key_path)

    def _read(self, path: str) -> bytes:
        return self._read_stamped(path)[0]

    def _read_stamped(self, path: str) -> tuple[bytes, tuple[int, int, int]]:
        """
        Read a file of the directory, refusing it unless it can be trusted
        (L{securechat.filetrust.check_file}).
        """
        try:
            check_link(path, self.path)
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                check_file(path, st, self.uid, self._secret(path), self.allow_readable_keys)
                return f.read(), (st.st_ino, st.st_size, st.st_mtime_ns)
        except UnsafeFile as e:
            raise UnsafeDataDir(str(e)) from None
        except FileNotFoundError:
            raise CorruptDataDir(f"{path} is missing (run `securechat-admin init` first?)") from None
        except PermissionError:
            raise UnsafeDataDir(permission_denied(path, self.uid)) from None
        except OSError as e:
            raise CorruptDataDir(f"cannot read {path}: {e.strerror}") from None

    def files(self) -> list[str]:
        """
        Every file the directory holds (whether or not it exists yet).
        """
        return [self.ca_cert_path, self.ca_key_path, self.crl_path, self.state_path,
                self.server_cert_path, self.server_key_path, self.users_path, self.mailbox_path]

    def verify(self) -> None:
        """
        Check that the directory, its subdirectories and every file in it
        can be trusted: owned by the running user or root, writable by
        nobody else, private keys readable by their owner only, no symbolic
        link out of the directory (L{securechat.filetrust}).

        @raise UnsafeDataDir: naming the first problem and its fix.
        """
        try:
            verify_tree(self.path, [self.ca_dir, self.server_dir], self.files(),
                        {self.ca_key_path, self.server_key_path}, self.uid, self.allow_readable_keys)
        except UnsafeFile as e:
            raise UnsafeDataDir(str(e)) from None

    def _owner(self) -> tuple[int, int] | None:
        return new_file_owner(self.path)

    def _write(self, path: str, data: bytes, mode: int) -> None:
        atomic_write(path, data, mode, self._owner())

    def _makedirs(self, path: str) -> None:
        owner = self._owner() if os.path.isdir(self.path) else None
        os.makedirs(path, mode=0o700, exist_ok=True)
        if owner is not None:
            os.chown(path, *owner)

    def _json(self, path: str) -> tuple[dict[str, Any], tuple[int, int, int]]:
        raw, stamp = self._read_stamped(path)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptDataDir(f"{path} is not valid JSON: {e}") from None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise CorruptDataDir(f"{path} is not a version {FORMAT_VERSION} securechat file")
        return data, stamp

    def stamp(self, path: str) -> tuple[int, int, int] | None:
        """
        Identifies a file's current version cheaply (inode, size, mtime).
        """
        try:
            st = os.stat(path)
        except OSError:
            # Missing or not reachable: reading it will say which.
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def load_users(self) -> UserDirectory:
        """
        Read C{users.json}, checking every entry (name, key, dates).

        @raise CorruptDataDir: naming the file, and the user if one entry is
            wrong.
        """
        data, stamp = self._json(self.users_path)
        users = data.get("users")
        if not isinstance(users, dict):
            raise CorruptDataDir(f"{self.users_path}: no \"users\" table")
        out = UserDirectory(stamp=stamp)
        for name, entry in users.items():
            try:
                out.users[name] = user_from_json(name, entry)
            except (KeyError, TypeError, AttributeError, ValueError) as e:
                raise CorruptDataDir(f"{self.users_path}: user {name!r} is malformed ({e})") from None
        return out

    def load_state(self) -> CAState:
        data, _ = self._json(self.state_path)
        try:
            return CAState(
                issued=list(data["issued"]), revoked=list(data["revoked"]),
                crl_number=int(data["crl_number"]), server_serial=data.get("server_serial"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptDataDir(f"{self.state_path} is malformed ({e})") from None

    def load_ca_certificate(self) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self._read(self.ca_cert_path))
        except ValueError as e:
            raise CorruptDataDir(f"{self.ca_cert_path} is not a PEM certificate ({e})") from None

    def ca_key_encrypted(self) -> bool:
        """
        Whether the CA key is encrypted with a passphrase.
        """
        return b"ENCRYPTED" in self._read(self.ca_key_path).split(b"\n", 1)[0]

    def ca_key_on_token(self) -> str | None:
        """
        The PKCS#11 URI of the CA key if it is on a token (C{ca/ca.key}
        then holds the URI, not a key), else None.
        """
        first = self._read(self.ca_key_path).split(b"\n", 1)[0].strip()
        if first[:7].lower() != b"pkcs11:":
            return None
        return first.decode("utf-8", "replace")

    def load_ca_key(self, passphrase: bytes | None) -> CaKey:
        uri = self.ca_key_on_token()
        if uri is not None:
            return self._open_ca_token(uri)
        try:
            key = keys.load_private_key(self._read(self.ca_key_path), passphrase)
        except keys.WrongPassphrase as e:
            hint = "" if passphrase else " (use --ca-passphrase-file)"
            raise DataDirError(f"{self.ca_key_path}: {e}{hint}") from None
        except keys.KeyFormatError as e:
            raise CorruptDataDir(f"{self.ca_key_path}: {e}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CorruptDataDir(f"{self.ca_key_path} is not the CA's ECDSA key")
        return key

    def _open_ca_token(self, uri: str) -> CaKey:
        if self.ca_token_opener is None:
            raise DataDirError(f"the CA key is on a token ({uri}): this command cannot use it")
        key = self.ca_token_opener(uri)
        ca = self.load_ca_certificate().public_key()
        if keys.public_key_der(key.public_key()) != keys.public_key_der(ca):  # type: ignore[arg-type]
            raise DataDirError(f"the key on the token ({uri}) is not the CA's key: its "
                               f"fingerprint is {keys.fingerprint(key.public_key())}, the CA "
                               f"certificate's {keys.fingerprint(ca)}")  # type: ignore[arg-type]
        return key

    def load_crl(self) -> x509.CertificateRevocationList:
        try:
            return x509.load_pem_x509_crl(self._read(self.crl_path))
        except ValueError as e:
            raise CorruptDataDir(f"{self.crl_path} is not a PEM CRL ({e})") from None

    def load_server_chain(self) -> list[x509.Certificate]:
        try:
            chain = x509.load_pem_x509_certificates(self._read(self.server_cert_path))
        except ValueError as e:
            raise CorruptDataDir(f"{self.server_cert_path} is not a PEM certificate ({e})") from None
        return chain

    def load_server_key(self) -> keys.PrivateKey:
        try:
            return keys.load_private_key(self._read(self.server_key_path), None)
        except keys.KeyFormatError as e:
            raise CorruptDataDir(f"{self.server_key_path}: {e}") from None

    def relay_credentials(self) -> RelayCredentials:
        """
        Everything the relay needs to prove itself, read and cross-checked:
        the private key must belong to the leaf certificate.

        @raise CorruptDataDir: naming the missing, unreadable or mismatched
            file.
        """
        key = self.load_server_key()
        chain = self.load_server_chain()
        try:
            leaf_key = keys.check_public_key(chain[0].public_key())
        except keys.KeyFormatError as e:
            raise CorruptDataDir(f"{self.server_cert_path}: {e}") from None
        if keys.public_key_der(leaf_key) != keys.public_key_der(key.public_key()):
            raise CorruptDataDir(
                f"{self.server_key_path} does not belong to the certificate in {self.server_cert_path}")
        crl = self.load_crl()
        ca = self.load_ca_certificate()
        der = serialization.Encoding.DER
        return RelayCredentials(key, tuple(c.public_bytes(der) for c in chain),
                                crl.public_bytes(der), ca)

    def server_credentials(self) -> tuple[keys.PrivateKey, list[bytes], bytes]:
        """
        L{relay_credentials} without the CA certificate, as a tuple: the
        private key, the chain as DER (leaf first) and the CRL as DER.
        """
        creds = self.relay_credentials()
        return creds.private_key, list(creds.chain), creds.crl

    # -- writing ---------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, wait: float = LOCK_WAIT,
               sleep: Callable[[float], object] = time.sleep) -> Iterator[None]:
        """
        Hold the directory's lock (one changing command at a time).  A lock
        held for less than C{wait} seconds (a relay's L{changing} test) is
        waited for; one held longer is another command's, and refused.
        """
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            owner = self._owner()
            if owner is not None:
                os.fchown(fd, *owner)
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise DataDirError(
                            f"{self.path} is locked by another securechat-admin command") from None
                sleep(0.01)
            yield
        finally:
            os.close(fd)

    def changing(self) -> bool:
        """
        Whether a command is changing the directory now (holds the lock
        L{locked} takes), so that what is on disk may be half written: a
        relay reads its certificate and CRL only when this is false.  The
        test takes a shared lock and drops it at once; a command starting
        in between waits for it (L{locked}).  With no lock file (no command
        has run here yet) or none this user can open, nothing is held.
        """
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            return e.errno in (errno.EAGAIN, errno.EACCES)
        finally:
            os.close(fd)
        return False

    def save_users(self, directory: UserDirectory) -> None:
        data = {"version": FORMAT_VERSION,
                "users": {n: directory.users[n].to_json() for n in directory.names()}}
        self._write(self.users_path, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n", 0o600)

    def save_state(self, state: CAState) -> None:
        data = {"version": FORMAT_VERSION, "issued": state.issued, "revoked": state.revoked,
                "crl_number": state.crl_number, "server_serial": state.server_serial}
        self._write(self.state_path, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n", 0o600)
