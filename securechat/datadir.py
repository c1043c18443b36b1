# -*- test-case-name: tests.test_datadir -*-
"""
The data directory's operations: creating it (the CA, the relay's key and
certificate, an empty CRL and user list), the CRL, the users and their
certificates, and rotating the relay's certificate.  The files themselves,
their layout and the rules for trusting them are L{securechat.datafiles}'.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from securechat import pki
from securechat.crypto import keys
from securechat.crypto.signer import ExternalKey
from securechat.extsign import CaKey
from securechat.datafiles import CAState, CorruptDataDir, DataDirError, DataFiles
from securechat.users import PreviousKey, UserDirectory, UserRecord, parse_utc, utc_text
from securechat.wire.names import check_user_name


class DataDir(DataFiles):
    """
    One data directory, with the operator's operations on it.
    """

    def init(self, server_names: list[str], now: datetime.datetime, ca_name: str | None = None,
             ca_passphrase: bytes | None = None, server_key_type: str = "ed25519",
             days: int = pki.SERVER_DAYS, ca_token: ExternalKey | None = None,
             ca_token_uri: str | None = None) -> None:
        """
        Create the CA, the relay's key and certificate, an empty CRL and an
        empty user list.  Refuses if a CA is already here.  With
        C{ca_token}, the CA key is that key on a token (C{ca_token_uri}
        names it, and is kept in C{ca/ca.key} instead of a key).
        """
        if self.initialized():
            raise DataDirError(f"{self.path} already has a CA ({self.ca_cert_path}); not overwriting it")
        if not server_names:
            raise DataDirError("give at least one --server-name")
        # Check everything before writing anything.
        for name in server_names:
            pki.check_server_name(name)
        if len(server_names[0]) > 64:
            raise DataDirError(f"the first --server-name becomes the certificate's common name, so it "
                               f"must be at most 64 characters: {server_names[0]!r}")
        if ca_name is not None and not 1 <= len(ca_name) <= 64:
            raise DataDirError(f"the CA name must be 1 to 64 characters, not {len(ca_name)}")
        pki.check_days(days, "server certificate")
        if server_key_type not in pki.SERVER_KEY_TYPES:
            raise DataDirError(f"unknown server key type {server_key_type!r}: use one of "
                               f"{', '.join(pki.SERVER_KEY_TYPES)}")
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        os.chmod(self.path, 0o700)
        for d in (self.ca_dir, self.server_dir):
            self._makedirs(d)
        if ca_name is None:
            ca_name = f"securechat CA for {server_names[0]}"
            if len(ca_name) > 64:
                ca_name = "securechat CA"
        if ca_token is not None:
            assert ca_token_uri is not None
            try:
                ca_key, ca_cert = pki.new_ca(ca_name, now, key=ca_token)
            except ValueError as e:
                raise DataDirError(str(e)) from None
            self._write(self.ca_key_path, ca_token_uri.encode("utf-8") + b"\n", 0o600)
        else:
            ca_key, ca_cert = pki.new_ca(ca_name, now)
            assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
            self._write(self.ca_key_path, keys.private_key_pem(ca_key, ca_passphrase), 0o600)
        state = CAState()
        self._write_server(ca_key, ca_cert, server_names, now, server_key_type, days, state)
        self._write_crl(ca_key, ca_cert, state, now)
        self.save_users(UserDirectory())
        # The CA certificate last: its presence marks a complete directory.
        self._write(self.ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def _write_server(self, ca_key: CaKey, ca_cert: x509.Certificate,
                      names: list[str], now: datetime.datetime, key_type: str, days: int,
                      state: CAState) -> x509.Certificate:
        server_key = pki.new_server_key(key_type)
        cert = pki.issue_server_certificate(ca_key, ca_cert, server_key.public_key(), names, now, days)
        self._write(self.server_key_path, keys.private_key_pem(server_key, None), 0o600)
        self._write(self.server_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        serial = format(cert.serial_number, "x")
        state.issued.append({"serial": serial, "kind": "server", "subject": names[0],
                             "not_after": utc_text(cert.not_valid_after_utc)})
        state.server_serial = serial
        return cert

    def _write_crl(self, ca_key: CaKey, ca_cert: x509.Certificate,
                   state: CAState, now: datetime.datetime, days: int = pki.CRL_DAYS) -> None:
        # A certificate that expired more than a CRL lifetime ago has been
        # listed on CRLs issued after its expiry (RFC 5280, 3.3) and is
        # refused as expired anyway: leave it out, so that the CRL the relay
        # staples stays small (docs/protocol.rst, 4.6).
        gone = {int(i["serial"], 16) for i in state.issued
                if "not_after" in i and parse_utc(i["not_after"]) + datetime.timedelta(days=days) < now}
        revoked = [(int(r["serial"], 16), parse_utc(r["at"])) for r in state.revoked
                   if int(r["serial"], 16) not in gone]
        # CRL numbers only go up: clients refuse a lower one than they have
        # seen (docs/protocol.rst, section 9), so a state.json restored from
        # a backup must not reuse numbers the current CRL has passed.
        state.crl_number = max(state.crl_number, self._current_crl_number() + 1)
        crl = pki.issue_crl(ca_key, ca_cert, revoked, state.crl_number, now, days)
        state.crl_number += 1
        self._write(self.crl_path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
        self.save_state(state)

    def _current_crl_number(self) -> int:
        """
        The number of the CRL now on disk (0 if there is none, or none
        readable: the state file's number is then all there is).
        """
        try:
            crl = x509.load_pem_x509_crl(self._read(self.crl_path))
            return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
        except (CorruptDataDir, ValueError, x509.ExtensionNotFound):
            return 0

    def refresh_crl(self, now: datetime.datetime, ca_passphrase: bytes | None = None,
                    days: int = pki.CRL_DAYS) -> None:
        """
        Reissue the CRL (same revocations, new validity period).
        """
        state = self.load_state()
        self._write_crl(self.load_ca_key(ca_passphrase), self.load_ca_certificate(), state, now, days)

    def add_user(self, name: str, public_key: keys.PublicKey, now: datetime.datetime) -> UserRecord:
        check_user_name(name)
        keys.check_public_key(public_key)
        directory = self.load_users()
        existing = directory.lookup(name)
        if existing is not None:
            status = f" (revoked since {existing.revoked})" if existing.revoked else ""
            raise DataDirError(f"user {name} already exists{status}: to give them a new key, "
                               f"securechat-admin rekey {name} PUBKEY.pem")
        record = UserRecord(name, public_key, utc_text(now))
        directory.users[name] = record
        self.save_users(directory)
        return record

    def lookup_user(self, name: str) -> UserRecord:
        """
        The record of C{name}.

        @raise DataDirError: if there is no such user.
        """
        record = self.load_users().lookup(name)
        if record is None:
            raise DataDirError(f"no user {name}")
        return record

    def rekey_user(self, name: str, public_key: keys.PublicKey, now: datetime.datetime,
                   ca_passphrase: bytes | None = None, compromised: bool = False,
                   since: datetime.datetime | None = None) -> UserRecord:
        """
        Give C{name} a new key: the current one goes into its history (with
        the certificates issued for it, which are revoked in a reissued CRL
        if there are any), and a revoked user becomes active again.  A key
        the user had before is refused: a replaced key may be compromised.
        With C{compromised} the old key is held to be compromised from
        C{since} (by default from when it was added): what the relay stored
        from then on does not verify with it.

        @raise DataDirError: for an unknown user, a key it has or had, or a
            C{since} outside the old key's life.
        """
        keys.check_public_key(public_key)
        directory = self.load_users()
        record = directory.lookup(name)
        if record is None:
            raise DataDirError(f"no user {name} (register them with add-user)")
        if keys.public_key_der(public_key) == keys.public_key_der(record.public_key):
            raise DataDirError(f"{name} already has this key ({record.fingerprint})")
        previous = record.had_key(public_key)
        if previous is not None:
            raise DataDirError(f"{name} had this key before (replaced {previous.replaced}); "
                               "a replaced key is never accepted again")
        at = utc_text(now)
        marked = None
        if compromised:
            marked = record.added if since is None else utc_text(since)
            if not parse_utc(record.added) <= parse_utc(marked) <= parse_utc(at):
                raise DataDirError(f"--compromised {marked}: the old key was in use from {record.added} "
                                   f"to now ({at}); give a time between")
        revoke_certificates = bool(record.certificates) and record.revoked is None
        if revoke_certificates:
            state = self.load_state()
            ca_key = self.load_ca_key(ca_passphrase)
            state.revoked.extend({"serial": serial, "at": at} for serial in record.certificates)
        old = PreviousKey(record.public_key, record.added, at,
                          record.revoked or (at if revoke_certificates else None), record.certificates,
                          marked)
        new = UserRecord(name, public_key, at, None, (), record.history + (old,))
        directory.users[name] = new
        self.save_users(directory)
        if revoke_certificates:
            self._write_crl(ca_key, self.load_ca_certificate(), state, now)
        return new

    def _active_user(self, name: str) -> tuple[UserDirectory, UserRecord]:
        directory = self.load_users()
        record = directory.lookup(name)
        if record is None:
            raise DataDirError(f"no user {name}")
        if record.revoked:
            raise DataDirError(f"user {name} is already revoked (since {record.revoked})")
        return directory, record

    def revoke_user(self, name: str, now: datetime.datetime,
                    ca_passphrase: bytes | None = None) -> UserRecord:
        """
        Mark C{name} revoked, revoke its certificates, reissue the CRL.
        """
        directory, record = self._active_user(name)
        state = self.load_state()
        ca_key = self.load_ca_key(ca_passphrase)
        for serial in record.certificates:
            state.revoked.append({"serial": serial, "at": utc_text(now)})
        revoked = replace(record, revoked=utc_text(now))
        directory.users[name] = revoked
        self.save_users(directory)
        self._write_crl(ca_key, self.load_ca_certificate(), state, now)
        return revoked

    def issue_user_certificate(self, name: str, csr: x509.CertificateSigningRequest,
                               now: datetime.datetime, ca_passphrase: bytes | None = None,
                               days: int = pki.USER_DAYS) -> x509.Certificate:
        directory, record = self._active_user(name)
        try:
            pki.check_csr(csr, record.public_key)
        except ValueError as e:
            raise DataDirError(str(e)) from None
        ca_key, ca_cert = self.load_ca_key(ca_passphrase), self.load_ca_certificate()
        cert = pki.issue_user_certificate(ca_key, ca_cert, name, record.public_key, now, days)
        serial = format(cert.serial_number, "x")
        state = self.load_state()
        state.issued.append({"serial": serial, "kind": "user", "subject": name,
                             "not_after": utc_text(cert.not_valid_after_utc)})
        # The user's list first: revoking the user revokes what it lists, so
        # a crash between the two writes cannot leave an unrevocable serial.
        directory.users[name] = replace(record, certificates=record.certificates + (serial,))
        self.save_users(directory)
        self.save_state(state)
        return cert

    def rotate_server_certificate(self, now: datetime.datetime, names: list[str] | None = None,
                                  ca_passphrase: bytes | None = None,
                                  key_type: str = "ed25519", days: int = pki.SERVER_DAYS
                                  ) -> x509.Certificate:
        """
        A fresh relay key and certificate (same names unless given); the old
        certificate is revoked in a reissued CRL.
        """
        state = self.load_state()
        ca_key, ca_cert = self.load_ca_key(ca_passphrase), self.load_ca_certificate()
        old = self.load_server_chain()[0]
        if not names:
            names = pki.certificate_names(old)
            if not names:
                raise DataDirError(f"{self.server_cert_path} names no server; give --server-name")
        state.revoked.append({"serial": format(old.serial_number, "x"), "at": utc_text(now)})
        cert = self._write_server(ca_key, ca_cert, names, now, key_type, days, state)
        self._write_crl(ca_key, ca_cert, state, now)
        return cert
