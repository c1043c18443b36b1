// What the page keeps of one user's sender keys (docs/protocol.rst 16.2,
// 16.4, 16.5), sans-IO: per group the membership its verified log gave
// (from the epoch we joined), the chains other members handed us, the
// messages held for a key or waiting for the log, and our own chain.
// Each call returns `{events, effects}`: events for the page (texts,
// refusals, gaps, waiting), effects for the session (letters of content
// type 2 to send, bodies to post).  A refused message changes nothing.
import { equal, toHex } from "../protocol/bytes.js";
import { ADD, DELETE, LEAVE, REMOVE } from "../protocol/grouplog.js";
import {
  LAST_COUNTER, SenderKeyError, chainStep, checkSignature, decryptBody, encodeDistribution, newChain,
  parseBody, parseDistribution, sealGroupMessage,
} from "../protocol/senderkeys.js";

export const KEEP_CHAINS = 4; // per (group, sender), 16.2
export const KEEP_RETIRED = 64;
export const HOLD_PER_SENDER = 200; // 16.4 step 6
export const WAIT_LIMIT = 1000; // 16.2 step 1
export const MAX_SKIP = 1000; // 16.4 step 9
export const KEEP_SKIPPED = 2000;

const utf8 = new TextEncoder();

function chainKey(group, sender, chainId) {
  return `group-chain/${group}/${sender}/${chainId}`;
}

function out() {
  return { events: [], effects: [] };
}

function refuse(o, group, m, code, detail) {
  o.events.push({ kind: "groupRefused", group, sender: m.sender, seq: m.seq, storedAt: m.storedAt,
    code, detail });
}

export class GroupKeys {
  constructor({ me, draw, store = null }) {
    this.me = me;
    // where each chain's reading position is kept (`{get, put}`), so that a
    // page loaded again, which learns a chain again from its key letter,
    // still refuses what it opened before as replayed
    this.store = store;
    this.draw = draw; // tests: the random draws of a new chain
    this.groups = new Map(); // group id hex -> group record
    this.waiting = []; // {kind: "message"|"distribution", group, ...} for epochs not reached
  }

  _group(id) {
    return this.groups.get(typeof id === "string" ? id : toHex(id));
  }

  /** Whether `user` is a member of one of our groups now (their letters may be keys). */
  sharesGroup(user) {
    for (const g of this.groups.values()) if (g.members.get(g.epoch)?.has(user)) return true;
    return false;
  }

  /** The members of `group` at `epoch` (a Set), or null before we knew it. */
  membersAt(group, epoch) {
    return this._group(group)?.members.get(BigInt(epoch)) ?? null;
  }

  /**
   * A verified change (its epoch, action, actor, target) and the members
   * after it (a Set): from the change that made us a member on.
   */
  async changed(groupId, { epoch, action, actor, target }, members) {
    const id = toHex(groupId);
    const o = out();
    let g = this.groups.get(id);
    if (!g) {
      if (!members.has(this.me)) return o; // history before we joined
      g = { id, groupId, base: epoch, epoch, members: new Map(), rekey: [], chains: new Map(),
        retired: new Map(), held: new Map(), mine: null };
      this.groups.set(id, g);
    }
    g.epoch = epoch;
    g.members.set(epoch, new Set(members));
    if (action === DELETE || !members.has(this.me)) {
      this.groups.delete(id);
      this.waiting = this.waiting.filter((w) => w.group !== id);
      return o;
    }
    if (action === REMOVE || action === LEAVE) {
      g.rekey.push(epoch);
      if (g.mine) g.mine = null; // a new chain before we send again (16.5)
    } else if (action === ADD && g.mine && target !== this.me) {
      // the new member gets our chain at its current counter, never an earlier one
      o.effects.push({ kind: "distribute", group: id, to: target,
        content: encodeDistribution(g.groupId, g.mine) });
    }
    await this._release(o, id);
    return o;
  }

  /** Re-check what waited for the log (16.2 step 1, 16.4 step 5). */
  async _release(o, id) {
    const g = this.groups.get(id);
    const ready = this.waiting.filter((w) => w.group === id && g && w.epoch <= g.epoch);
    this.waiting = this.waiting.filter((w) => !ready.includes(w));
    for (const w of ready) {
      if (w.kind === "message") await this._message(o, g, w.m);
      else await this._distribution(o, g, w.sender, w.d);
    }
  }

