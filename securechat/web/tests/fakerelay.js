// An in-memory relay for the group tests: just enough of sections 11, 14
// and 15 (keys, prekey bundles, letters, group changes, logs, posts, acks)
// to run several browser sessions against each other, with what each
// sends recorded.  It checks group changes as a relay does (15.3); it is
// a test double, not the relay.
import { Reader, concat, toHex, u8, utf8 } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey } from "../static/js/protocol/crypto.js";
import { CLIENT as MAILBOX, encodeField, readFields } from "../static/js/protocol/mailbox.js";
import { CLIENT as GROUPS } from "../static/js/protocol/groups.js";
import { applyChange, parseChange, verifyChange } from "../static/js/protocol/grouplog.js";
import { MemoryPins, RelaySession } from "../static/js/client/session.js";
import { MemoryStore } from "../static/js/client/store.js";

const subtle = globalThis.crypto.subtle;
const CLIENT = Object.fromEntries(Object.entries({ ...MAILBOX, ...GROUPS })
  .map(([name, [type, layout]]) => [type, [name, layout]]));

const LETTER_ENTRY = [["sender", "name"], ["letter_id", "id"], ["stored_at", "u64"], ["size", "u64"],
  ["state", "u8"]];
const OUT = {
  commandFailed: [0x48, [["command", "u8"], ["subject", "bytes16"], ["reason", "u8"]]],
  welcome: [0x40, [["user", "name"], ["max", "u64"]]],
  prekeysStored: [0x60, [["id", "u32"], ["count", "u64"]]],
  bundle: [0x62, [["user", "name"], ["user_key", "bytes16"], ["signed", "bytes16"], ["one", "bytes16"]]],
  userKey: [0x63, [["user", "name"], ["user_key", "bytes16"], ["revoked", "u8"]]],
  letterStored: [0x64, [["recipient", "name"], ["letter_id", "id"], ["stored_at", "u64"], ["expires_at", "u64"]]],
  newLetters: [0x66, [["count", "u64"]]],
  letterArrived: [0x67, [["sender", "name"], ["letter_id", "id"], ["stored_at", "u64"], ["size", "u64"]]],
  letterList: [0x68, [["letters", LETTER_ENTRY], ["total", "u64"]]],
  letter: [0x69, [["sender", "name"], ["letter_id", "id"], ["stored_at", "u64"], ["expires_at", "u64"],
    ["letter", "bytes32"]]],
  receiptStored: [0x6b, [["sender", "name"], ["letter_id", "id"], ["kind", "u8"]]],
  groupChanged: [0x80, [["change", "bytes32"]]],
  groupRefused: [0x81, [["group_id", "id"], ["command", "u8"], ["reason", "u8"]]],
  groupPosted: [0x82, [["group_id", "id"], ["seq", "u64"], ["stored_at", "u64"]]],
  groupMessage: [0x83, [["group_id", "id"], ["seq", "u64"], ["sender", "name"], ["stored_at", "u64"],
    ["body", "bytes32"]]],
  groupList: [0x84, [["groups", [["group_id", "id"], ["name", "text8"], ["role", "u8"], ["epoch", "u64"],
    ["members", "u32"]]]]],
  groupLogPage: [0x85, [["group_id", "id"], ["changes", [["change", "bytes32"]]], ["more", "u8"]]],
};

function message(name, fields) {
  const [type, layout] = OUT[name];
  return [type, concat(...layout.map(([field, kind]) => encodeField(kind, fields[field])))];
}

export class FakeRelay {
  constructor() {
    this.users = new Map(); // name -> {signer, spki, key, session, inbox: [[type, body]], sent: [], seen: []}
    this.prekeys = new Map(); // name -> {signed, oneTime: []}
    this.letters = []; // {sender, recipient, letter_id, letter, state, deleted}
    this.groups = new Map(); // id hex -> {state, log: [], messages: [{seq, sender, body}], acked: Map}
    this.wire = []; // every client message: [user, name, fields]
    this.now = 1000n;
    this.drop = null;
    this.pending = []; // (user, [type, body]) => true to keep a message from a user
  }

