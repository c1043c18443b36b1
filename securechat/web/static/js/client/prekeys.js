// Our prekeys on the relay (docs/protocol.rst 14.1, 14.7), sans-IO:
// UPLOAD_PREKEYS out, PREKEYS_STORED and PREKEYS_LOW in.  The private
// halves are X25519 CryptoKeys made non-extractable by WebCrypto and kept
// in the store (IndexedDB, per browser profile and user): the page can
// derive with them, nobody can read them out.
//
// Rules, as the reference client keeps them (securechat/client/prekeyupload.py):
//   - a signed prekey is made and kept before its public half is uploaded;
//     it is replaced after ROTATE_AFTER, and also when it is not signed by
//     our current key (the operator re-keyed us); a replaced one is kept
//     for the grace period (GRACE, or the relay's letter expiry and a day
//     if it was seen longer), so letters sealed to it still open;
//   - the first upload carries ONE_TIME_STOCK one-time prekeys; PREKEYS_LOW
//     refills the stock (and sends the signed prekey again when the relay
//     says it has none); an answer saying the relay holds no one-time
//     prekey at all refills it too;
//   - a one-time prekey's private half is forgotten once a letter used it.
import { concat } from "../protocol/bytes.js";
import { importPublicKey, x25519KeyPair } from "../protocol/crypto.js";
import {
  LetterError, checkSignedPrekey, encodeOneTimePrekey, parseSignedPrekey, signPrekey,
} from "../protocol/letters.js";
import { encode } from "../protocol/mailbox.js";

export const DAY = 24 * 3600;
export const ROTATE_AFTER = 7 * DAY;
export const GRACE = 31 * DAY;
export const ONE_TIME_STOCK = 100;
const MAX_UPLOAD = 100;
const NONE = new Uint8Array(0);

/**
 * @param options.store  `{get, put, delete}` (store.js: IndexedDB or memory)
 * @param options.clock  () => milliseconds
 */
export class Prekeys {
  constructor({ me, signer, spki, out, view, store, clock = Date.now }) {
    Object.assign(this, { me, signer, spki, out, view, store, clock });
    this.uploads = []; // for each upload not yet answered: whether it carried one-time prekeys
  }

  now() {
    return Math.floor(this.clock() / 1000);
  }

  /** `{current: {id, createdAt, encoded, uploaded} | null, replaced: [{id, replacedAt}], nextId}` */
  async state() {
    return (await this.store.get("prekeys")) ?? { current: null, replaced: [], nextId: 1 };
  }

  async _save(state) {
    await this.store.put("prekeys", state);
  }

  /** After WELCOME: drop what the grace period is over for, keep the relay stocked. */
  async loggedIn() {
    const state = await this.state();
    const grace = Math.max(GRACE, ((await this.store.get("relay-expiry")) ?? 0) + DAY);
    const keep = [];
    for (const old of state.replaced) {
      if (this.now() - old.replacedAt >= grace) await this.store.delete(`signed/${old.id}`);
      else keep.push(old);
    }
    state.replaced = keep;
    await this._save(state);
    // A client with no prekeys on the relay is not told (14.7): the first
    // upload carries one-time prekeys too.
    await this._send(state.current === null ? ONE_TIME_STOCK : 0, false);
  }

  /** The relay's letter expiry seen on a LETTER (for the grace period). */
  async noteExpiry(storedAt, expiresAt) {
    const seen = Number(expiresAt - storedAt);
    if (seen > ((await this.store.get("relay-expiry")) ?? 0)) await this.store.put("relay-expiry", seen);
  }

  /** In a long session, each mailbox message is a moment to rotate. */
  async rotateIfDue() {
    if (this.uploads.length) return;
    const { current } = await this.state();
    if (current !== null && this.now() - current.createdAt >= ROTATE_AFTER) await this._send(0, false);
  }

  async _send(refill, force) {
    const state = await this.state();
    const current = state.current;
    let signed = NONE;
    if (current === null || this.now() - current.createdAt >= ROTATE_AFTER
        || !await this._ours(current.encoded)) {
      signed = await this._newSigned(state);
    } else if (force || !current.uploaded) {
      signed = current.encoded;
    }
    let oneTime = NONE;
    if (refill > 0) oneTime = await this._oneTime(Math.min(refill, MAX_UPLOAD));
    if (signed.length || oneTime.length) {
      this.uploads.push(oneTime.length > 0);
      this.out([encode("uploadPrekeys", { signed_prekey: signed, one_time: oneTime })]);
    }
  }

  async _ours(encoded) {
    try {
      await checkSignedPrekey(parseSignedPrekey(encoded), this.me, await importPublicKey(this.spki));
      return true;
    } catch (e) {
      if (e instanceof LetterError) return false;
      throw e;
    }
  }

  async _ids(state, count) {
    const first = state.nextId;
    state.nextId += count;
    await this._save(state);
    return first;
  }

  async _newSigned(state) {
    const id = await this._ids(state, 1);
    const pair = await x25519KeyPair();
    const createdAt = this.now();
    const encoded = await signPrekey(this.signer, this.me,
      { id, publicKey: pair.publicKey, createdAt: BigInt(createdAt) });
    await this.store.put(`signed/${id}`, pair.privateKey); // kept before it is sent
    if (state.current !== null) state.replaced.push({ id: state.current.id, replacedAt: createdAt });
    state.current = { id, createdAt, encoded, uploaded: false };
    await this._save(state);
    return encoded;
  }

  async _oneTime(count) {
    const state = await this.state();
    const first = await this._ids(state, count);
    const parts = [];
    for (let id = first; id < first + count; id++) {
      const pair = await x25519KeyPair();
      await this.store.put(`one-time/${id}`, pair.privateKey);
      parts.push(encodeOneTimePrekey({ id, publicKey: pair.publicKey }));
    }
    return concat(...parts);
  }

  get refilling() {
    return this.uploads.some((carried) => carried);
  }

  async stored(m) {
    const carried = this.uploads.shift() ?? false;
    const state = await this.state();
    if (state.current !== null && m.signed_prekey_id === state.current.id && !state.current.uploaded) {
      state.current.uploaded = true;
      await this._save(state);
    }
    // The relay holds no one-time prekey at all (a new relay, or it lost them).
    if (!carried && m.one_time_count === 0n && !this.refilling) {
      await this._send(ONE_TIME_STOCK, false);
    }
  }

  async low(m) {
    if (this.refilling) return; // on its way; the relay's count did not see it yet
    const count = Number(m.one_time_count > BigInt(ONE_TIME_STOCK) ? ONE_TIME_STOCK : m.one_time_count);
    await this._send(ONE_TIME_STOCK - count, m.has_signed_prekey === 0);
  }

  /** The relay refused an upload (COMMAND_FAILED 0x50). */
  refused() {
    this.uploads.shift();
  }

  /** The private half of our prekey, or null (`kind` "signed" or "one-time"). */
  async privateKey(kind, id) {
    return (await this.store.get(`${kind}/${id}`)) ?? null;
  }

  async forgetOneTime(id) {
    await this.store.delete(`one-time/${id}`);
  }
}
