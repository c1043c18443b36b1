// Receipts: docs/protocol.rst 14.5.  Signed by a letter's recipient,
// checked by its sender in the spec's order.
import { Reader, bytes16, concat, equal, text8, u16, u64, u8, utf8 } from "./bytes.js";
import { sha256, sign, verifySignature } from "./crypto.js";
import { ProtocolError } from "./errors.js";
import { LetterError } from "./letters.js";
import { isUserName } from "./messages.js";

export const DELIVERY = 1;
export const READ = 2;
const LABEL = utf8("securechat/1 receipt signature");

/** The signed part: version to signed_at. */
function signedPart({ kind, letterDigest, letterId, letterSender, signer, signedAt }) {
  return concat(u8(1), u8(kind), letterDigest, letterId, text8(letterSender), text8(signer),
    u64(signedAt));
}

/** A receipt of `kind` for `letter` (parsed by letters.parseLetter, with its digest). */
export async function makeReceipt(signingKey, { kind, letterDigest, letterId, letterSender,
  signer, signedAt }) {
  const part = signedPart({ kind, letterDigest, letterId, letterSender, signer, signedAt });
  const signature = await sign(signingKey, concat(LABEL, u8(0), await sha256(part)));
  return concat(part, u16(signingKey.scheme), bytes16(signature));
}

export function parseReceipt(data) {
  if (data.length >= 1 && data[0] !== 1) {
    throw new LetterError("unsupported-version", `receipt version ${data[0]}`);
  }
  const r = new Reader(data);
  try {
    r.u8("version");
    const kind = r.u8("kind");
    if (kind !== DELIVERY && kind !== READ) throw new LetterError("malformed", `receipt kind ${kind}`);
    const receipt = { kind, letterDigest: r.take(32, "letter_digest"),
      letterId: r.take(16, "letter_id"), letterSender: r.text8("letter_sender"),
      signer: r.text8("signer"), signedAt: r.u64("signed_at") };
    receipt.part = data.subarray(0, r.at);
    receipt.scheme = r.u16("scheme");
    receipt.signature = r.bytes16("signature");
    r.end("receipt");
    if (receipt.signature.length > 512 || !isUserName(receipt.letterSender)
        || !isUserName(receipt.signer)) {
      throw new LetterError("malformed", "a field outside its rule");
    }
    return receipt;
  } catch (e) {
    if (e instanceof ProtocolError) throw new LetterError("malformed", e.detail);
    throw e;
  }
}

/**
 * Check a receipt for our letter (`{letterId, sender, recipient, digest}`)
 * with the signer's pinned key; returns the receipt, else LetterError.
 */
export async function checkReceipt(data, letter, signerKey) {
  const receipt = parseReceipt(data);
  if (receipt.signer !== letter.recipient) {
    throw new LetterError("wrong-signer", `signed by ${receipt.signer}`);
  }
  if (receipt.letterSender !== letter.sender) {
    throw new LetterError("wrong-sender", `for a letter from ${receipt.letterSender}`);
  }
  if (!equal(receipt.letterId, letter.letterId) || !equal(receipt.letterDigest, letter.digest)) {
    throw new LetterError("wrong-letter", "for another letter");
  }
  const content = concat(LABEL, u8(0), await sha256(receipt.part));
  if (!await verifySignature(signerKey, receipt.scheme, receipt.signature, content)) {
    throw new LetterError("bad-signature", `the receipt is not signed by ${receipt.signer}'s key`);
  }
  return receipt;
}
