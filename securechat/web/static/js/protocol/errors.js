// Errors and alerts: docs/protocol.rst section 8.  Every failure has a code
// (the table of 8.2) and the alert it sends; `detail` is for our own log
// and is never sent (HANDSHAKE_FAILED goes out with an empty reason).

export const Alert = Object.freeze({
  CLOSE_NOTIFY: 0,
  DECODE_ERROR: 1,
  FRAME_TOO_LARGE: 2,
  UNEXPECTED_MESSAGE: 3,
  UNSUPPORTED_VERSION: 4,
  NO_COMMON_SUITE: 5,
  HANDSHAKE_FAILED: 6,
  BAD_RECORD: 7,
  TIMEOUT: 8,
  LIMIT_EXCEEDED: 9,
  ACCESS_REVOKED: 10,
  SESSION_REPLACED: 11,
  SHUTTING_DOWN: 12,
  INTERNAL_ERROR: 13,
  SERVER_REKEYED: 14,
  UNAVAILABLE: 15,
});

const A = Alert;

/** Error code → [alert, default detail] (section 8.2). */
export const ERRORS = Object.freeze({
  "empty-frame": [A.DECODE_ERROR, "frame of length zero"],
  "frame-too-large": [A.FRAME_TOO_LARGE, "frame length exceeds the maximum"],
  "unknown-type": [A.DECODE_ERROR, "unknown message type"],
  truncated: [A.DECODE_ERROR, "message is truncated"],
  "trailing-bytes": [A.DECODE_ERROR, "trailing bytes after message"],
  "bad-value": [A.DECODE_ERROR, "field has a value that is not allowed"],
  "unexpected-message": [A.UNEXPECTED_MESSAGE, "message not allowed in this state"],
  "wrong-context": [A.UNEXPECTED_MESSAGE, "handshake meant for another context"],
  "unsupported-version": [A.UNSUPPORTED_VERSION, "protocol version not supported"],
  "no-common-suite": [A.NO_COMMON_SUITE, "no AEAD suite in common"],
  "suite-not-offered": [A.HANDSHAKE_FAILED, "peer chose a suite that was not offered"],
  "bad-key-share": [A.HANDSHAKE_FAILED, "invalid or low-order X25519 key share"],
  "reflected-key-share": [A.HANDSHAKE_FAILED, "peer echoed our own key share"],
  "bad-handshake-record": [A.HANDSHAKE_FAILED, "handshake record failed authentication"],
  "bad-finished": [A.HANDSHAKE_FAILED, "Finished MAC does not verify"],
  "wrong-identity-kind": [A.HANDSHAKE_FAILED, "peer sent the wrong kind of identity"],
  "bad-certificate": [A.HANDSHAKE_FAILED, "server certificate rejected"],
  "unknown-user": [A.HANDSHAKE_FAILED, "unknown user"],
  "revoked-user": [A.HANDSHAKE_FAILED, "user is revoked"],
  "bad-signature": [A.HANDSHAKE_FAILED, "handshake signature does not verify"],
  "peer-rejected": [A.HANDSHAKE_FAILED, "peer identity rejected"],
  "signing-failed": [A.HANDSHAKE_FAILED, "our key could not sign"],
  "record-replayed": [A.BAD_RECORD, "record counter already used (replay)"],
  "record-gap": [A.BAD_RECORD, "record counter skips ahead"],
  "bad-record-mac": [A.BAD_RECORD, "record failed authentication"],
  "empty-record": [A.BAD_RECORD, "record carries no message"],
  "record-limit": [A.BAD_RECORD, "record counter limit reached"],
  "peer-alert": [A.CLOSE_NOTIFY, "peer sent an alert"],
  "unauthenticated-alert": [A.UNEXPECTED_MESSAGE,
    "connection interrupted: an alert arrived without authentication (not believed)"],
  "limit-exceeded": [A.LIMIT_EXCEEDED, "a limit was exceeded"],
  timeout: [A.TIMEOUT, "the peer took too long"],
  "server-rekeyed": [A.SERVER_REKEYED, "the relay's certificate changed"],
  unavailable: [A.UNAVAILABLE, "the relay cannot serve users now; try again shortly"],
  "connection-closed": [A.CLOSE_NOTIFY, "connection lost"],
  "internal-error": [A.INTERNAL_ERROR, "internal error"],
});

/** A protocol failure: `code` is a key of ERRORS. */
export class ProtocolError extends Error {
  constructor(code, detail) {
    const entry = ERRORS[code];
    if (entry === undefined) throw new TypeError(`unknown error code ${code}`);
    super(`${code}: ${detail ?? entry[1]}`);
    this.code = code;
    this.alert = entry[0];
    this.detail = detail ?? entry[1];
  }
}

/** The peer (or an attacker) broke the protocol. */
export class RemoteProtocolError extends ProtocolError {}

/** We cannot go on (our own limit or mistake). */
export class LocalProtocolError extends ProtocolError {}

/** The peer sent an authenticated alert other than CLOSE_NOTIFY. */
export class PeerAlert extends ProtocolError {
  constructor(alert, reason) {
    super("peer-alert", `peer sent alert ${alert}${reason ? `: ${reason}` : ""}`);
    this.peerAlert = alert;
    this.reason = reason;
  }
}
