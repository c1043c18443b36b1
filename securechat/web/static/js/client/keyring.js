// Users' registered keys for letters (docs/protocol.rst 14.3 step 1,
// 14.4 step 6), sans-IO: GET_USER_KEY out, USER_KEY in, each key checked
// against the pins exactly as for chats (12.1).  A new key is pinned; a
// changed one refuses the letter (code `key-changed`) and is kept as the
// one the user may trust; a USER_KEY nobody asked for is dropped (nothing
// is pinned on the relay's word alone).
import { importPublicKey } from "../protocol/crypto.js";
import { encode } from "../protocol/mailbox.js";

/**
 * @param options.fingerprint async (spki) => the pin form of a key
 * @param options.pins  `{get(peer), set(peer, fingerprint)}`, shared with chats
 * @param options.changed  Map peer -> offered fingerprint, shared with chats (trust)
 */
export class Keyring {
  constructor({ out, view, pins, fingerprint, changed }) {
    Object.assign(this, { out, view, pins, fingerprint, changed });
    this.waiters = new Map(); // user -> [async (result) => ...]
  }

  /**
   * Call `waiter` with `{key: {spki, publicKey}}`, or `{key: null, code,
   * detail}`, once the relay answers for `user`.
   */
  want(user, waiter) {
    const waiting = this.waiters.get(user) ?? [];
    waiting.push(waiter);
    this.waiters.set(user, waiting);
    if (waiting.length === 1) this.out([encode("getUserKey", { user })]);
  }

  async userKey(m) {
    const waiting = this.waiters.get(m.user);
    if (!waiting) return; // not asked for
    this.waiters.delete(m.user);
    const result = await this._check(m);
    for (const waiter of waiting) await waiter(result);
  }

  async _check(m) {
    const offered = await this.fingerprint(m.user_key);
    const pinned = await this.pins.get(m.user);
    if (pinned !== null && pinned !== offered) {
      this.changed.set(m.user, offered);
      this.view({ kind: "keyChanged", peer: m.user, pinned, offered, letter: true });
      return { key: null, code: "key-changed",
        detail: `${m.user}'s key differs from the pinned one; compare fingerprints, then trust it` };
    }
    let publicKey;
    try {
      publicKey = await importPublicKey(m.user_key);
    } catch {
      return { key: null, code: "bad-key", detail: `the relay sent an unusable key for ${m.user}` };
    }
    if (pinned === null) await this.pins.set(m.user, offered);
    if (m.revoked) {
      this.view({ kind: "notice", text: `${m.user}'s access to the relay was revoked (what it `
        + "signed before still verifies with its registered key)" });
    }
    return { key: { spki: m.user_key, publicKey } };
  }

  /** GET_USER_KEY was refused (COMMAND_FAILED). */
  async failed(user, why) {
    const waiting = this.waiters.get(user) ?? [];
    this.waiters.delete(user);
    for (const waiter of waiting) {
      await waiter({ key: null, code: "no-sender-key", detail: `the relay has no key for ${user}: ${why}` });
    }
  }
}
