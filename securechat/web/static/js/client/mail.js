// Sending letters and checking their receipts (docs/protocol.rst 14.3,
// 14.5), sans-IO: the mailbox's relay messages in, the client's out,
// events for the page.  The recipient's key is pinned as for chats.
import { equal, toHex } from "../protocol/bytes.js";
import { sha256 } from "../protocol/crypto.js";
import {
  LetterError, checkSignedPrekey, parseOneTimePrekey, parseSignedPrekey, sealLetter,
} from "../protocol/letters.js";
import { encode } from "../protocol/mailbox.js";
import { checkReceipt } from "../protocol/receipts.js";

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
    const queue = this.waiting.get(to) ?? [];
    queue.push(text);
    this.waiting.set(to, queue);
    if (queue.length > 1) return;
    this.keyring.want(to, async (result) => {
      if (result.key) {
        this.keys.set(to, result.key);
        return;
      }
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

  async _bundle(m) {
    const texts = this.waiting.get(m.user);
    const key = this.keys.get(m.user);
    this.waiting.delete(m.user);
    if (!texts || !key) return; // refused above, or not asked
    try {
      if (!equal(m.user_key, key.spki)) {
        throw new LetterError("bad-prekey-signature", "the bundle's key is not the pinned key");
      }
      const signed = parseSignedPrekey(m.signed_prekey);
      await checkSignedPrekey(signed, m.user, key.publicKey);
      const oneTime = m.one_time_prekey.length ? parseOneTimePrekey(m.one_time_prekey) : null;
      for (const text of texts) {
        const sealed = await sealLetter({
          signer: this.signer, sender: this.me, senderKey: this.spki, recipient: m.user,
          recipientKey: key.spki, signedPrekey: signed, oneTimePrekey: oneTime, content: text,
          sentAt: BigInt(Math.floor(this.clock() / 1000)),
        });
        this.sent.set(toHex(sealed.letterId), { letterId: sealed.letterId, sender: this.me,
          recipient: m.user, digest: await sha256(sealed.letter), key: key.publicKey });
        this.out([encode("postLetter", { recipient: m.user, letter_id: sealed.letterId,
          letter: sealed.letter })]);
      }
    } catch (e) {
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
      this.view({ kind: "receipt", from: m.recipient, id,
        what: receipt.kind === 1 ? "delivered" : "read" });
    } catch (e) {
      if (!(e instanceof LetterError)) throw e;
      this.view({ kind: "receiptRefused", from: m.recipient, id, code: e.code });
    }
  }
}
