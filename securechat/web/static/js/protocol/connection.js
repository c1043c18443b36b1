// One connection's protocol core, sans-IO: bytes in, events and bytes out
// (docs/protocol.rst sections 3-8).  The initiator's side of the signed
// ephemeral Diffie-Hellman handshake (5.1), for both contexts, then
// records.  Every step is asynchronous (WebCrypto); calls are serialised,
// so input that arrives while the peer's identity is being checked or our
// signature made waits (WAIT_VERIFY, WAIT_SIGN), as the spec says.
import { concat, equal, utf8 } from "./bytes.js";
import {
  AES_256_GCM, SUPPORTED_SUITES, randomBytes, sign, verifyAgainstStandIn, verifySignature,
  x25519, x25519KeyPair, sha256,
} from "./crypto.js";
import {
  Alert, LocalProtocolError, PeerAlert, ProtocolError, RemoteProtocolError,
} from "./errors.js";
import {
  ALERT, FRAME_TYPES, FrameDecoder, HELLO, HELLO_REPLY, MAX_FRAME, MAX_HANDSHAKE_FRAME, RECORD,
  encodeFrame, framePayload, frameType,
} from "./framing.js";
import {
  AUTH, CERTIFICATE_IDENTITY, CLIENT_SERVER, INNER_ALERT, PING, PONG, PROTOCOL_VERSION,
  USER_IDENTITY, encodeAlert, encodeHello, encodeIdentity, encodeInner, encodePingData,
  parseAlert, parseAuth, parseHelloReply, parsePingData, signatureBytes, splitInner,
} from "./messages.js";
import { REKEY_INTERVAL, RecordOpener, RecordSealer } from "./records.js";
import {
  applicationTrafficSecrets, finishedMac, finishedOk, handshakeSecret, handshakeTrafficSecrets,
  signatureContent,
} from "./schedule.js";

export const State = Object.freeze({
  START: "START", WAIT_HELLO: "WAIT_HELLO", WAIT_REPLY: "WAIT_REPLY", WAIT_AUTH: "WAIT_AUTH",
  WAIT_VERIFY: "WAIT_VERIFY", WAIT_SIGN: "WAIT_SIGN", ESTABLISHED: "ESTABLISHED",
  CLOSED: "CLOSED", FAILED: "FAILED",
});

/** Each side's peer, by role (the labels of 5.1's secrets and signatures). */
const PEER_ROLE = Object.freeze({ initiator: "responder", responder: "initiator" });

/** Input held while the peer is checked or we sign, at most. */
export const HELD_INPUT_LIMIT = MAX_FRAME;

/**
 * The initiator's connection.
 *
 * @param options.context  1 (client-server) or 2 (end-to-end)
 * @param options.signer   our signing key (crypto.js: `{scheme, privateKey}`)
 * @param options.identity ours: `{kind: 2, name}`
 * @param options.verifyPeer  async (identity) => public key (crypto.js
 *   `importPublicKey`), or throws a ProtocolError (`bad-certificate`,
 *   `peer-rejected`, ...)
 * @param options.suites   the offer; AES-256-GCM only by default (the only
 *   suite WebCrypto runs: never offer another outside tests)
 * @param options.applicationTypes  inner types (>= 0x30) the application
 *   accepts from the peer; any other is `unknown-type`
 * @param options.maxFrame  the largest frame accepted after the handshake
 * @param options.draw  tests only: returns the nonce, then the ephemeral
 *   private key, as fixed bytes
 */
export class Connection {
  constructor({
    context = CLIENT_SERVER, signer, identity, verifyPeer, suites = [AES_256_GCM],
    applicationTypes = new Set(), maxFrame = MAX_FRAME, draw,
  }) {
    this.context = context;
    this.signer = signer;
    this.identity = identity;
    this.verifyPeer = verifyPeer;
    this.suites = suites;
    this.applicationTypes = applicationTypes;
    this.maxFrame = maxFrame;
    this.draw = draw;
    this.state = State.START;
    this.decoder = new FrameDecoder(MAX_HANDSHAKE_FRAME);
    this.output = [];
    this.events = [];
    this.error = null;
    this.peer = null;
    this.suite = null;
    this._chain = Promise.resolve();
  }

