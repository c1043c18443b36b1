// Letters for us (docs/protocol.rst 14.4, 14.5), sans-IO: LIST_LETTERS
// and FETCH_LETTER out, LETTER_LIST and LETTER in; each letter opened with
// every check of 14.4 in the spec's order, then delivery and read receipts
// signed and posted.
//
// Rules it keeps (as the reference client, securechat/client/letters.py):
//   - a LETTER nobody asked for is dropped: nothing opened, answered or pinned;
//   - steps 1 to 5 (size, parse, envelope, recipient, replay) come before
//     the sender's key is asked for; the key (GET_USER_KEY) is pinned as
//     for chats, and a changed one refuses the letter (`key-changed`);
//   - the signature is checked before anything touches the ciphertext;
//     when the sender's registered key does not verify it, the sender's
//     previous keys (GET_KEY_HISTORY) are tried as 14.9 says
//     (previouskeys.js), and a letter opened so says which key signed it;
//   - a letter is shown as text only when it verified and decrypted; a
//     refused one is shown with its code, never as text;
//   - a letter opened before is shown again from our copy when the relay
//     serves the same bytes, and refused as `replayed` when it serves
//     different ones under the same (sender, letter_id);
//   - a delivery receipt once the signature verified (step 6 passed, even
//     if a later step refuses the letter), a read receipt once it is shown.
import { toHex } from "../protocol/bytes.js";
import { sha256 } from "../protocol/crypto.js";
import { LetterError, TEXT, checkEnvelope, openLetter, parseLetter } from "../protocol/letters.js";
import { encode } from "../protocol/mailbox.js";
import { DELIVERY, READ, makeReceipt } from "../protocol/receipts.js";
import { SenderKeyError, parseDistribution } from "../protocol/senderkeys.js";
import { previousSigner } from "./previouskeys.js";

/** A letter's content type for a group sender key (14.2): never shown, handed to the groups. */
export const GROUP_KEY = 2;

/** Codes of 14.4 found after the signature verified: a delivery receipt is still due. */
const AFTER_SIGNATURE = new Set(["unknown-prekey", "bad-key-share", "decrypt-failed", "bad-content"]);

/**
 * @param options.keyring  users' keys, pinned (keyring.js)
 * @param options.prekeys  our prekeys (prekeys.js)
 * @param options.store    `{get, put, delete}`: letters opened, by sender and id
 */
export class Inbox {
  constructor({ me, signer, spki, out, view, keyring, prekeys, store, clock = Date.now,
    groupKey = async () => {}, sharesGroup = () => false }) {
    Object.assign(this, { me, signer, spki, out, view, keyring, prekeys, store, clock, groupKey,
      sharesGroup });
    this.reading = []; // "sender/idhex" for each FETCH_LETTER sent
    this.lists = []; // for each LIST_LETTERS sent: true when it is our own sweep (not shown)
    this.histories = new Map(); // user -> [async (keys) => ...] waiting for KEY_HISTORY
  }

  /** Ask for our letters: `which` 0 new, 1 all. */
  list(which = 0, offset = 0n) {
    this.lists.push(false);
    this.out([encode("listLetters", { which, offset: BigInt(offset) })]);
  }

  /**
   * Fetch every letter from a user we share a group with that we have not
   * opened (group keys, 16.2), whatever its state: another client of ours
   * may have fetched it, and key letters are never deleted here.
   */
  sweep() {
    this.lists.push(true);
    this.out([encode("listLetters", { which: 1, offset: 0n })]);
  }

  /** Fetch and open the letter `letterId` (bytes) from `sender`, once. */
  read(sender, letterId) {
    if (this.reading.includes(`${sender}/${toHex(letterId)}`)) return;
    this.reading.push(`${sender}/${toHex(letterId)}`);
    this.out([encode("fetchLetter", { sender, letter_id: letterId })]);
  }

  /** FETCH_LETTER refused (COMMAND_FAILED 0x55): the oldest fetch of `sender`'s is over. */
  fetchFailed(sender) {
    const at = this.reading.findIndex((ref) => ref.startsWith(`${sender}/`));
    if (at >= 0) this.reading.splice(at, 1);
  }

  async letterList(m) {
    const quiet = this.lists.shift() ?? false;
    const letters = [];
    for (const e of m.letters) {
      const before = await this.store.get(`opened/${e.sender}/${toHex(e.letter_id)}`);
      if (quiet && !before && this.sharesGroup(e.sender)) this.read(e.sender, e.letter_id);
      // a key we took before this page was loaded: its chain is kept in memory only, so again
      else if (quiet && before?.groupKey) this.groupKey(e.sender, before.content);
      if (!before?.groupKey) letters.push(e); // a group key we took is no letter to read
    }
    if (quiet) return;
    this.view({ kind: "letterList", total: m.total, letters: letters.map((e) => ({
      sender: e.sender, letterId: e.letter_id, id: toHex(e.letter_id).slice(0, 8),
      storedAt: e.stored_at, size: e.size, state: e.state })) });
  }