  async user(name, fill, { store = new MemoryStore(), draw } = {}) {
    const signer = await ed25519SigningKey(new Uint8Array(32).fill(fill));
    const spki = new Uint8Array(await subtle.exportKey("spki", signer.publicKey));
    const u = { name, signer, spki, key: { scheme: signer.scheme, key: signer.publicKey }, inbox: [],
      sent: [], seen: [], store };
    this.users.set(name, u);
    return u;
  }

  /** Log `name` in: a new session, WELCOME. */
  login(name) {
    const u = this.users.get(name);
    u.online = true;
    u.session = new RelaySession({ me: name, signer: u.signer, spki: u.spki, pins: u.pins ??= new MemoryPins(),
      store: u.store, clock: () => Number(this.now) * 1000, groupDraw: u.draw,
      out: (messages) => { for (const m of messages) this._from(u, m); },
      view: (e) => u.seen.push(e) });
    u.inbox.push(message("welcome", { user: name, max: 65408n }));
    const groups = [...this.groups.values()].filter((g) => g.state.members.has(name)).map((g) => ({
      group_id: g.state.groupId, name: g.state.name, role: g.state.members.get(name), epoch: g.state.epoch,
      members: g.state.members.size }));
    if (groups.length) u.inbox.push(message("groupList", { groups }));
    return u;
  }

  to(u, name, fields) {
    if (u.online && !this.mute?.(u.name, name)) u.inbox.push(message(name, fields));
  }

  /** Deliver everything queued, in order, until nothing more moves. */
  async settle() {
    const tick = () => new Promise((resolve) => setImmediate(resolve));
    for (let round = 0; round < 100000; round++) {
      await Promise.all(this.pending.splice(0));
      let busy = false;
      for (const u of this.users.values()) {
        while (u.online && u.inbox.length) {
          busy = true;
          const [type, body] = u.inbox.shift();
          await u.session.message(type, body);
        }
        if (u.online && u.session.groups.busy) busy = true;
      }
      if (!busy && !this.pending.length) return;
      await tick(); // group work waits for WebCrypto and for messages above
    }
    throw new Error("the fake relay did not settle");
  }

  _from(u, [type, body]) {
    const [name, layout] = CLIENT[type] ?? [];
    if (!name) return; // chats and lists: not needed here
    if (this.drop?.(u.name, [type, body])) return;
    const r = new Reader(body);
    const f = readFields(r, layout, name);
    this.wire.push([u.name, name, f, body]);
    const done = this[`_${name}`]?.(u, f);
    if (done?.then) this.pending.push(done);
  }

  _uploadPrekeys(u, f) {
    const one = [];
    for (let at = 0; at < f.one_time.length; at += 36) one.push(f.one_time.subarray(at, at + 36));
    const had = this.prekeys.get(u.name);
    this.prekeys.set(u.name, { signed: f.signed_prekey.length ? f.signed_prekey : had.signed,
      oneTime: [...(had?.oneTime ?? []), ...one] });
    this.to(u, "prekeysStored", { id: 1, count: BigInt(one.length) });
  }

  _getUserKey(u, f) {
    this.to(u, "userKey", { user: f.user, user_key: this.users.get(f.user).spki, revoked: 0 });
  }

  _fetchBundle(u, f) {
    const p = this.prekeys.get(f.user);
    if (!p) {
      this.to(u, "commandFailed", { command: 0x51, subject: utf8(f.user), reason: 19 }); // NO_PREKEYS
      return;
    }
    this.to(u, "bundle", { user: f.user, user_key: this.users.get(f.user).spki, signed: p.signed,
      one: p.oneTime.shift() ?? new Uint8Array(0) });
  }