  /** Bytes to write to the transport, in order, since the last call. */
  dataToSend() {
    const out = concat(...this.output);
    this.output = [];
    return out;
  }

  /** Send HELLO. */
  initiate() {
    return this._serial(() => this._initiate());
  }

  /** Feed received bytes; resolves with the events they caused. */
  receiveData(data) {
    if (this.state === State.CLOSED || this.state === State.FAILED) {
      return Promise.resolve([]);
    }
    this.decoder.feed(data);
    if ((this.state === State.WAIT_VERIFY || this.state === State.WAIT_SIGN)
        && this.decoder.buffered > HELD_INPUT_LIMIT) {
      return this._serial(() => this._fail(new RemoteProtocolError("limit-exceeded",
        "too much input while the handshake waits")));
    }
    return this._serial(() => this._process());
  }

  /** Seal inner messages (`[type, body]` pairs) into one record. */
  send(...messages) {
    return this._serial(async () => {
      if (this.state !== State.ESTABLISHED) {
        throw new LocalProtocolError("unexpected-message", "the connection is not established");
      }
      await this._seal(concat(...messages.map(([t, b]) => encodeInner(t, b))));
    });
  }

  /** End the connection: CLOSE_NOTIFY, or another alert with `code`. */
  close(code = "close", detail) {
    return this._serial(async () => {
      if (this.state === State.CLOSED || this.state === State.FAILED) return;
      if (code === "close") {
        if (this.state === State.ESTABLISHED) {
          await this._seal(encodeInner(INNER_ALERT, encodeAlert(Alert.CLOSE_NOTIFY, "")));
        } else {
          this.output.push(encodeFrame(ALERT, encodeAlert(Alert.CLOSE_NOTIFY, "")));
        }
        this.state = State.CLOSED;
        return;
      }
      await this._fail(new LocalProtocolError(code, detail));
    });
  }

  // -- internals -------------------------------------------------------

  _serial(step) {
    const run = this._chain.then(async () => {
      this.events = [];
      try {
        await step();
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        await this._fail(e);
      }
      return this.events;
    });
    this._chain = run.catch(() => undefined);
    return run;
  }

  async _initiate() {
    if (this.state !== State.START) {
      throw new LocalProtocolError("unexpected-message", "already started");
    }
    const nonce = this.draw ? this.draw(32) : randomBytes(32);
    this.ephemeral = await x25519KeyPair(this.draw ? this.draw(32) : undefined);
    const hello = encodeFrame(HELLO, encodeHello({
      context: this.context, nonce, keyShare: this.ephemeral.publicKey, suites: this.suites,
    }));
    this.transcript = hello;
    this.output.push(hello);
    this.state = State.WAIT_REPLY;
  }

  async _process() {
    while (this.state !== State.CLOSED && this.state !== State.FAILED) {
      const frame = this.decoder.next();
      if (frame === null) return;
      const type = frameType(frame);
      if (!FRAME_TYPES.has(type)) {
        throw new RemoteProtocolError("unknown-type", `frame type 0x${type.toString(16)}`);
      }
      if (type === ALERT) {
        await this._plainAlert(frame);
      } else if (this.state === State.ESTABLISHED && type === RECORD) {
        await this._onRecord(frame);
      } else if (!await this._handshakeStep(type, frame)) {
        throw new RemoteProtocolError("unexpected-message",
          `frame type 0x${type.toString(16)} in ${this.state}`);
      }
    }
  }

  /** The initiator's handshake frames; false if `type` is not one now. */
  async _handshakeStep(type, frame) {
    if (this.state === State.WAIT_REPLY && type === HELLO_REPLY) {
      await this._onReply(frame);
    } else if (this.state === State.WAIT_AUTH && type === RECORD) {
      await this._onAuthRecord(frame);
    } else {
      return false;
    }
    return true;
  }

  async _plainAlert(frame) {
    const alert = parseAlert(framePayload(frame));
    if (this.state === State.WAIT_REPLY || this.state === State.WAIT_HELLO) {
      // No keys yet: nothing else could reach us, so it is believed (8.3).
      this.state = State.FAILED;
      this.error = new PeerAlert(alert.code, alert.reason);
      this.events.push({ kind: "failed", error: this.error });
      return;
    }
    throw new RemoteProtocolError("unauthenticated-alert",
      `a plaintext alert ${alert.code} in ${this.state}`);
  }

