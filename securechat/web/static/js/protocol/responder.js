// The responder's side of the handshake (docs/protocol.rst 5.1): a
// browser user who accepted a chat answers the peer's end-to-end HELLO.
// Records, alerts and the rest are the Connection's.
import { concat, equal } from "./bytes.js";
import { SUPPORTED_SUITES, randomBytes, x25519, x25519KeyPair, sha256 } from "./crypto.js";
import { RemoteProtocolError } from "./errors.js";
import { HELLO, HELLO_REPLY, RECORD, encodeFrame, framePayload } from "./framing.js";
import { Connection, State } from "./connection.js";
import { PROTOCOL_VERSION, USER_IDENTITY, encodeHelloReply, parseHello } from "./messages.js";
import { REKEY_INTERVAL, RecordSealer } from "./records.js";
import { applicationTrafficSecrets } from "./schedule.js";

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
    await this._handshakeKeys(shared, "responder");
    await this._sendResponderAuth();
  }

  async _sendResponderAuth() {
    await this._sealAuth("responder");
    this.state = State.WAIT_AUTH;
  }

  async _onInitiatorAuth(frame) {
    // The initiator is a user in both contexts (4.6).
    const { auth, body, T } = await this._openPeerAuth(frame, USER_IDENTITY, "responder");
    // From here on the initiator can open what we seal under ap_r (8.3).
    this._lateBody = body;
    await this._verifyPeerAuth(auth, body, T, "responder");
    this._lateBody = null;
    await this._establish("responder");
  }

  /** After the initiator's Finished checked: the first record under ap_r. */
  async _alertSealer() {
    if (this._lateBody === null || this.hs === null) return null;
    const ap = await applicationTrafficSecrets(this.hs,
      await sha256(concat(this.transcript, this._lateBody)));
    return RecordSealer.create(ap.responder, REKEY_INTERVAL[this.context]);
  }
}
