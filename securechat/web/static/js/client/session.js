// The browser client's core above one relay connection, sans-IO: the
// relay's messages in (section 11), the client's out, events for the page
// (which decides nothing about the protocol).  It checks the relay as
// 12.4 says, pins peers' keys (12.1) and runs one Chat per peer; its
// mailbox parts send letters (Mail), keep our prekeys stocked (Prekeys)
// and open the letters for us (Inbox), with users' keys pinned (Keyring).
import { sha256 } from "../protocol/crypto.js";
import { LocalProtocolError, RemoteProtocolError } from "../protocol/errors.js";
import { GROUP_TYPES, parse as parseGroup } from "../protocol/groups.js";
import { MAILBOX_TYPES, parse as parseMailbox } from "../protocol/mailbox.js";
import { encode, parse, reasonText } from "../protocol/relay.js";
import { Chat } from "./chat.js";
import { Groups } from "./groups.js";
import { Inbox } from "./inbox.js";
import { Keyring } from "./keyring.js";
import { Mail } from "./mail.js";
import { Prekeys } from "./prekeys.js";
import { MemoryStore } from "./store.js";

/** `SHA256:` and the unpadded base64 of the SHA-256 of a DER public key (12.1). */
export async function fingerprint(spki) {
  const digest = await sha256(spki);
  return "SHA256:" + btoa(String.fromCharCode(...digest)).replace(/=+$/, "");
}

/** Pins kept in memory (the page keeps them in IndexedDB, per browser profile). */
export class MemoryPins {
  constructor() {
    this.pins = new Map();
    this.former = new Set(); // "peer fingerprint" of pins replaced (14.9)
  }

  async get(peer) {
    return this.pins.get(peer) ?? null;
  }

  async set(peer, value) {
    const old = this.pins.get(peer);
    if (old !== undefined && old !== value) this.former.add(`${peer} ${old}`);
    this.pins.set(peer, value);
  }

  /** Whether `value` is or was pinned for `peer` (14.9 rule 1). */
  async wasPinned(peer, value) {
    return this.pins.get(peer) === value || this.former.has(`${peer} ${value}`);
  }
}

/**
 * @param options.me      our user name (what we authenticated as)
 * @param options.signer  our signing key
 * @param options.out     (messages) => sends relay messages ([type, body] pairs)
 * @param options.view    (event) => shows what happened
 * @param options.pins    `{get(peer), set(peer, fingerprint)}`
 * @param options.store   `{get, put, delete}`: prekeys and letters opened (store.js)
 */
export class RelaySession {
  constructor({ me, signer, spki, out, view, pins = new MemoryPins(), store = new MemoryStore(),
    clock = Date.now, groupDraw }) {
    Object.assign(this, { me, signer, out, view, pins, clock });
    this.refusedKeys = new Map(); // peer -> the offered key we refused (chat or letter)
    this.keyring = new Keyring({ out, view, pins, fingerprint, changed: this.refusedKeys });
    this.mail = new Mail({ me, signer, spki, out, view, keyring: this.keyring, clock });
    this.prekeys = new Prekeys({ me, signer, spki, out, view, store, clock });
    this.inbox = new Inbox({ me, signer, spki, out, view, keyring: this.keyring,
      prekeys: this.prekeys, store, clock,
      // not awaited: the group work may itself wait for a later relay message
      groupKey: (sender, content) => { this.groups.keyLetter(sender, content); },
      sharesGroup: (user) => this.groups.sharesGroup(user) });
    this.groups = new Groups({ me, signer, out, view, keyring: this.keyring, mail: this.mail, clock,
      draw: groupDraw, sweep: () => this.inbox.sweep(), store });
    this.welcomed = false;
    this.maxPayload = null;
    this.chats = new Map();
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
      await this._mailbox(letter);
      return;
    }
    if (GROUP_TYPES.has(type)) {
      const m = parseGroup(type, body);
      if (!this.welcomed) {
        throw new RemoteProtocolError("unexpected-message", `${m.message} before WELCOME`);
      }
      this.groups.message(m);
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
        await this.prekeys.loggedIn();
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
      case "commandFailed":
        return this._commandFailed(m);
      default:
        this.view(m); // onlineList, chatRequested, requestPending, chatDeclined, ...
    }
  }

  async _mailbox(m) {
    if (Mail.handles(m)) await this.mail.message(m);
    else if (m.message === "userKey") await this.keyring.userKey(m);
    else if (m.message === "prekeysStored") {
      await this.prekeys.stored(m);
      this.view({ kind: "prekeysStored", oneTime: m.one_time_count });
    }
    else if (m.message === "prekeysLow") await this.prekeys.low(m);
    else if (m.message === "letterList") await this.inbox.letterList(m);
    else if (m.message === "newLetters") {
      this.view({ kind: m.message, ...m });
      if (this.groups.states.size) this.inbox.sweep();
    } else if (m.message === "letterArrived" && this.groups.sharesGroup(m.sender)) {
      this.inbox.read(m.sender, m.letter_id); // most likely a group key: opened now, shown if text
    }
    else if (m.message === "letter") await this.inbox.letter(m);
    else if (m.message === "keyHistory") await this.inbox.keyHistory(m);
    else if (m.message !== "receiptStored") this.view({ kind: m.message, ...m });
    await this.prekeys.rotateIfDue();
  }

  async _commandFailed(m) {
    if (m.command === 0x50) {
      this.prekeys.refused();
      this.view({ kind: "notice", text: `the relay refused our prekeys: ${reasonText(m.reason)}` });
    } else if (m.command === 0x51 && this.mail.waiting.has(m.subject)) {
      this.mail.bundleFailed(m.subject, reasonText(m.reason));
    } else if (m.command === 0x55) {
      this.inbox.fetchFailed(m.subject); // the letter may be read again later
      this.view(m);
    } else if (m.command === 0x52) {
      await this.keyring.failed(m.subject, reasonText(m.reason));
    } else if (m.command === 0x5a) {
      await this.inbox.keyHistory({ user: m.subject, keys: [] }); // no previous key verifies
    } else {
      this.view(m);
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

  /** Ask for our letters (`which` 0: new ones, 1: all). */
  listLetters(which = 0) {
    this.inbox.list(which);
  }

  /** Fetch and open a letter from the list. */
  readLetter(sender, letterId) {
    this.inbox.read(sender, letterId);
  }

  /**
   * The user compared fingerprints and trusts `peer`'s new key; `shown`,
   * if given, is the fingerprint the user was shown, which must be the one
   * the relay offered last.
   */
  async trustKey(peer, shown) {
    const offered = this.refusedKeys.get(peer);
    if (offered === undefined) throw new LocalProtocolError("unexpected-message", "no key to trust");
    if (shown !== undefined && shown !== offered) {
      // the relay offered yet another key since the warning the user answered
      throw new LocalProtocolError("unexpected-message", "that is no longer the key offered");
    }
    this.refusedKeys.delete(peer);
    await this.pins.set(peer, offered);
  }
}
