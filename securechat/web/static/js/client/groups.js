// Groups in the page's session (docs/protocol.rst 15, 16), sans-IO: the
// relay's group messages in, GROUP_* and letters of content type 2 out,
// events for the page.  Each group's log is replayed and every change
// verified here (grouplog.js) with the actors' pinned keys; the members
// shown and sent keys come only from that replayed state (15.3).  Group
// work runs on its own queue, never awaited by the relay's message queue
// (a change waits for its actor's key, which comes as a later message).
import { randomBytes } from "../protocol/crypto.js";
import { equal, toHex } from "../protocol/bytes.js";
import {
  ACTION_WORDS, ADD, CREATE, DELETE, GroupError, LEAVE, REMOVE, applyChange, parseChange, signChange,
  verifyChange,
} from "../protocol/grouplog.js";
import { encode } from "../protocol/groups.js";
import { reasonText } from "../protocol/relay.js";
import { SenderKeyError } from "../protocol/senderkeys.js";
import { GroupKeys } from "./groupkeys.js";

const ROLES = { 1: "member", 2: "admin", 3: "owner" };
const SEEN_SEQS = 10000; // the relay's seqs remembered per group, to ignore one sent again
export const GROUP_KEY = 2; // a letter's content type (14.2)

/**
 * @param options.keyring  users' keys, pinned (keyring.js)
 * @param options.mail     `sendGroupKey(to, content) => Promise` (resolves once POST_LETTER is out)
 */
export class Groups {
  constructor({ me, signer, out, view, keyring, mail, clock = Date.now, draw, sweep = () => {}, store }) {
    Object.assign(this, { me, signer, out, view, keyring, mail, clock, sweep });
    this.keys = new GroupKeys({ me, draw, store });
    this.states = new Map(); // group id hex -> verified state (grouplog.js)
    this.listed = new Map(); // group id hex -> the relay's GroupEntry, last GROUP_LIST
    this.logs = new Map(); // group id hex -> changes collected from GROUP_LOG_PAGEs
    this.verifiedKeys = new Map(); // actor -> key a change verified with (15.3)
    this.seqs = new Map(); // group id hex -> {acked, final: Set, pending: Set}
    this.owed = new Map(); // group id hex -> distributions not yet sealed for a member
    this.work = Promise.resolve();
    this.busy = 0; // group tasks queued or running
  }

  /** Run `task` after the group work before it; a failure is a notice, never a disconnection. */
  _queue(task) {
    this.busy += 1;
    const run = this.work.then(task).catch((e) => {
      this.view({ kind: "notice", text: `group: ${e.detail ?? e.message}` });
    }).finally(() => { this.busy -= 1; });
    this.work = run;
    return run;
  }

  name(id) {
    const state = this.states.get(id);
    return state ? state.name : `group ${id.slice(0, 8)}`;
  }

  /** Whether `user` shares a group with us (a letter from them may be a key). */
  sharesGroup(user) {
    return this.keys.sharesGroup(user);
  }

  /** The members of `id` as verified (name -> role name), for the page. */
  members(id) {
    const state = this.states.get(id);
    return state ? [...state.members].map(([user, role]) => [user, ROLES[role]]) : [];
  }

  // -- from the relay ------------------------------------------------------

  /** One parsed group message from the relay (groups.js `parse`). */
  message(m) {
    switch (m.message) {
      case "groupList":
        return this._queue(() => this._list(m.groups));
      case "groupLogPage":
        return this._queue(() => this._logPage(m));
      case "groupChanged":
        return this._queue(() => this._changed(m.change));
      case "groupMessage":
        return this._queue(() => this._groupMessage(m));
      case "groupPosted":
        this.view({ kind: "groupPosted", group: toHex(m.group_id), seq: m.seq });
        return undefined;
      default: // groupRefused
        if (m.command === 0x74) this.logs.delete(toHex(m.group_id)); // no log coming: ask again later
        this.view({ kind: "groupNotice", group: toHex(m.group_id), warning: true,
          text: `the relay refused a group command (0x${m.command.toString(16)}): ${reasonText(m.reason)}` });
        return undefined;
    }
  }

  async _list(groups) {
    this.listing = false;
    const now = new Set();
    for (const g of groups) {
      const id = toHex(g.group_id);
      now.add(id);
      this.listed.set(id, g);
      const state = this.states.get(id);
      if (!state || state.epoch < g.epoch) this._askLog(id, g.group_id, state ? state.epoch : 0n);
      else this._compare(id);
    }
    for (const id of [...this.states.keys()]) {
      if (!now.has(id)) {
        this.view({ kind: "groupNotice", group: id, text: `you are no longer in ${this.name(id)} `
          + "(the relay's word: not verified)", warning: true });
        await this._forget(id);
      }
    }
  }

