// The browser client's core above one relay connection, sans-IO: the
// relay's messages in (section 11), the client's out, events for the page
// (which decides nothing about the protocol).  It checks the relay as
// 12.4 says, pins peers' keys (12.1) and runs one Chat per peer.
import { sha256 } from "../protocol/crypto.js";
import { LocalProtocolError, RemoteProtocolError } from "../protocol/errors.js";
import { MAILBOX_TYPES, parse as parseMailbox } from "../protocol/mailbox.js";
import { encode, parse } from "../protocol/relay.js";
import { Chat } from "./chat.js";
import { Mail } from "./mail.js";

/** `SHA256:` and the unpadded base64 of the SHA-256 of a DER public key (12.1). */
export async function fingerprint(spki) {
  const digest = await sha256(spki);
  return "SHA256:" + btoa(String.fromCharCode(...digest)).replace(/=+$/, "");
}

/** Pins kept in memory (the page keeps them in IndexedDB, per browser profile). */
export class MemoryPins {
  constructor() {
    this.pins = new Map();
  }

  async get(peer) {
    return this.pins.get(peer) ?? null;
  }

  async set(peer, value) {
    this.pins.set(peer, value);
  }
}

/**
 * @param options.me      our user name (what we authenticated as)
 * @param options.signer  our signing key
 * @param options.out     (messages) => sends relay messages ([type, body] pairs)
 * @param options.view    (event) => shows what happened
 * @param options.pins    `{get(peer), set(peer, fingerprint)}`
 */
export class RelaySession {
  constructor({ me, signer, spki, out, view, pins = new MemoryPins(), clock = Date.now }) {
    Object.assign(this, { me, signer, out, view, pins, clock });
    this.mail = new Mail({ me, signer, spki, out, view, pins, fingerprint, clock });
    this.welcomed = false;
    this.maxPayload = null;
    this.chats = new Map();
    this.refusedKeys = new Map(); // peer -> the offered key we answered with CHAT_STOP
    this.dropping = new Set(); // peers whose RELAYED we drop until CHAT_ENDED (12.4)
    this._queue = Promise.resolve();
  }

  // -- from the relay ------------------------------------------------------

  /**
   * One inner message from the relay; a ProtocolError ends the connection.
   * Messages are handled one after the other, in order, however long one
   * takes (a pin looked up, a key imported): a RELAYED never overtakes
   * the CHAT_STARTED before it.
   */
  message(type, body) {
    const run = this._queue.then(() => this._message(type, body));
    this._queue = run.catch(() => undefined);
    return run;
  }

  async _message(type, body) {
    if (MAILBOX_TYPES.has(type)) {
      const letter = parseMailbox(type, body);
      if (!this.welcomed) {
        throw new RemoteProtocolError("unexpected-message", `${letter.message} before WELCOME`);
      }
      await this.mail.message(letter);
      return;
    }
    const m = parse(type, body);
    if (!this.welcomed && m.kind !== "welcome") {
      throw new RemoteProtocolError("unexpected-message", `${m.kind} before WELCOME`);
    }
    switch (m.kind) {
      case "welcome":
        if (this.welcomed) throw new RemoteProtocolError("unexpected-message", "a second WELCOME");
        if (m.user !== this.me) {
          throw new RemoteProtocolError("bad-value", `WELCOME for ${m.user}, we are ${this.me}`);
        }
        this.welcomed = true;
        this.maxPayload = m.maxPayload;
        this.view({ kind: "welcome", user: m.user });
        return;
      case "chatStarted":
        return this._chatStarted(m);
      case "relayed":
        return this._relayed(m);
      case "chatEnded": {
        const chat = this.chats.get(m.peer);
        this.chats.delete(m.peer);
        this.dropping.delete(m.peer);
        if (chat) chat.ended(m.reason);
        else this.view({ kind: "chatEnded", peer: m.peer, reason: m.reason });
        return;
      }
      default:
        this.view(m); // onlineList, chatRequested, requestPending, chatDeclined, ...
    }
  }

  async _chatStarted(m) {
    if (this.chats.has(m.peer)) {
      throw new RemoteProtocolError("unexpected-message", `a second CHAT_STARTED with ${m.peer}`);
    }
    const offered = await fingerprint(m.peerKey);
    const pinned = await this.pins.get(m.peer);
    if (pinned !== null && pinned !== offered) {
      this.refusedKeys.set(m.peer, offered);
      this.dropping.add(m.peer);
      this.out([encode.chatStop(m.peer)]);
      this.view({ kind: "keyChanged", peer: m.peer, pinned, offered });
      return;
    }
    if (pinned === null) await this.pins.set(m.peer, offered);
    const chat = new Chat({
      peer: m.peer, peerKey: m.peerKey, initiator: m.initiator, me: this.me, signer: this.signer,
      maxPayload: this.maxPayload, clock: this.clock, out: (messages) => this.out(messages),
      view: (event) => this.view({ ...event, peer: m.peer, chat: event.kind }),
    });
    this.chats.set(m.peer, chat);
    this.view({ kind: "chatStarted", peer: m.peer, fingerprint: offered, first: pinned === null });
    await chat.start();
  }

  async _relayed(m) {
    if (this.dropping.has(m.peer)) return;
    const chat = this.chats.get(m.peer);
    if (!chat) {
      throw new RemoteProtocolError("unexpected-message", `RELAYED from ${m.peer}, no chat`);
    }
    await chat.relayed(m.payload);
  }

  // -- from the page -----------------------------------------------------------

  listOnline() {
    this.out([encode.listOnline()]);
  }

  requestChat(peer) {
    this.out([encode.chatRequest(peer)]);
  }

  accept(peer) {
    this.out([encode.chatAccept(peer)]);
  }

  refuse(peer) {
    this.out([encode.chatRefuse(peer)]);
  }

  cancel(peer) {
    this.out([encode.chatCancel(peer)]);
  }

  async say(peer, text) {
    const chat = this.chats.get(peer);
    if (!chat) {
      this.view({ kind: "refused", peer, text, why: `no chat with ${peer}` });
      return;
    }
    await chat.say(text);
  }

  /** Send `text` to `to` as a letter (14.3). */
  sendLetter(to, text) {
    this.mail.send(to, text);
  }

  async stop(peer) {
    const chat = this.chats.get(peer);
    if (chat) await chat.stop();
  }

  /** The user compared fingerprints and trusts `peer`'s new key. */
  async trustKey(peer) {
    const offered = this.refusedKeys.get(peer);
    if (offered === undefined) throw new LocalProtocolError("unexpected-message", "no key to trust");
    this.refusedKeys.delete(peer);
    await this.pins.set(peer, offered);
  }
}