  _postLetter(u, f) {
    this.letters.push({ sender: u.name, recipient: f.recipient, letter_id: f.letter_id, letter: f.letter,
      state: 0, deleted: false });
    this.to(u, "letterStored", { recipient: f.recipient, letter_id: f.letter_id, stored_at: this.now,
      expires_at: this.now + 100n });
    const to = this.users.get(f.recipient);
    this.to(to, "letterArrived", { sender: u.name, letter_id: f.letter_id, stored_at: this.now,
      size: BigInt(f.letter.length) });
  }

  _mine(u, which) {
    return this.letters.filter((l) => l.recipient === u.name && !l.deleted && (which === 1 || l.state === 0));
  }

  _listLetters(u, f) {
    const letters = this._mine(u, f.which).map((l) => ({ sender: l.sender, letter_id: l.letter_id,
      stored_at: this.now, size: BigInt(l.letter.length), state: l.state }));
    this.to(u, "letterList", { letters, total: BigInt(letters.length) });
  }

  _fetchLetter(u, f) {
    const l = this._mine(u, 1).find((x) => x.sender === f.sender && toHex(x.letter_id) === toHex(f.letter_id));
    if (!l) return;
    if (l.state === 0) l.state = 1;
    this.to(u, "letter", { sender: l.sender, letter_id: l.letter_id, stored_at: this.now,
      expires_at: this.now + 100n, letter: l.letter });
  }

  _deleteLetter(u, f) {
    for (const l of this._mine(u, 1)) if (l.sender === f.sender && toHex(l.letter_id) === toHex(f.letter_id)) l.deleted = true;
  }

  _postReceipt(u, f) {
    const kind = f.receipt[1];
    this.to(u, "receiptStored", { sender: f.sender, letter_id: f.letter_id, kind });
  }

  async _groupChange(u, f) {
    let c;
    let g;
    try {
      c = parseChange(f.change);
      g = this.groups.get(toHex(c.group_id));
      await verifyChange(c, u.key);
      const state = await applyChange(g?.state ?? null, c);
      if (!g) {
        g = { log: [], messages: [], acked: new Map() };
        this.groups.set(toHex(c.group_id), g);
      }
      const before = g.state ? [...g.state.members.keys()] : [];
      g.state = state;
      g.log.push(f.change);
      const seq = BigInt(g.messages.length);
      for (const m of state.members.keys()) if (!g.acked.has(m)) g.acked.set(m, seq);
      const told = new Set([...state.members.keys(), ...before]);
      for (const name of told) this.to(this.users.get(name), "groupChanged", { change: f.change });
    } catch (e) {
      this.to(u, "groupRefused", { group_id: c?.group_id ?? new Uint8Array(16), command: 0x70,
        reason: { "stale-change": 25, "not-member": 23, "not-allowed": 24 }[e.code] ?? 26 });
    }
  }

  _groupLog(u, f) {
    const g = this.groups.get(toHex(f.group_id));
    const changes = g.log.slice(Number(f.after_epoch)).map((change) => ({ change }));
    this.to(u, "groupLogPage", { group_id: f.group_id, changes, more: 0 });
  }

  _groupPost(u, f) {
    const g = this.groups.get(toHex(f.group_id));
    const seq = BigInt(g.messages.length + 1);
    g.messages.push({ seq, sender: u.name, body: f.body });
    this.to(u, "groupPosted", { group_id: f.group_id, seq, stored_at: this.now });
    for (const name of g.state.members.keys()) {
      if (name !== u.name) this.deliver(name, f.group_id, g.messages.at(-1));
    }
  }

  deliver(name, groupId, m, body = m.body) {
    this.to(this.users.get(name), "groupMessage", { group_id: groupId, seq: m.seq, sender: m.sender,
      stored_at: this.now, body });
  }

  _groupAck(u, f) {
    this.groups.get(toHex(f.group_id)).acked.set(u.name, f.seq);
  }
}

export { u8 };
