// Sending letters and checking their receipts (docs/protocol.rst 14.3,
// 14.5), sans-IO: the mailbox's relay messages in, the client's out,
// events for the page.  The recipient's key is pinned as for chats.
import { equal, toHex } from "../protocol/bytes.js";
import { sha256 } from "../protocol/crypto.js";
import {
  LetterError, TEXT, checkSignedPrekey, parseOneTimePrekey, parseSignedPrekey, sealLetter,
} from "../protocol/letters.js";
import { encode } from "../protocol/mailbox.js";
import { checkReceipt } from "../protocol/receipts.js";

const GROUP_KEY = 2; // a letter's content type (14.2)

/**
 * @param options.keyring  the users' keys, pinned (keyring.js)
 */
export class Mail {
  constructor({ me, signer, spki, out, view, keyring, clock = Date.now }) {
    Object.assign(this, { me, signer, spki, out, view, keyring, clock });
    this.waiting = new Map(); // recipient -> [texts] waiting for key and bundle
    this.keys = new Map(); // user -> {spki, publicKey}, as pinned
    this.sent = new Map(); // letter id (hex) -> {letterId, sender, recipient, digest}
  }

  /** Send `text` to `to` as a letter. */
  send(to, text) {
    this._send(to, { content: text, contentType: TEXT, done: () => {} });
  }

  /**
   * Send a group sender key (`content`, a distribution, 16.2) to `to` in a
   * letter of content type 2; resolves once its POST_LETTER is out, or it
   * could not be sealed (`false`).
   */
  sendGroupKey(to, content) {
    return new Promise((resolve) => {
      this._send(to, { content, contentType: GROUP_KEY, done: resolve });
    });
  }

  _send(to, item) {
    const queue = this.waiting.get(to) ?? [];
    queue.push(item);
    this.waiting.set(to, queue);
    if (queue.length > 1) return;
    this.keyring.want(to, async (result) => {
      if (result.key) {
        this.keys.set(to, result.key);
        return;
      }
      for (const item of this.waiting.get(to) ?? []) item.done(false);
      this.waiting.delete(to);
      // a changed key was told by the keyring's warning already
      if (result.code !== "key-changed") this.view({ kind: "letterFailed", to, code: result.code });
    });
    this.out([encode("fetchBundle", { user: to })]);
  }

  /** A mailbox message from the relay (mailbox.parse). */
  async message(m) {
    switch (m.message) {
      case "bundle":
        return this._bundle(m);
      case "letterStored":
        if (this.sent.get(toHex(m.letter_id))?.groupKey) return; // a group key: not the user's letter
        this.view({ kind: "letterStored", to: m.recipient, id: toHex(m.letter_id).slice(0, 8) });
        return;
      case "letterRefused":
        this.view({ kind: "letterRefused", to: m.recipient, reason: m.reason });
        return;
      case "receipt":
        return this._receipt(m);
      default:
        this.view({ kind: m.message, ...m });
    }
  }

  /** Whether the relay's message is one Mail handles. */
  static handles(m) {
    return ["bundle", "letterStored", "letterRefused", "receipt"].includes(m.message);
  }

  /** FETCH_BUNDLE failed (COMMAND_FAILED 0x51): what waited for `user` is not sent. */
  bundleFailed(user, why) {
    const items = this.waiting.get(user) ?? [];
    this.waiting.delete(user);
    for (const item of items) item.done(false);
    if (items.length) this.view({ kind: "letterFailed", to: user, code: why });
  }

  async _bundle(m) {
    const texts = this.waiting.get(m.user);
    const key = this.keys.get(m.user);
    this.waiting.delete(m.user);
    if (!texts || !key) return; // refused above, or not asked
    const sent = [];
    try {
      if (!equal(m.user_key, key.spki)) {
        throw new LetterError("bad-prekey-signature", "the bundle's key is not the pinned key");
      }
      const signed = parseSignedPrekey(m.signed_prekey);
      await checkSignedPrekey(signed, m.user, key.publicKey);
      const oneTime = m.one_time_prekey.length ? parseOneTimePrekey(m.one_time_prekey) : null;
      for (const item of texts) {
        const sealed = await sealLetter({
          signer: this.signer, sender: this.me, senderKey: this.spki, recipient: m.user,
          recipientKey: key.spki, signedPrekey: signed, oneTimePrekey: oneTime, content: item.content,
          contentType: item.contentType,
          sentAt: BigInt(Math.floor(this.clock() / 1000)),
        });
        this.sent.set(toHex(sealed.letterId), { letterId: sealed.letterId, sender: this.me,
          recipient: m.user, digest: await sha256(sealed.letter), key: key.publicKey,
          groupKey: item.contentType === GROUP_KEY });
        this.out([encode("postLetter", { recipient: m.user, letter_id: sealed.letterId,
          letter: sealed.letter })]);
        sent.push(item);
        item.done(true);
      }
    } catch (e) {
      for (const item of texts) if (!sent.includes(item)) item.done(false);
      if (!(e instanceof LetterError)) throw e;
      this.view({ kind: "letterFailed", to: m.user, code: e.code });
    }
  }

  async _receipt(m) {
    const letter = this.sent.get(toHex(m.letter_id));
    const id = toHex(m.letter_id).slice(0, 8);
    if (!letter) {
      this.view({ kind: "receiptUnknown", from: m.recipient, id });
      return;
    }
    try {
      const receipt = await checkReceipt(m.receipt, letter, letter.key);
      if (letter.groupKey) return; // a group key letter: its receipts are not the user's concern
      this.view({ kind: "receipt", from: m.recipient, id,
        what: receipt.kind === 1 ? "delivered" : "read" });
    } catch (e) {
      if (!(e instanceof LetterError)) throw e;
      this.view({ kind: "receiptRefused", from: m.recipient, id, code: e.code });
    }
  }
}
