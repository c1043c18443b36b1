# -*- test-case-name: tests.test_admin -*-
"""
The commands of C{securechat-admin} (L{securechat.admin.cli} parses the
command line and runs one): each is a method of L{Admin}, given its output
stream, clock and standard input, working on one data directory
(L{securechat.datadir}).
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import os
from typing import Any, Callable, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat import pki
from securechat.crypto import keys
from securechat.datadir import DataDir
from securechat.datafiles import atomic_write
from securechat.server.store import maintenance
from securechat.users import parse_utc
from securechat.wire.names import check_user_name

#: How soon a running relay acts on a change (its reload interval, seconds).
RELAY_RELOAD_SECONDS = 2
#: How soon it serves a new certificate and CRL after the command ends: the
#: second check after they changed (the first finds them new, the second
#: settled; securechat.server.service).
RELAY_CREDENTIALS_SECONDS = 2 * RELAY_RELOAD_SECONDS


class AdminError(Exception):
    """
    A refusal or mistake, shown as one line.
    """


def _read_secret(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            secret = f.read().rstrip(b"\r\n")
    except OSError as e:
        raise AdminError(f"cannot read {path}: {e.strerror}") from None
    if not secret:
        raise AdminError(f"{path} is empty")
    return secret


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise AdminError(f"cannot read {what} {path}: {e.strerror}") from None


class Admin:
    """
    The commands, with their output stream and clock passed in.
    """

    def __init__(self, data: DataDir, out: TextIO, now: Callable[[], datetime.datetime],
                 stdin: TextIO) -> None:
        self.data = data
        self.out = out
        self.now = now
        self.stdin = stdin
        #: Token keys opened by this command, closed when it ends (which
        #: logs out of the token).
        self.opened: list[Any] = []

    def say(self, text: str) -> None:
        self.out.write(text + "\n")

    def ca_passphrase(self, a: argparse.Namespace) -> bytes | None:
        """
        The CA key's passphrase: from C{--ca-passphrase-file}, else asked on
        the terminal if the key is encrypted, else none.
        """
        if a.ca_passphrase_file is not None:
            return _read_secret(a.ca_passphrase_file)
        if not self.data.ca_key_encrypted():
            return None
        if not self.stdin.isatty():
            raise AdminError(f"{self.data.ca_key_path} is encrypted: give --ca-passphrase-file "
                             "(standard input is not a terminal)")
        answer = getpass.getpass(f"passphrase for the CA key {self.data.ca_key_path}: ")
        if not answer:
            raise AdminError("no passphrase given")
        return answer.encode("utf-8")

    def new_ca_passphrase(self, a: argparse.Namespace) -> bytes | None:
        """
        For C{init}: the passphrase to encrypt the new CA key with, from
        C{--ca-passphrase-file}, else asked twice on a terminal (empty: no
        passphrase), else none.
        """
        if a.ca_passphrase_file is not None:
            return _read_secret(a.ca_passphrase_file)
        if a.no_ca_passphrase or not self.stdin.isatty():
            return None
        first = getpass.getpass("passphrase to encrypt the CA key with (empty: none): ")
        if first != getpass.getpass("again: "):
            raise AdminError("the passphrases differ")
        return first.encode("utf-8") or None

    def init(self, a: argparse.Namespace) -> None:
        if self.data.initialized():  # before asking for a passphrase it would not use
            raise AdminError(f"{self.data.path} already has a CA ({self.data.ca_cert_path}); "
                             "not overwriting it")
        token = None
        if a.ca_key is not None:
            if a.ca_passphrase_file is not None:
                raise AdminError("--ca-key (a key on a token) has no passphrase: drop "
                                 "--ca-passphrase-file")
            if "pin-value=" in a.ca_key:
                raise AdminError("the --ca-key URI is kept in ca/ca.key: give the PIN with "
                                 "pin-source=file:PATH or on the terminal, not pin-value")
            token = self.open_token(a, a.ca_key)
            passphrase = None
        else:
            passphrase = self.new_ca_passphrase(a)
        with self.data.locked():
            self.data.init(a.server_name, self.now(), ca_name=a.ca_name,
                           ca_passphrase=passphrase,
                           server_key_type=a.server_key_type, days=a.days,
                           ca_token=token, ca_token_uri=a.ca_key)
        self.say(f"created the CA and the relay's certificate for {', '.join(a.server_name)} "
                 f"in {self.data.path}")
        if token is not None:
            self.say(f"the CA key is {token.describe()} ({a.ca_key}); the operations that "
                     "sign (revoke, refresh-crl, rotate-server-cert, issue-cert) ask the token")
        self.say(f"give users the CA certificate {self.data.ca_cert_path}")

    def open_token(self, a: argparse.Namespace, uri: str) -> Any:
        """
        Log in to the token key C{uri} names (the PIN from the URI's
        pin-source, the PIN pad, or asked on the terminal).
        """
        from securechat.token import TokenError, open_key
        prompt = getpass.getpass if self.stdin.isatty() else None
        try:
            key = open_key(uri, getattr(a, "pkcs11_module", None), prompt, self.say)
        except TokenError as e:
            raise AdminError(str(e)) from None
        self.opened.append(key)
        return key

    def new_public_key(self, a: argparse.Namespace) -> keys.PublicKey:
        """
        The user's public key: from the PEM file C{pubkey}, or read from
        the token C{--from-token URI} names (no PIN needed).
        """
        if (a.pubkey is None) == (a.from_token is None):
            raise AdminError("give the public key file or --from-token URI (one of them)")
        if a.from_token is None:
            if a.pkcs11_module:
                raise AdminError("--pkcs11-module goes with --from-token")
            return keys.load_public_key(_read(a.pubkey, "public key"))
        from securechat.token import TokenError, read_public_key
        try:
            return read_public_key(a.from_token, a.pkcs11_module)
        except TokenError as e:
            raise AdminError(str(e)) from None

    def add_user(self, a: argparse.Namespace) -> None:
        check_user_name(a.name)
        key = self.new_public_key(a)
        with self.data.locked():
            record = self.data.add_user(a.name, key, self.now())
        self.say(f"added {record.name} ({record.key_type}, {record.fingerprint}); "
                 "a running relay accepts them at once")

    def new_user(self, a: argparse.Namespace) -> None:
        check_user_name(a.name)
        if a.passphrase_file:
            passphrase = _read_secret(a.passphrase_file)
        elif a.no_passphrase:
            passphrase = None
        elif self.stdin.isatty():
            first = getpass.getpass(f"passphrase for {a.name}'s new key: ")
            if first != getpass.getpass("again: "):
                raise AdminError("the passphrases differ")
            if not first:
                raise AdminError("empty passphrase (use --no-passphrase to really store the key unencrypted)")
            passphrase = first.encode("utf-8")
        else:
            raise AdminError("give --passphrase-file (or --no-passphrase): standard input is not a terminal")
        key_path = os.path.join(a.out, f"{a.name}.key")
        pub_path = os.path.join(a.out, f"{a.name}.pub.pem")
        for path in (key_path, pub_path):
            if os.path.exists(path):
                raise AdminError(f"{path} already exists; not overwriting it")
        private = ed25519.Ed25519PrivateKey.generate()
        with self.data.locked():
            if self.data.load_users().lookup(a.name) is not None:
                raise AdminError(f"user {a.name} already exists")
            os.makedirs(a.out, mode=0o700, exist_ok=True)
            atomic_write(key_path, keys.private_key_pem(private, passphrase), 0o600)
            atomic_write(pub_path, keys.public_key_pem(private.public_key()), 0o644)
            record = self.data.add_user(a.name, private.public_key(), self.now())
        self.say(f"added {record.name} ({record.key_type}, {record.fingerprint}); "
                 "a running relay accepts them at once")
        self.say(f"private key: {key_path} (give it to {a.name} securely); public key: {pub_path}")

    def revoke(self, a: argparse.Namespace) -> None:
        with self.data.locked():
            record = self.data.revoke_user(a.name, self.now(), self.ca_passphrase(a))
        certs = f" and {len(record.certificates)} certificate(s)" if record.certificates else ""
        self.say(f"revoked {record.name}{certs}; the CRL was reissued.  A running relay refuses "
                 f"their logins at once and ends an open session within {RELAY_RELOAD_SECONDS} seconds")

    def rekey(self, a: argparse.Namespace) -> None:
        key = self.new_public_key(a)
        with self.data.locked():
            old = self.data.lookup_user(a.name)
            passphrase = self.ca_passphrase(a) if old.certificates and not old.revoked else None
            record = self.data.rekey_user(a.name, key, self.now(), passphrase,
                                          compromised=a.compromised is not None,
                                          since=_utc_option(a.compromised) if a.compromised else None)
        was = " (was revoked; active again)" if old.revoked else ""
        replaced = record.history[-1]
        signed = (f"letters and receipts the relay stored from {replaced.compromised} on do not verify "
                  f"with it (compromised)" if replaced.compromised else
                  f"letters and receipts the relay stored before {replaced.replaced} still verify "
                  "with it (not marked --compromised)")
        self.say(f"{record.name} now has the key {record.key_type}, {record.fingerprint}{was}; "
                 f"the old key {old.fingerprint} is refused for logins; {signed}.  A running relay "
                 f"applies it at once and ends a session under the old key within "
                 f"{RELAY_RELOAD_SECONDS} seconds")

    def list_users(self, a: argparse.Namespace) -> None:
        users = self.data.load_users()
        if not users.users:
            self.say("no users yet: securechat-admin add-user NAME PUBKEY.pem")
            return
        rows = [(r.name, r.key_type, r.fingerprint,
                 (f"REVOKED {r.revoked}" if r.revoked else "active")
                 + (f" (key replaced {r.history[-1].replaced})" if r.history else ""))
                for r in (users.users[n] for n in users.names())]
        widths = [max(len(row[i]) for row in rows + [("NAME", "TYPE", "FINGERPRINT", "STATUS")])
                  for i in range(4)]
        for row in [("NAME", "TYPE", "FINGERPRINT", "STATUS")] + rows:
            self.say("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())

    def issue_cert(self, a: argparse.Namespace) -> None:
        # Check where the certificate goes before recording one.
        if os.path.isdir(a.out):
            raise AdminError(f"--out {a.out} is a directory; give the certificate file's name")
        if not os.path.isdir(os.path.dirname(os.path.abspath(a.out))):
            raise AdminError(f"--out {a.out}: the directory {os.path.dirname(os.path.abspath(a.out))} "
                             "does not exist")
        try:
            csr = x509.load_pem_x509_csr(_read(a.csr, "CSR"))
        except ValueError as e:
            raise AdminError(f"{a.csr} is not a PEM certificate request: {e}") from None
        with self.data.locked():
            cert = self.data.issue_user_certificate(a.name, csr, self.now(),
                                                    self.ca_passphrase(a), a.days)
        atomic_write(a.out, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        self.say(f"issued a certificate for {a.name} (serial {cert.serial_number:x}) in {a.out}")

    def refresh_crl(self, a: argparse.Namespace) -> None:
        with self.data.locked():
            self.data.refresh_crl(self.now(), self.ca_passphrase(a), a.days)
        self.say(f"reissued the CRL, valid for {a.days} days")

    def rotate_server_cert(self, a: argparse.Namespace) -> None:
        with self.data.locked():
            cert = self.data.rotate_server_certificate(
                self.now(), a.server_name or None, self.ca_passphrase(a),
                a.server_key_type, a.days)
        self.say(f"issued a new relay certificate (serial {cert.serial_number:x}) and revoked the "
                 f"old one; a running relay on this data directory switches to it by itself within "
                 f"{RELAY_CREDENTIALS_SECONDS} seconds (at once on SIGHUP), no restart needed")

    def backup(self, a: argparse.Namespace) -> None:
        if a.store != maintenance.SQLITE:
            raise AdminError("the mailbox is in PostgreSQL: back it up with pg_dump, e.g. "
                             f"pg_dump --format=custom --file={a.dest} DBNAME (README, "
                             "\"PostgreSQL\")")
        letters = maintenance.backup(self.data.mailbox_path, a.dest)
        self.say(f"backed up the mailbox ({letters} letters) to {a.dest} (mode 0600); to restore: "
                 f"stop the relay, copy it over {self.data.mailbox_path}, start the relay")

    def mailbox_usage(self, a: argparse.Namespace) -> None:
        rows = [(u.user, str(u.letters), str(u.bytes))
                for u in maintenance.usage(self.data.mailbox_path, int(self.now().timestamp()),
                                            a.store)]
        if not rows:
            self.say("no letters in any mailbox")
            return
        header = ("USER", "LETTERS", "BYTES")
        widths = [max(len(row[i]) for row in rows + [header]) for i in range(3)]
        for row in [header] + rows:
            self.say("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())

    def purge_expired(self, a: argparse.Namespace) -> None:
        purged = maintenance.purge_expired(self.data.mailbox_path, int(self.now().timestamp()),
                                           a.store)
        self.say(f"purged {purged} expired letters")

    def show(self, a: argparse.Namespace) -> None:
        ca = self.data.load_ca_certificate()
        leaf = self.data.load_server_chain()[0]
        crl = self.data.load_crl()
        self.say(f"data directory: {self.data.path}")
        self.say(f"CA: {ca.subject.rfc4514_string()}, {keys.fingerprint(ca.public_key())}, "  # type: ignore[arg-type]
                 f"until {ca.not_valid_after_utc:%Y-%m-%d}; give users {self.data.ca_cert_path}")
        self.say(f"relay certificate: {', '.join(pki.certificate_names(leaf)) or 'no names'}, "
                 f"until {leaf.not_valid_after_utc:%Y-%m-%d}")
        self.say(f"CRL: {len(list(crl))} revoked, next update {crl.next_update_utc:%Y-%m-%d}")
        self.say(f"users: {len(self.data.load_users().users)}")


def _utc_option(text: str) -> datetime.datetime:
    """A time given on the command line, as C{users.json} writes them."""
    try:
        return parse_utc(text)
    except ValueError:
        raise AdminError(f"--compromised {text}: give a UTC time like 2026-12-01T09:00:00Z") from None