  _askLog(id, groupId, after) {
    if (this.logs.has(id)) return;
    this.logs.set(id, { after, changes: [] });
    this.out([encode("groupLog", { group_id: groupId, after_epoch: after })]);
  }

  async _logPage(m) {
    const id = toHex(m.group_id);
    const log = this.logs.get(id);
    if (!log) return; // not asked for
    log.changes.push(...m.changes.map((e) => e.change));
    if (m.more) {
      const last = log.changes.length ? parseChange(log.changes.at(-1)).epoch : log.after;
      this.out([encode("groupLog", { group_id: m.group_id, after_epoch: last })]);
      return;
    }
    this.logs.delete(id);
    for (const data of log.changes) {
      if (!await this._apply(id, data, true)) return;
    }
    this._compare(id);
  }

  /** GROUP_LIST must match the replayed state (15.3), else the relay lies. */
  _compare(id) {
    const g = this.listed.get(id);
    const state = this.states.get(id);
    if (!g || !state || state.epoch !== g.epoch) return;
    const role = state.members.get(this.me);
    if (state.name !== g.name || state.members.size !== g.members || role !== g.role) {
      this.view({ kind: "groupNotice", group: id, warning: true, text: `the relay's list of groups `
        + `does not match ${state.name}'s verified log (name, members or role): the relay is lying` });
    }
  }

  async _changed(data) {
    let change;
    try {
      change = parseChange(data);
    } catch (e) {
      if (!(e instanceof GroupError)) throw e;
      this.view({ kind: "groupNotice", warning: true, text: `the relay sent a group change that `
        + `is refused (${e.code}): ${e.detail}` });
      return;
    }
    const id = toHex(change.group_id);
    const state = this.states.get(id);
    if (this.logs.has(id)) {
      return; // a log is on its way; it holds this change too
    }
    if (state ? change.epoch !== state.epoch + 1n : change.action !== CREATE) {
      this._askLog(id, change.group_id, state ? state.epoch : 0n);
      return;
    }
    if (!await this._apply(id, data, false)) this._askLog(id, change.group_id, state ? state.epoch : 0n);
  }

  /** Verify and apply one change; on a refusal the group view is refused whole (15.3). */
  async _apply(id, data, fromLog) {
    const state = this.states.get(id) ?? null;
    let change;
    let after;
    let key;
    try {
      change = parseChange(data);
      if (state && change.epoch <= state.epoch) return true; // we hold it already
      key = await this._keyFor(change.actor);
      await verifyChange(change, key);
      after = await applyChange(state, change);
    } catch (e) {
      if (!(e instanceof GroupError)) throw e;
      this.view({ kind: "groupNotice", group: id, warning: true, text: `${this.name(id)}: a change `
        + `${fromLog ? "in its log " : ""}is REFUSED (${e.code}): ${e.detail}; nothing after it is taken` });
      return false;
    }
    this.verifiedKeys.set(change.actor, key);
    const wasIn = state !== null && this.keys.membersAt(id, state.epoch) !== null;
    this.states.set(id, after);
    const o = await this.keys.changed(change.group_id, { epoch: change.epoch, action: change.action,
      actor: change.actor, target: change.target }, new Set(after.members.keys()));
    if (wasIn || after.members.has(this.me)) {
      this.view({ kind: "groupChange", group: id, name: after.name, epoch: change.epoch,
        actor: change.actor, action: ACTION_WORDS[change.action], target: change.target,
        newName: change.action === CREATE || change.action === 7 ? change.name : "",
        members: this.members(id) });
    }
    await this._carry(o);
    const out = change.action === DELETE || (state?.members.has(this.me) && !after.members.has(this.me));
    if (out) await this._forget(id);
    else if (!wasIn && after.members.has(this.me)) this.sweep(); // keys may have come before the group
    return true;
  }

  async _keyFor(actor) {
    const known = this.verifiedKeys.get(actor);
    if (known) return known;
    const result = await new Promise((resolve) => this.keyring.want(actor, resolve));
    if (!result.key) throw new GroupError("bad-change", `no key for ${actor}: ${result.code}`);
    return result.key.publicKey;
  }

  async _forget(id) {
    this.states.delete(id);
    this.listed.delete(id);
    this.seqs.delete(id);
    this.view({ kind: "groupGone", group: id });
  }

  async _groupMessage(m) {
    const id = toHex(m.group_id);
    const seqs = this._seqs(id);
    if (seqs.seen.has(m.seq)) return; // a seq we hold already (15.3)
    seqs.seen.add(m.seq);
    if (seqs.seen.size > SEEN_SEQS) seqs.seen.delete(seqs.seen.values().next().value);
    seqs.pending.add(m.seq);
    await this._carry(await this.keys.message(m));
  }