  async _onReply(frame) {
    const reply = parseHelloReply(framePayload(frame));
    if (reply.version !== PROTOCOL_VERSION) {
      throw new RemoteProtocolError("unsupported-version", `HELLO_REPLY version ${reply.version}`);
    }
    if (!this.suites.includes(reply.suite)) {
      throw new RemoteProtocolError("suite-not-offered", `suite 0x${reply.suite.toString(16)}`);
    }
    if (!SUPPORTED_SUITES.has(reply.suite)) {
      throw new LocalProtocolError("no-common-suite",
        `suite 0x${reply.suite.toString(16)} was offered but cannot run here`);
    }
    if (equal(reply.keyShare, this.ephemeral.publicKey)) {
      throw new RemoteProtocolError("reflected-key-share");
    }
    const shared = await x25519(this.ephemeral.privateKey, reply.keyShare);
    this.ephemeral = null; // forward secrecy: the private key is gone
    this.suite = reply.suite;
    this.transcript = concat(this.transcript, frame);
    await this._handshakeKeys(shared, "initiator");
    this.state = State.WAIT_AUTH;
  }

  async _onAuthRecord(frame) {
    const kind = this.context === CLIENT_SERVER ? CERTIFICATE_IDENTITY : USER_IDENTITY;
    const { auth, body, T } = await this._openPeerAuth(frame, kind, "initiator");
    await this._verifyPeerAuth(auth, body, T, "initiator");
    await this._sendAuth();
  }

  async _sendAuth() {
    await this._sealAuth("initiator");
    await this._establish("initiator");
  }

  // -- the handshake steps both sides take, as `own` ("initiator" or
  // "responder"; the peer is the other) --------------------------------

  /** From the ECDH output: the handshake secret and traffic keys (5.1). */
  async _handshakeKeys(shared, own) {
    this.hs = await handshakeSecret(this.context, shared);
    const hsSecrets = await handshakeTrafficSecrets(this.hs, await sha256(this.transcript));
    this.hsSecrets = hsSecrets;
    this.hsSend = await RecordSealer.create(hsSecrets[own], 1n);
    this.hsRecv = await RecordOpener.create(hsSecrets[PEER_ROLE[own]], 1n);
  }

  /**
   * The peer's handshake record: exactly one AUTH, from an identity of
   * `kind`, whose Finished checks.  The transcript before it is `T`.
   */
  async _openPeerAuth(frame, kind, own) {
    const peer = PEER_ROLE[own];
    let plaintext;
    try {
      plaintext = await this.hsRecv.open(frame);
    } catch (e) {
      if (e instanceof ProtocolError && e.code === "bad-record-mac") {
        throw new RemoteProtocolError("bad-handshake-record");
      }
      throw e;
    }
    const items = splitInner(plaintext);
    if (items.length !== 1 || items[0][0] !== AUTH) {
      throw new RemoteProtocolError("unexpected-message",
        "handshake record must hold exactly one AUTH");
    }
    const body = items[0][1];
    const auth = parseAuth(body);
    if (auth.identity.kind !== kind) {
      throw new RemoteProtocolError("wrong-identity-kind",
        `identity kind ${auth.identity.kind} from the ${peer}`);
    }
    const T = this.transcript;
    const finishedHash = await sha256(concat(T, auth.identityBytes, auth.signatureBytes));
    if (!await finishedOk(this.hsSecrets[peer], finishedHash, auth.finished)) {
      throw new RemoteProtocolError("bad-finished");
    }
    return { auth, body, T };
  }

  /** The peer's identity accepted and its signature checked: it is our peer. */
  async _verifyPeerAuth(auth, body, T, own) {
    this.state = State.WAIT_VERIFY;
    const content = signatureContent(this.context, PEER_ROLE[own],
      await sha256(concat(T, auth.identityBytes)));
    let key;
    try {
      key = await this.verifyPeer(auth.identity);
    } catch (e) {
      // A refusal costs a verification too (5.1).
      await verifyAgainstStandIn(auth.scheme, auth.signature, content);
      if (e instanceof ProtocolError) throw e;
      throw new RemoteProtocolError("peer-rejected", "verification error");
    }
    if (!await verifySignature(key, auth.scheme, auth.signature, content)) {
      throw new RemoteProtocolError("bad-signature");
    }
    this.peer = auth.identity;
    this.transcript = concat(T, body);
  }

