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
import os
import sys
from typing import Callable, Sequence, TextIO


from securechat import __version__, pki
from securechat.crypto.keys import KeyFormatError
from securechat.crypto.signer import SigningError
from securechat.datadir import DataDir
from securechat.datafiles import CorruptDataDir, DataDirError
from securechat.server.store import check_store
from securechat.server.store.engine import UnusableDatabase
from securechat.server.store.maintenance import MaintenanceError

from securechat.admin.commands import Admin, AdminError
from securechat.wire.names import BadUserName

PROG = "securechat-admin"


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


def _store(text: str) -> str:
    """An argparse type: C{--store} as the relay takes it."""
    try:
        return check_store(text)
    except UnusableDatabase as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
    sp.add_argument("--compromised", nargs="?", const="", metavar="SINCE",
                    help="the old key may be in someone else's hands: letters and receipts the "
                    "relay stored from SINCE (UTC, e.g. 2026-12-01T09:00:00Z; default: since the "
                    "key was added) never verify with it.  Without this, what the relay stored "
                    "before now still verifies with the old key")
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

    def store(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--store", default="sqlite", type=_store, metavar="STORE",
                        help="where the relay keeps the mailbox: sqlite (the data directory's "
                        "mailbox.sqlite3) or the PostgreSQL URL given to the relay's --store, "
                        "e.g. postgresql:///securechat?host=/run/postgresql [default: sqlite]")

    sp = command("backup", "copy the mailbox (letters, receipts, prekeys) to a new file, "
                 "consistently, also while the relay runs (SQLite; on PostgreSQL use pg_dump)")
    sp.add_argument("dest", help="the backup file to create (mode 0600; never overwritten)")
    store(sp)
    sp.set_defaults(run=Admin.backup)

    sp = command("mailbox-usage", "show each user's mailbox: unexpired letters and bytes")
    store(sp)
    sp.set_defaults(run=Admin.mailbox_usage)

    sp = command("purge-expired", "delete expired letters now (the relay also does it "
                 "on a timer)")
    store(sp)
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