  /** A letter of content type 2 opened (14.4): its distribution, to the group layer. */
  keyLetter(sender, content) {
    return this._queue(async () => this._carry(await this.keys.distribution(sender, content)));
  }

  _seqs(id) {
    let s = this.seqs.get(id);
    if (!s) {
      s = { acked: 0n, final: new Set(), pending: new Set(), seen: new Set() };
      this.seqs.set(id, s);
    }
    return s;
  }

  /** A message is final (shown, or refused); acknowledge every final one before the first held. */
  _seen(id, seq, final) {
    const s = this._seqs(id);
    if (!final) return;
    s.pending.delete(seq);
    s.final.add(seq);
    const firstHeld = s.pending.size ? [...s.pending].reduce((a, b) => (a < b ? a : b)) : null;
    let upTo = s.acked;
    for (const n of s.final) if (n > upTo && (firstHeld === null || n < firstHeld)) upTo = n;
    for (const n of [...s.final]) if (n <= upTo) s.final.delete(n);
    if (upTo > s.acked) {
      s.acked = upTo;
      const state = this.states.get(id);
      if (state) this.out([encode("groupAck", { group_id: state.groupId, seq: upTo })]);
    }
  }

  async _carry(o) {
    for (const e of o.events) {
      if (e.kind === "groupLogBehind") {
        const state = this.states.get(e.group);
        if (state) this._askLog(e.group, state.groupId, state.epoch);
        else if (!this.listing) {
          this.listing = true; // once until the answer: many may wait for the same group
          this.out([encode("listGroups")]);
        }
        continue;
      }
      if (e.seq !== undefined && (e.kind === "groupText" || e.kind === "groupRefused")) {
        this._seen(e.group, e.seq, true);
      }
      this.view(e);
    }
    for (const effect of o.effects) {
      if (effect.kind === "distribute") await this._distribute(effect);
      else this.out([encode("groupPost", { group_id: effect.groupId, body: effect.body })]);
    }
  }

  /**
   * A distribution in a letter of content type 2; one that could not be
   * sealed (no key, no prekeys) stays owed and is sent again, the same
   * bytes, before our next message in that group (16.5).
   */
  async _distribute(effect) {
    const owed = this.owed.get(effect.group) ?? [];
    this.owed.set(effect.group, owed.filter((e) => e.to !== effect.to));
    if (await this.mail.sendGroupKey(effect.to, effect.content)) return;
    this.owed.get(effect.group).push(effect);
    this.view({ kind: "groupNotice", group: effect.group, warning: true, text: `your key for this `
      + `group could not be sent to ${effect.to} yet; it is sent again with your next message` });
  }

  // -- from the page -----------------------------------------------------------

  /** Say `text` in group `id` (hex). */
  say(id, text) {
    return this._queue(async () => {
      try {
        const members = this.keys.membersAt(id, this.states.get(id)?.epoch ?? 0n);
        const owed = this.owed.get(id) ?? [];
        this.owed.delete(id);
        for (const effect of owed) {
          if (members?.has(effect.to)) await this._distribute(effect); // still a member: still owed
        }
        await this._carry(await this.keys.send(id, text, BigInt(Math.floor(this.clock() / 1000))));
      } catch (e) {
        if (!(e instanceof SenderKeyError)) throw e;
        this.view({ kind: "groupNotice", group: id, warning: true, text: `not sent (${e.code}): ${e.detail}` });
      }
    });
  }

  /** Make a group called `name` (we are its owner). */
  create(name) {
    return this._change({ group_id: randomBytes(16), epoch: 1n, prev: new Uint8Array(32),
      action: CREATE, name });
  }

  /** Add (`action` ADD), remove (REMOVE) `target`, or leave (LEAVE) group `id`. */
  change(id, action, target = "") {
    const state = this.states.get(id);
    if (!state) return Promise.resolve();
    return this._change({ group_id: state.groupId, epoch: state.epoch + 1n, prev: state.head, action,
      target });
  }

  _change(fields) {
    return this._queue(async () => {
      try {
        const c = await signChange(this.signer, { ...fields, actor: this.me,
          made_at: BigInt(Math.floor(this.clock() / 1000)) });
        const state = this.states.get(toHex(fields.group_id));
        if (state) await applyChange(state, c); // the rules checked here first, as the relay will
        this.out([encode("groupChange", { change: c.encoded })]);
      } catch (e) {
        if (!(e instanceof GroupError)) throw e;
        this.view({ kind: "groupNotice", warning: true, text: `not sent (${e.code}): ${e.detail}` });
      }
    });
  }
}

export { ADD, REMOVE, LEAVE, equal };