  _wait(o, item) {
    this.waiting.push(item);
    if (this.waiting.length > WAIT_LIMIT) {
      const lost = this.waiting.shift();
      o.events.push({ kind: "groupRefused", group: lost.group, sender: lost.sender ?? lost.m?.sender,
        code: "held-overflow", detail: "given up to keep a newer one waiting for the log" });
    }
    o.events.push({ kind: "groupLogBehind", group: item.group, epoch: item.epoch });
  }

  /** A letter of content type 2 from `sender` opened (16.2). */
  async distribution(sender, content) {
    const o = out();
    let d;
    try {
      d = parseDistribution(content);
    } catch (e) {
      if (!(e instanceof SenderKeyError)) throw e;
      o.events.push({ kind: "keyRefused", sender, code: e.code, detail: e.detail });
      return o;
    }
    const id = toHex(d.groupId);
    const g = this.groups.get(id);
    if (!g || d.epoch > g.epoch) {
      this._wait(o, { kind: "distribution", group: id, epoch: d.epoch, sender, d });
      return o;
    }
    await this._distribution(o, g, sender, d);
    return o;
  }

  async _distribution(o, g, sender, d) {
    const at = d.epoch < g.base ? g.base : d.epoch;
    const refused = (code, detail) => o.events.push({ kind: "keyRefused", group: g.id, sender, code,
      detail });
    if (!g.members.get(at)?.has(sender)) return refused("not-member", `${sender} is not a member at epoch ${at}`);
    const chains = g.chains.get(sender) ?? [];
    const same = chains.find((c) => c.chainId === d.chainId);
    if (same) {
      if (!equal(same.signingPublic, d.signingPublic) || same.epoch !== d.epoch) {
        return refused("chain-conflict", `another key under chain ${d.chainId} (the first stands)`);
      }
      return; // the same chain again: nothing new
    }
    if (g.retired.get(sender)?.includes(d.chainId)) {
      return refused("retired-chain", `chain ${d.chainId} was replaced`);
    }
    let chain = { chainId: d.chainId, epoch: d.epoch, signingPublic: d.signingPublic, first: d.counter,
      next: d.counter, floor: d.counter, chainKey: d.chainKey, skipped: new Map() };
    const saved = await this.store?.get(chainKey(g.id, sender, d.chainId));
    if (saved && equal(saved.signingPublic, d.signingPublic) && saved.epoch === d.epoch) chain = saved;
    chains.push(chain);
    while (chains.length > KEEP_CHAINS) {
      const old = chains.shift();
      const retired = g.retired.get(sender) ?? [];
      retired.push(old.chainId);
      g.retired.set(sender, retired.slice(-KEEP_RETIRED));
    }
    g.chains.set(sender, chains);
    o.events.push({ kind: "keyArrived", group: g.id, sender });
    const held = (g.held.get(sender) ?? []).filter((m) => m.chainId === d.chainId);
    g.held.set(sender, (g.held.get(sender) ?? []).filter((m) => m.chainId !== d.chainId));
    for (const m of held) await this._open(o, g, m);
  }

  /** A GROUP_MESSAGE (16.4): `{group_id, seq, sender, stored_at, body}`. */
  async message(gm) {
    const o = out();
    const id = toHex(gm.group_id);
    const meta = { sender: gm.sender, seq: gm.seq, storedAt: gm.stored_at };
    let m;
    try {
      m = { seq: gm.seq, storedAt: gm.stored_at, ...parseBody(gm.body) };
    } catch (e) {
      if (!(e instanceof SenderKeyError)) throw e;
      refuse(o, id, meta, e.code, e.detail);
      return o;
    }
    if (!equal(m.groupId, gm.group_id)) {
      refuse(o, id, meta, "wrong-group", "the body names another group");
      return o;
    }
    if (m.sender !== gm.sender) {
      refuse(o, id, meta, "wrong-sender", `the body names ${m.sender}, the relay ${gm.sender}`);
      return o;
    }
    const g = this.groups.get(id);
    if (!g || m.epoch > g.epoch) {
      this._wait(o, { kind: "message", group: id, epoch: m.epoch, m });
      return o;
    }
    await this._message(o, g, m);
    return o;
  }

  async _message(o, g, m) {
    if (m.epoch < g.base) return refuse(o, g.id, m, "unknown-epoch", `epoch ${m.epoch} is before we joined`);
    if (!g.members.get(m.epoch)?.has(m.sender)) {
      return refuse(o, g.id, m, "not-member", `${m.sender} is not a member at epoch ${m.epoch}`);
    }
    if (g.retired.get(m.sender)?.includes(m.chainId)) {
      return refuse(o, g.id, m, "retired-chain", `chain ${m.chainId} was replaced`);
    }
    const chain = (g.chains.get(m.sender) ?? []).find((c) => c.chainId === m.chainId);
    if (!chain) {
      const held = g.held.get(m.sender) ?? [];
      held.push(m);
      if (held.length > HOLD_PER_SENDER) {
        refuse(o, g.id, held.shift(), "held-overflow", "given up to hold a newer one");
      }
      g.held.set(m.sender, held);
      o.events.push({ kind: "groupHeld", group: g.id, sender: m.sender, seq: m.seq });
      return;
    }
    await this._open(o, g, m);
  }

