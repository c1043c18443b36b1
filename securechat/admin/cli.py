# -*- test-case-name: tests.test_admin -*-
"""
C{securechat-admin}: the operator's tool for the CA, the relay's
certificate, users and revocation.  Every command works on one data
directory (L{securechat.datadir}).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import getpass
import os
import sys
from typing import Any, Callable, Sequence, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat import __version__, pki
from securechat.crypto import keys
from securechat.crypto.keys import KeyFormatError
from securechat.crypto.signer import SigningError
from securechat.datadir import DataDir
from securechat.datafiles import CorruptDataDir, DataDirError, atomic_write
from securechat.server.store import maintenance
from securechat.server.store.engine import UnusableDatabase
from securechat.server.store.maintenance import MaintenanceError

#: How soon a running relay acts on a change (its reload interval, seconds).
RELAY_RELOAD_SECONDS = 2
from securechat.wire.names import BadUserName, check_user_name

PROG = "securechat-admin"


class AdminError(Exception):
    """
    A refusal or mistake, shown as one line.
    """


def default_data_dir() -> str:
    """
    C{$SECURECHAT_DATA_DIR}, else C{~/.local/share/securechat}.
    """
    return os.environ.get("SECURECHAT_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), ".local", "share", "securechat")


def _days(text: str) -> int:
    """
    An argparse type: a whole number of days, at least 1.
    """
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 day, not {days}")
    return days


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
            record = self.data.rekey_user(a.name, key, self.now(), passphrase)
        was = " (was revoked; active again)" if old.revoked else ""
        self.say(f"{record.name} now has the key {record.key_type}, {record.fingerprint}{was}; "
                 f"the old key {old.fingerprint} is refused.  A running relay applies it at once "
                 f"and ends a session under the old key within {RELAY_RELOAD_SECONDS} seconds")

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
                 f"{RELAY_RELOAD_SECONDS} seconds (at once on SIGHUP), no restart needed")

    def backup(self, a: argparse.Namespace) -> None:
        letters = maintenance.backup(self.data.mailbox_path, a.dest)
        self.say(f"backed up the mailbox ({letters} letters) to {a.dest} (mode 0600); to restore: "
                 f"stop the relay, copy it over {self.data.mailbox_path}, start the relay")

    def mailbox_usage(self, a: argparse.Namespace) -> None:
        rows = [(u.user, str(u.letters), str(u.bytes))
                for u in maintenance.usage(self.data.mailbox_path, int(self.now().timestamp()))]
        if not rows:
            self.say("no letters in any mailbox")
            return
        header = ("USER", "LETTERS", "BYTES")
        widths = [max(len(row[i]) for row in rows + [header]) for i in range(3)]
        for row in [header] + rows:
            self.say("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())

    def purge_expired(self, a: argparse.Namespace) -> None:
        purged = maintenance.purge_expired(self.data.mailbox_path, int(self.now().timestamp()))
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


def _global_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    """
    The options every command takes, accepted before or after the command
    name (after it, they must not reset what was given before it).
    """
    default: object = argparse.SUPPRESS if suppress else None
    p.add_argument("--data-dir", "-d", default=default, metavar="DIR",
                   help="the relay's data directory [default: $SECURECHAT_DATA_DIR, else "
                   "~/.local/share/securechat]")
    p.add_argument("--allow-readable-keys", action="store_true",
                   default=argparse.SUPPRESS if suppress else False,
                   help="accept a CA or relay private key that its group or others can read "
                   "(refused by default, as OpenSSH refuses such key files)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Manage a securechat relay's CA, certificate, users and mailbox.  Run it as the user "
        "that owns the data directory (the relay's user), or as root: files root writes keep "
        "the directory's owner.",
        epilog="The data directory defaults to $SECURECHAT_DATA_DIR, else ~/.local/share/securechat.  "
        "Options before the command may also come after it.",
    )
    _global_options(p, suppress=False)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".")
        _global_options(sp, suppress=True)
        return sp

    def from_token(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--from-token", metavar="URI",
                        help="read the public key from a smart card or token instead: a "
                        "PKCS#11 URI, e.g. 'pkcs11:token=LABEL;object=KEY' (no PIN needed)")
        sp.add_argument("--pkcs11-module", metavar="PATH",
                        help="the PKCS#11 module for --from-token (and for the CA key, if "
                        "it is on a token), e.g. "
                        "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so "
                        "[default: module-path in the URI]")

    def ca_pass(sp: argparse.ArgumentParser, module: bool = True) -> None:
        sp.add_argument("--ca-passphrase-file", metavar="FILE",
                        help="file with the CA key's passphrase, if it has one "
                        "[default: ask on the terminal]")
        if module:
            sp.add_argument("--pkcs11-module", metavar="PATH",
                            help="the PKCS#11 module, if the CA key is on a token (init "
                            "--ca-key) [default: module-path in its URI]")

    sp = command("init", "create the CA, the relay's certificate and an empty user list")
    sp.add_argument("--server-name", action="append", required=True, metavar="NAME",
                    help="a name clients connect to (DNS name or IP address); repeat for several")
    sp.add_argument("--ca-name", metavar="NAME",
                    help="the CA's common name [default: securechat CA for the first --server-name]")
    secret = sp.add_mutually_exclusive_group()
    secret.add_argument("--ca-passphrase-file", metavar="FILE",
                        help="encrypt the CA key with the passphrase in this file "
                        "[default: ask on a terminal (empty: unencrypted), else unencrypted]")
    secret.add_argument("--no-ca-passphrase", action="store_true",
                        help="store the CA key unencrypted without asking")
    sp.add_argument("--ca-key", metavar="URI",
                    help="keep the CA key on a smart card or token instead: the PKCS#11 URI "
                    "of an ECDSA P-256 key on it, e.g. 'pkcs11:token=CA;object=ca' (kept in "
                    "ca/ca.key; later commands that sign ask the token)")
    sp.add_argument("--pkcs11-module", metavar="PATH",
                    help="the PKCS#11 module for --ca-key [default: module-path in the URI]")
    sp.add_argument("--server-key-type", choices=pki.SERVER_KEY_TYPES, default="ed25519",
                    help="the relay's key type [default: %(default)s]")
    sp.add_argument("--days", type=_days, default=pki.SERVER_DAYS,
                    help="relay certificate lifetime in days [default: %(default)s]")
    sp.set_defaults(run=Admin.init)

    sp = command("add-user", "register a user from a PEM public key "
                 "(Ed25519, ECDSA P-256, RSA 2048-4096); a running relay accepts them at once")
    sp.add_argument("name", help="the user's name")
    sp.add_argument("pubkey", nargs="?",
                    help="PEM public key file (e.g. from openssl pkey -pubout)")
    from_token(sp)
    sp.set_defaults(run=Admin.add_user)

    sp = command("new-user", "generate an Ed25519 key pair for a user and register it")
    sp.add_argument("name", help="the user's name")
    sp.add_argument("--out", required=True, metavar="DIR",
                    help="directory for NAME.key and NAME.pub.pem")
    secret = sp.add_mutually_exclusive_group()
    secret.add_argument("--passphrase-file", metavar="FILE",
                        help="encrypt the private key with this file's passphrase "
                        "[default: ask twice on the terminal]")
    secret.add_argument("--no-passphrase", action="store_true",
                        help="store the private key unencrypted")
    sp.set_defaults(run=Admin.new_user)

    sp = command("rekey", "give a user a new public key (also a revoked user, who becomes "
                 "active again); the old key is refused from then on and kept in the history")
    sp.add_argument("name", help="the user's name")
    sp.add_argument("pubkey", nargs="?", help="PEM public key file with the new key")
    from_token(sp)
    ca_pass(sp, module=False)  # from_token's --pkcs11-module serves both
    sp.set_defaults(run=Admin.rekey)

    sp = command("revoke", "revoke a user (and their certificates) and reissue the CRL")
    sp.add_argument("name", help="the user's name")
    ca_pass(sp)
    sp.set_defaults(run=Admin.revoke)

    sp = command("list-users", "list users, key types, fingerprints and status")
    sp.set_defaults(run=Admin.list_users)

    sp = command("issue-cert", "sign a user's CSR (openssl req -new -key KEY -subj /CN=NAME)")
    sp.add_argument("name", help="the user's name (the CSR's common name)")
    sp.add_argument("--csr", required=True, metavar="FILE", help="the PEM certificate request")
    sp.add_argument("--out", required=True, metavar="FILE", help="where to write the certificate")
    sp.add_argument("--days", type=_days, default=pki.USER_DAYS,
                    help="certificate lifetime in days [default: %(default)s]")
    ca_pass(sp)
    sp.set_defaults(run=Admin.issue_cert)

    sp = command("refresh-crl", "reissue the CRL with a new validity period "
                 "(daily: etc/securechat-refresh-crl.timer)")
    sp.add_argument("--days", type=_days, default=pki.CRL_DAYS,
                    help="days until the CRL's next update [default: %(default)s]")
    ca_pass(sp)
    sp.set_defaults(run=Admin.refresh_crl)

    sp = command("rotate-server-cert", "new relay key and certificate; revoke the old one")
    sp.add_argument("--server-name", action="append", metavar="NAME",
                    help="names for the new certificate [default: the old certificate's]")
    sp.add_argument("--server-key-type", choices=pki.SERVER_KEY_TYPES, default="ed25519",
                    help="the relay's new key type [default: %(default)s]")
    sp.add_argument("--days", type=_days, default=pki.SERVER_DAYS,
                    help="relay certificate lifetime in days [default: %(default)s]")
    ca_pass(sp)
    sp.set_defaults(run=Admin.rotate_server_cert)

    sp = command("backup", "copy the mailbox (letters, receipts, prekeys) to a new file, "
                 "consistently, also while the relay runs")
    sp.add_argument("dest", help="the backup file to create (mode 0600; never overwritten)")
    sp.set_defaults(run=Admin.backup)

    sp = command("mailbox-usage", "show each user's mailbox: unexpired letters and bytes")
    sp.set_defaults(run=Admin.mailbox_usage)

    sp = command("purge-expired", "delete expired letters now (the relay also does it "
                 "on a timer)")
    sp.set_defaults(run=Admin.purge_expired)

    sp = command("show", "show the CA, the relay's certificate, the CRL and counts")
    sp.set_defaults(run=Admin.show)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None,
         now: Callable[[], datetime.datetime] | None = None, stdin: TextIO | None = None) -> int:
    """
    Run one command; return the exit status (0 done, 1 refused, 2 usage).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        # argparse prints help and usage errors itself: to our streams.
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    data = DataDir(args.data_dir or default_data_dir(), allow_readable_keys=args.allow_readable_keys)
    admin = Admin(data, out, now or (lambda: datetime.datetime.now(datetime.timezone.utc)),
                  stdin or sys.stdin)
    data.ca_token_opener = lambda uri: admin.open_token(args, uri)
    try:
        # Nothing in a directory another user could have changed is believed.
        data.verify()
        args.run(admin, args)
    except (AdminError, DataDirError, CorruptDataDir, KeyFormatError, BadUserName, ValueError,
            MaintenanceError, UnusableDatabase, SigningError) as e:
        err.write(f"{PROG}: error: {e}\n")
        return 1
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        err.write(f"{PROG}: error: {where}{e.strerror or e}\n")
        return 1
    finally:
        for key in admin.opened:
            key.close()
    return 0


def console() -> None:
    sys.exit(main())
