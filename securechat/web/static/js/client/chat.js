// One end-to-end chat (docs/protocol.rst section 12), sans-IO: relay
// messages in (CHAT_STARTED, RELAYED, CHAT_ENDED), relay messages out
// (RELAY, CHAT_STOP) and events for the view.  The end-to-end connection
// is the protocol core's, in context 2, carried in RELAY payloads.
import { Connection, userIdentity } from "../protocol/connection.js";
import { importPublicKey } from "../protocol/crypto.js";
import * as e2e from "../protocol/e2e.js";
import { ProtocolError, RemoteProtocolError } from "../protocol/errors.js";
import { encode as relay, reasonText } from "../protocol/relay.js";
import { Responder } from "../protocol/responder.js";

const STOPPED = 8;
const LEFT = { 7: "went offline", 15: "logged in elsewhere", 14: "was revoked" };

/**
 * A chat with `peer` once the relay said CHAT_STARTED.  `out(messages)`
 * receives the relay messages to send, `view(event)` what to show:
 * `secured`, `text`, `refused` (a line not sent), `failed`, `ended`.
 */
export class Chat {
  constructor({ peer, peerKey, initiator, me, signer, maxPayload, out, view, clock = Date.now }) {
    this.peer = peer;
    this.peerKey = peerKey;
    this.initiator = initiator;
    this.out = out;
    this.view = view;
    this.clock = clock;
    this.secured = false;
    this.sent = 0n;
    this.received = 0n;
    this.peerEnd = null; // the peer's END count, once it came
    this.stoppedByUs = false;
    this.failed = false;
    const Kind = initiator ? Connection : Responder;
    this.conn = new Kind({
      context: 2, signer, identity: userIdentity(me), applicationTypes: e2e.E2E_TYPES,
      maxFrame: Number(maxPayload),
      verifyPeer: async (identity) => {
        if (identity.name !== peer) {
          throw new RemoteProtocolError("peer-rejected",
            `the peer proved ${identity.name}, not ${peer}`);
        }
        return importPublicKey(peerKey);
      },
    });
  }

  /** Start: the initiator sends its HELLO. */
  async start() {
    if (this.initiator) {
      await this.conn.initiate();
      await this._flush([]);
    }
  }

  /** A RELAYED payload from the peer. */
  async relayed(payload) {
    if (this.failed) return; // dropped until CHAT_ENDED (12.3)
    await this._flush(await this.conn.receiveData(payload));
  }

  /** Send one line, if the chat is secured and not ending. */
  async say(text) {
    if (!this.secured || this.stoppedByUs || this.failed) {
      this.view({ kind: "refused", text, why: this.secured ? "the chat is ending" : "the chat is not secured yet" });
      return;
    }
    this.sent += 1n;
    await this.conn.send(e2e.encode.text(BigInt(this.clock()), text));
    await this._flush([]);
  }

  /** Stop the chat: END (if secured), then CHAT_STOP. */
  async stop() {
    if (this.stoppedByUs) return;
    this.stoppedByUs = true;
    if (this.secured && !this.failed) {
      await this.conn.send(e2e.encode.end(this.sent));
      await this._flush([]);
    }
    this.out([relay.chatStop(this.peer)]);
  }

  /** The relay's CHAT_ENDED: report how the chat ended (12.3). */
  ended(reason) {
    const received = this.received;
    const cleanEnd = this.peerEnd !== null && this.peerEnd === received;
    let how;
    if (this.stoppedByUs) {
      how = this.peerEnd !== null && !cleanEnd ? "truncated" : "stopped by you";
    } else if (this.peerEnd !== null) {
      how = cleanEnd ? "ended by the peer" : "truncated";
    } else if (reason === STOPPED) {
      how = "truncated";
    } else {
      how = LEFT[reason] ? `the peer ${LEFT[reason]}` : reasonText(reason);
    }
    this.view({ kind: "ended", how, received, peerSent: this.peerEnd });
  }

  async _flush(events) {
    const data = this.conn.dataToSend();
    const messages = data.length ? [relay.relay(this.peer, data)] : [];
    for (const event of events) {
      try {
        await this._event(event, messages);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        await this.conn.close(e.code, e.detail);
        const alert = this.conn.dataToSend();
        if (alert.length) messages.push(relay.relay(this.peer, alert));
        this._fail(e, messages);
        break;
      }
    }
    if (messages.length) this.out(messages);
  }

  async _event(event, messages) {
    if (event.kind === "established") {
      if (!this.initiator) {
        await this.conn.send(e2e.encode.ready());
        messages.push(relay.relay(this.peer, this.conn.dataToSend()));
        this._secure();
      }
    } else if (event.kind === "message") {
      this._message(e2e.parse(event.type, event.body));
    } else if (event.kind === "failed") {
      this._fail(event.error, messages);
    } else if (event.kind === "closed") {
      this._fail(new RemoteProtocolError("unexpected-message", "the peer closed the chat's connection"),
        messages);
    }
  }

  _message(message) {
    const unexpected = (why) => {
      throw new RemoteProtocolError("unexpected-message", why);
    };
    if (this.peerEnd !== null) unexpected(`${message.kind} after the peer's END`);
    if (message.kind === "ready") {
      if (!this.initiator || this.secured) unexpected("READY out of place");
      this._secure();
    } else if (!this.secured) {
      unexpected(`${message.kind} before READY`);
    } else if (message.kind === "text") {
      this.received += 1n;
      this.view({ kind: "text", from: this.peer, text: message.text, sentAt: message.sentAt });
    } else if (message.kind === "end") {
      this.peerEnd = message.sent;
    }
  }

  _secure() {
    this.secured = true;
    this.view({ kind: "secured", peer: this.peer });
  }

  _fail(error, messages) {
    if (this.failed) return;
    this.failed = true;
    this.view({ kind: "failed", code: error.code, detail: error.detail });
    if (!this.stoppedByUs) {
      this.stoppedByUs = true;
      messages.push(relay.chatStop(this.peer));
    }
  }
}