  async _open(o, g, m) {
    const chain = (g.chains.get(m.sender) ?? []).find((c) => c.chainId === m.chainId);
    if (!chain) return refuse(o, g.id, m, "retired-chain", `chain ${m.chainId} was replaced`);
    if (m.epoch < chain.epoch) {
      return refuse(o, g.id, m, "wrong-epoch", `epoch ${m.epoch} is before the chain's ${chain.epoch}`);
    }
    const rekey = g.rekey.filter((e) => e <= m.epoch).pop() ?? 0n;
    if (chain.epoch < rekey) {
      return refuse(o, g.id, m, "stale-chain", `a chain of epoch ${chain.epoch} after a member left at ${rekey}`);
    }
    try {
      await checkSignature(m, chain.signingPublic);
      const step = await this._step(chain, m.counter);
      const opened = await decryptBody(m, step.keys);
      this._apply(chain, m.counter, step);
      await this.store?.put(chainKey(g.id, m.sender, chain.chainId), chain);
      if (step.gap) o.events.push({ kind: "groupGap", group: g.id, sender: m.sender, count: step.gap });
      o.events.push({ kind: "groupText", group: g.id, sender: m.sender, seq: m.seq, sentAt: m.sentAt,
        storedAt: m.storedAt, late: step.late, contentType: opened.contentType, text: opened.text });
    } catch (e) {
      if (!(e instanceof SenderKeyError)) throw e;
      refuse(o, g.id, m, e.code, e.detail);
    }
  }

  async _step(chain, counter) {
    if (counter < chain.first) throw new SenderKeyError("before-key", `counter ${counter} was sent before we were given the chain`);
    if (counter < chain.next) {
      const kept = chain.skipped.get(counter);
      if (kept) return { keys: kept, late: true };
      if (counter < chain.floor) throw new SenderKeyError("key-expired", `counter ${counter} is older than the oldest key kept`);
      throw new SenderKeyError("replayed", `counter ${counter} was already opened`);
    }
    const gap = counter - chain.next;
    if (gap > MAX_SKIP) throw new SenderKeyError("too-far-ahead", `counter ${counter} skips ${gap} messages`);
    let key = chain.chainKey;
    const skipped = [];
    for (let n = chain.next; n < counter; n++) {
      const s = await chainStep(key);
      skipped.push([n, { messageKey: s.messageKey, nonce: s.nonce }]);
      key = s.next;
    }
    const s = await chainStep(key);
    return { keys: s, late: false, gap, skipped, next: s.next };
  }

  _apply(chain, counter, step) {
    if (step.late) {
      chain.skipped.delete(counter);
      return;
    }
    for (const [n, k] of step.skipped) chain.skipped.set(n, k);
    chain.next = counter + 1;
    chain.chainKey = step.next;
    while (chain.skipped.size > KEEP_SKIPPED) {
      const oldest = chain.skipped.keys().next().value;
      chain.skipped.delete(oldest);
      chain.floor = Math.max(chain.floor, oldest + 1);
    }
  }

  /**
   * Our `text` for `group` at its current epoch (16.4, 16.5): a new chain
   * and its distributions first when we have none usable, then the body.
   */
  async send(group, text, sentAt) {
    const o = out();
    const g = this._group(group);
    if (!g) throw new SenderKeyError("not-member", "not a group we are in");
    if (g.mine && g.mine.counter > LAST_COUNTER) g.mine = null; // exhausted (16.5)
    if (!g.mine) {
      g.mine = await newChain(g.epoch, 0, this.draw);
      const content = encodeDistribution(g.groupId, g.mine);
      for (const to of g.members.get(g.epoch)) {
        if (to !== this.me) o.effects.push({ kind: "distribute", group: g.id, to, content });
      }
    }
    const { body, next } = await sealGroupMessage({ groupId: g.groupId, sender: this.me,
      epoch: g.epoch, chain: g.mine, sentAt, content: utf8.encode(text) });
    g.mine.chainKey = next;
    g.mine.counter += 1;
    o.effects.push({ kind: "post", group: g.id, groupId: g.groupId, body });
    return o;
  }
}
