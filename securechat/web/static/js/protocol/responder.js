// The responder's side of the handshake (docs/protocol.rst 5.1): a
// browser user who accepted a chat answers the peer's end-to-end HELLO.
// Records, alerts and the rest are the Connection's.
import { concat, equal } from "./bytes.js";
import {
  SUPPORTED_SUITES, randomBytes, sign, verifyAgainstStandIn, verifySignature, x25519,
  x25519KeyPair, sha256,
} from "./crypto.js";
import { LocalProtocolError, ProtocolError, RemoteProtocolError } from "./errors.js";
import { HELLO, HELLO_REPLY, RECORD, encodeFrame, framePayload } from "./framing.js";
import { Connection, State } from "./connection.js";
import {
  AUTH, PROTOCOL_VERSION, USER_IDENTITY, encodeHelloReply,
  encodeIdentity, encodeInner, parseAuth, parseHello, signatureBytes, splitInner,
} from "./messages.js";
import { REKEY_INTERVAL, RecordOpener, RecordSealer } from "./records.js";
import {
  applicationTrafficSecrets, finishedMac, finishedOk, handshakeSecret, handshakeTrafficSecrets,
  signatureContent,
} from "./schedule.js";

/**
 * The responder's connection: the options of Connection; `suites` are the
 * ones it accepts (AES-256-GCM, the only one WebCrypto runs).
 */
export class Responder extends Connection {
  constructor(options) {
    super(options);
    this.state = State.WAIT_HELLO;
    this._lateBody = null;
  }

  initiate() {
    throw new TypeError("a responder waits for HELLO");
  }

  async _handshakeStep(type, frame) {
    if (this.state === State.WAIT_HELLO && type === HELLO) {
      await this._onHello(frame);
    } else if (this.state === State.WAIT_AUTH && type === RECORD) {
      await this._onInitiatorAuth(frame);
    } else {
      return false;
    }
    return true;
  }

  async _onHello(frame) {
    const hello = parseHello(framePayload(frame));
    if (hello.version !== PROTOCOL_VERSION) {
      throw new RemoteProtocolError("unsupported-version", `HELLO version ${hello.version}`);
    }
    if (hello.context !== this.context) {
      throw new RemoteProtocolError("wrong-context", `HELLO for context ${hello.context}`);
    }
    const suite = hello.suites.find((s) => this.suites.includes(s) && SUPPORTED_SUITES.has(s));
    if (suite === undefined) {
      throw new RemoteProtocolError("no-common-suite",
        `offered ${hello.suites.map((s) => `0x${s.toString(16)}`).join(", ")}`);
    }
    const nonce = this.draw ? this.draw(32) : randomBytes(32);
    const ephemeral = await x25519KeyPair(this.draw ? this.draw(32) : undefined);
    if (equal(hello.keyShare, ephemeral.publicKey)) {
      throw new RemoteProtocolError("reflected-key-share");
    }
    const shared = await x25519(ephemeral.privateKey, hello.keyShare);
    this.suite = suite;
    const reply = encodeFrame(HELLO_REPLY, encodeHelloReply({
      nonce, keyShare: ephemeral.publicKey, suite,
    }));
    this.output.push(reply);
    this.transcript = concat(frame, reply);
    this.hs = await handshakeSecret(this.context, shared);
    this.hsSecrets = await handshakeTrafficSecrets(this.hs, await sha256(this.transcript));
    this.hsSend = await RecordSealer.create(this.hsSecrets.responder, 1n);
    this.hsRecv = await RecordOpener.create(this.hsSecrets.initiator, 1n);
    await this._sendResponderAuth();
  }

  async _sendResponderAuth() {
    const T = this.transcript;
    const identityBytes = encodeIdentity(this.identity);
    const content = signatureContent(this.context, "responder",
      await sha256(concat(T, identityBytes)));
    this.state = State.WAIT_SIGN;
    let signature;
    try {
      signature = await sign(this.signer, content);
    } catch (e) {
      throw new LocalProtocolError("signing-failed", `our key could not sign: ${e.message ?? e}`);
    }
    const sigBytes = signatureBytes(this.signer.scheme, signature);
    const finished = await finishedMac(this.hsSecrets.responder,
      await sha256(concat(T, identityBytes, sigBytes)));
    const body = concat(identityBytes, sigBytes, finished);
    this.output.push(await this.hsSend.seal(encodeInner(AUTH, body)));
    this.transcript = concat(T, body);
    this.state = State.WAIT_AUTH;
  }

  async _onInitiatorAuth(frame) {
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
    // The initiator is a user in both contexts (4.6).
    if (auth.identity.kind !== USER_IDENTITY) {
      throw new RemoteProtocolError("wrong-identity-kind",
        `identity kind ${auth.identity.kind} from the initiator`);
    }
    const T = this.transcript;
    const finishedHash = await sha256(concat(T, auth.identityBytes, auth.signatureBytes));
    if (!await finishedOk(this.hsSecrets.initiator, finishedHash, auth.finished)) {
      throw new RemoteProtocolError("bad-finished");
    }
    // From here on the initiator can open what we seal under ap_r (8.3).
    this._lateBody = body;
    this.state = State.WAIT_VERIFY;
    const content = signatureContent(this.context, "initiator",
      await sha256(concat(T, auth.identityBytes)));
    let key;
    try {
      key = await this.verifyPeer(auth.identity);
    } catch (e) {
      await verifyAgainstStandIn(auth.scheme, auth.signature, content);
      if (e instanceof ProtocolError) throw e;
      throw new RemoteProtocolError("peer-rejected", "verification error");
    }
    if (!await verifySignature(key, auth.scheme, auth.signature, content)) {
      throw new RemoteProtocolError("bad-signature");
    }
    this.peer = auth.identity;
    this.transcript = concat(T, body);
    this._lateBody = null;
    const ap = await applicationTrafficSecrets(this.hs, await sha256(this.transcript));
    const n = REKEY_INTERVAL[this.context];
    this.apSend = await RecordSealer.create(ap.responder, n);
    this.apRecv = await RecordOpener.create(ap.initiator, n);
    this.hs = this.hsSecrets = this.hsSend = this.hsRecv = null;
    this.decoder.maxLength = this.maxFrame;
    this.state = State.ESTABLISHED;
    this.events.push({ kind: "established", peer: this.peer });
  }

  /** After the initiator's Finished checked: the first record under ap_r. */
  async _alertSealer() {
    if (this._lateBody === null || this.hs === null) return null;
    const ap = await applicationTrafficSecrets(this.hs,
      await sha256(concat(this.transcript, this._lateBody)));
    return RecordSealer.create(ap.responder, REKEY_INTERVAL[this.context]);
  }
}