  /** Our AUTH (identity, signature, Finished), sealed under our handshake key. */
  async _sealAuth(own) {
    const T = this.transcript;
    const identityBytes = encodeIdentity(this.identity);
    const content = signatureContent(this.context, own,
      await sha256(concat(T, identityBytes)));
    this.state = State.WAIT_SIGN;
    let signature;
    try {
      signature = await sign(this.signer, content);
    } catch (e) {
      throw new LocalProtocolError("signing-failed", `our key could not sign: ${e.message ?? e}`);
    }
    const sigBytes = signatureBytes(this.signer.scheme, signature);
    const finished = await finishedMac(this.hsSecrets[own],
      await sha256(concat(T, identityBytes, sigBytes)));
    const body = concat(identityBytes, sigBytes, finished);
    this.output.push(await this.hsSend.seal(encodeInner(AUTH, body)));
    this.transcript = concat(T, body);
  }

  /** The application keys from the whole transcript; the handshake's are gone. */
  async _establish(own) {
    const ap = await applicationTrafficSecrets(this.hs, await sha256(this.transcript));
    const n = REKEY_INTERVAL[this.context];
    this.apSend = await RecordSealer.create(ap[own], n);
    this.apRecv = await RecordOpener.create(ap[PEER_ROLE[own]], n);
    this.hs = this.hsSecrets = this.hsSend = this.hsRecv = null;
    this.decoder.maxLength = this.maxFrame;
    this.state = State.ESTABLISHED;
    this.events.push({ kind: "established", peer: this.peer });
  }

  async _onRecord(frame) {
    const items = splitInner(await this.apRecv.open(frame));
    for (const [type, body] of items) {
      if (this.state !== State.ESTABLISHED) return;
      if (type === INNER_ALERT) {
        const alert = parseAlert(body);
        if (alert.code === Alert.CLOSE_NOTIFY) {
          this.state = State.CLOSED;
          this.events.push({ kind: "closed" });
        } else {
          this.state = State.FAILED;
          this.error = new PeerAlert(alert.code, alert.reason);
          this.events.push({ kind: "failed", error: this.error });
        }
      } else if (type === PING) {
        await this._seal(encodeInner(PONG, encodePingData(parsePingData(body))));
      } else if (type === PONG) {
        parsePingData(body); // liveness only
      } else if (type === AUTH) {
        throw new RemoteProtocolError("unexpected-message", "AUTH after the handshake");
      } else if (this.applicationTypes.has(type)) {
        this.events.push({ kind: "message", type, body });
      } else {
        throw new RemoteProtocolError("unknown-type", `inner type 0x${type.toString(16)}`);
      }
    }
  }

  async _seal(plaintext) {
    this.output.push(await this.apSend.seal(plaintext));
  }

  /** Where a failing side that is not established seals its alert (8.3 case 2). */
  async _alertSealer() {
    return null;
  }

  /** Fail with `error`, telling the peer where it can believe us (8.3). */
  async _fail(error) {
    if (this.state === State.FAILED || this.state === State.CLOSED) return;
    const established = this.state === State.ESTABLISHED;
    this.state = State.FAILED;
    this.error = error;
    if (error.code !== "unauthenticated-alert" && error.code !== "peer-alert") {
      const reason = error.alert === Alert.HANDSHAKE_FAILED ? "" : error.detail;
      const alert = encodeAlert(error.alert, reason);
      const sealer = established ? this.apSend : await this._alertSealer();
      if (sealer) {
        try {
          this.output.push(await sealer.seal(encodeInner(INNER_ALERT, alert)));
        } catch { /* counter exhausted: close without it */ }
      } else {
        this.output.push(encodeFrame(ALERT, alert));
      }
    }
    this.events.push({ kind: "failed", error });
  }
}

/** A user identity (4.6) for `name`. */
export function userIdentity(name) {
  return { kind: USER_IDENTITY, name };
}

export { utf8 };