  async letter(m) {
    const ref = `${m.sender}/${toHex(m.letter_id)}`;
    const at = this.reading.indexOf(ref);
    if (at < 0) return; // not asked for
    this.reading.splice(at, 1);
    await this.prekeys.noteExpiry(m.stored_at, m.expires_at);
    const before = await this.store.get(`opened/${ref}`);
    const digest = await sha256(m.letter);
    if (before && toHex(before.digest) === toHex(digest)) {
      if (before.groupKey) return this.groupKey(m.sender, before.content); // nothing new if held
      this._opened(m, before.text, before.sentAt, true, before.keyReplaced ?? 0n);
      return;
    }
    const opening = { letter: m.letter, envelope: { sender: m.sender, letterId: m.letter_id },
      me: this.me, opened: async () => before !== undefined };
    try {
      await checkEnvelope(opening);
    } catch (e) {
      return this._refused(m, e);
    }
    this.keyring.want(m.sender, (result) => this._open(m, opening, result, digest));
  }

  /** A KEY_HISTORY (or, `keys` empty, its COMMAND_FAILED). */
  async keyHistory(m) {
    const waiting = this.histories.get(m.user);
    if (!waiting) return; // not asked for
    this.histories.delete(m.user);
    for (const waiter of waiting) await waiter(m.keys);
  }

  _withHistory(m, opening, digest) {
    const waiting = this.histories.get(m.sender) ?? [];
    waiting.push(async (history) => {
      let previous;
      try {
        previous = await previousSigner({ h: parseLetter(m.letter), history, storedAt: m.stored_at,
          wasPinned: (fp) => this.keyring.pins.wasPinned(m.sender, fp),
          fingerprint: this.keyring.fingerprint });
      } catch (e) {
        return this._refused(m, e);
      }
      await this._open(m, opening, previous, digest, previous.replacedAt);
    });
    this.histories.set(m.sender, waiting);
    if (waiting.length === 1) this.out([encode("getKeyHistory", { user: m.sender })]);
  }

  async _open(m, opening, result, digest, keyReplaced = 0n) {
    let letter;
    try {
      if (!result.key) throw new LetterError(result.code, result.detail);
      letter = await openLetter({ ...opening, myKey: this.spki, senderKey: result.key,
        prekeyPrivate: (kind, id) => this.prekeys.privateKey(kind, id) });
    } catch (e) {
      if (e.code === "bad-signature" && result.key && !keyReplaced) {
        this._withHistory(m, opening, digest); // signed before the sender was re-keyed?
        return;
      }
      await this._refused(m, e);
      if (AFTER_SIGNATURE.has(e.code)) await this._receipt(m, digest, DELIVERY);
      return;
    }
    if (letter.contentType === GROUP_KEY) return this._groupKey(m, letter, digest, keyReplaced);
    if (letter.contentType !== TEXT) {
      this.view({ kind: "letterFailed", from: m.sender, id: toHex(m.letter_id).slice(0, 8),
        storedAt: m.stored_at, code: "unknown-content",
        detail: `content type ${letter.contentType}, which this page cannot show` });
      await this._receipt(m, digest, DELIVERY);
      return;
    }
    await this.store.put(`opened/${m.sender}/${toHex(m.letter_id)}`, { digest, text: letter.text,
      sentAt: letter.sentAt, storedAt: m.stored_at, expiresAt: m.expires_at, keyReplaced });
    if (letter.oneTimePrekeyId !== null) await this.prekeys.forgetOneTime(letter.oneTimePrekeyId);
    this._opened(m, letter.text, letter.sentAt, false, keyReplaced);
    await this._receipt(m, digest, DELIVERY);
    await this._receipt(m, digest, READ);
  }

  /**
   * A group sender key (14.4 step 10, 16.2): kept as opened, handed to the
   * groups, never shown as a letter, and not deleted from the relay (a
   * client of ours elsewhere may still need it; it expires with the letter).
   */
  async _groupKey(m, letter, digest, keyReplaced) {
    try {
      parseDistribution(letter.content);
    } catch (e) {
      if (!(e instanceof SenderKeyError)) throw e;
      await this._refused(m, new LetterError("bad-content", `a group key that does not parse: ${e.detail}`));
      await this._receipt(m, digest, DELIVERY);
      return;
    }
    await this.store.put(`opened/${m.sender}/${toHex(m.letter_id)}`, { digest, groupKey: true,
      content: letter.content, sentAt: letter.sentAt, storedAt: m.stored_at, expiresAt: m.expires_at,
      keyReplaced });
    if (letter.oneTimePrekeyId !== null) await this.prekeys.forgetOneTime(letter.oneTimePrekeyId);
    await this._receipt(m, digest, DELIVERY);
    await this.groupKey(m.sender, letter.content);
  }

  _opened(m, text, sentAt, again, keyReplaced) {
    this.view({ kind: "letterOpened", from: m.sender, id: toHex(m.letter_id).slice(0, 8),
      sentAt, storedAt: m.stored_at, text, again, verification: "ok", keyReplaced });
  }

  async _refused(m, e) {
    if (!(e instanceof LetterError)) throw e;
    this.view({ kind: "letterFailed", from: m.sender, id: toHex(m.letter_id).slice(0, 8),
      storedAt: m.stored_at, code: e.code, detail: e.detail });
  }

  async _receipt(m, letterDigest, kind) {
    const receipt = await makeReceipt(this.signer, { kind, letterDigest, letterId: m.letter_id,
      letterSender: m.sender, signer: this.me, signedAt: BigInt(Math.floor(this.clock() / 1000)) });
    this.out([encode("postReceipt", { sender: m.sender, letter_id: m.letter_id, receipt })]);
  }
}
