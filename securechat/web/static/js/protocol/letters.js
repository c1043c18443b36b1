// Letters and prekeys: docs/protocol.rst 14.1-14.4.  Sealing to a
// recipient's prekeys and opening, each refusal a mailbox error (14.8)
// that refuses that one letter or prekey and nothing else.
import {
  Reader, bytes16, bytes32, concat, equal, text8, u16, u32, u64, u8, utf8,
} from "./bytes.js";
import {
  AES_256_GCM, CHACHA20_POLY1305, SUPPORTED_SUITES, aeadKey, aeadOpen, aeadSeal, hkdfExtract,
  randomBytes, sha256, sign, verifySignature, x25519, x25519KeyPair,
} from "./crypto.js";
import { ProtocolError } from "./errors.js";
import { isUserName } from "./messages.js";
import { expandLabel } from "./schedule.js";

export const MAX_LETTER = 49152;
export const LETTER_VERSION = 1;
export const TEXT = 1;

/** A mailbox error (14.8): `code` says which check refused. */
export class LetterError extends Error {
  constructor(code, detail) {
    super(`${code}: ${detail ?? code}`);
    this.code = code;
    this.detail = detail ?? code;
  }
}

/** Run `parse` over `data` exactly; any codec error is `malformed`. */
function exactly(data, what, parse) {
  const r = new Reader(data);
  try {
    const out = parse(r);
    r.end(what);
    return out;
  } catch (e) {
    if (e instanceof ProtocolError) throw new LetterError("malformed", `${what}: ${e.detail}`);
    throw e;
  }
}

function readName(r, what) {
  const name = r.text8(what);
  if (!isUserName(name)) throw new LetterError("malformed", `${what} is not a user name`);
  return name;
}

function flag(r, what) {
  const v = r.u8(what);
  if (v > 1) throw new LetterError("malformed", `${what} is ${v}`);
  return v === 1;
}

// -- prekeys (14.1) -------------------------------------------------------

function prekeyContent(owner, id, publicKey, createdAt) {
  return concat(utf8("securechat/1 signed prekey"), u8(0), text8(owner), u32(id), publicKey,
    u64(createdAt));
}

/** A signed prekey's encoding, signed by `signer` for `owner`. */
export async function signPrekey(signer, owner, { id, publicKey, createdAt }) {
  const signature = await sign(signer, prekeyContent(owner, id, publicKey, createdAt));
  return concat(u32(id), publicKey, u64(createdAt), u16(signer.scheme), bytes16(signature));
}

export function parseSignedPrekey(data) {
  return exactly(data, "signed prekey", (r) => {
    const id = r.u32("prekey_id");
    if (id === 0) throw new LetterError("malformed", "prekey id 0");
    const publicKey = r.take(32, "public");
    const createdAt = r.u64("created_at");
    const scheme = r.u16("scheme");
    const signature = r.bytes16("signature");
    if (signature.length > 512) throw new LetterError("malformed", "signature over 512 bytes");
    return { id, publicKey, createdAt, scheme, signature };
  });
}

/** Throws `bad-prekey-signature` unless `prekey` verifies for `owner` with `ownerKey`. */
export async function checkSignedPrekey(prekey, owner, ownerKey) {
  const content = prekeyContent(owner, prekey.id, prekey.publicKey, prekey.createdAt);
  if (!await verifySignature(ownerKey, prekey.scheme, prekey.signature, content)) {
    throw new LetterError("bad-prekey-signature", `the signed prekey does not verify for ${owner}`);
  }
}

export function encodeOneTimePrekey({ id, publicKey }) {
  return concat(u32(id), publicKey);
}

export function parseOneTimePrekey(data) {
  return exactly(data, "one-time prekey", (r) => ({ id: r.u32("prekey_id"),
    publicKey: r.take(32, "public") }));
}

// -- letters (14.2-14.4) ------------------------------------------------------

function encodeHeader(h) {
  return concat(u8(LETTER_VERSION), u16(h.suite), h.letterId, text8(h.sender), text8(h.recipient),
    u64(h.sentAt), h.replyTo ? concat(u8(1), h.replyTo) : u8(0), u32(h.signedPrekeyId),
    h.oneTimePrekeyId !== null ? concat(u8(1), u32(h.oneTimePrekeyId)) : u8(0), h.ephemeral);
}

async function sharedSecret(privateKey, signedPublic, oneTimePublic) {
  try {
    const first = await x25519(privateKey, signedPublic);
    return oneTimePublic ? concat(first, await x25519(privateKey, oneTimePublic)) : first;
  } catch (e) {
    if (e instanceof ProtocolError) throw new LetterError("bad-key-share", e.detail);
    throw e;
  }
}

/** prk, binding, key and nonce of 14.3 step 5. */
export async function letterKeys(shared, { sender, senderKey, recipient, recipientKey, header }) {
  const prk = await hkdfExtract(await sha256(utf8("securechat/1 letter")), shared);
  const binding = await sha256(concat(text8(sender), bytes16(senderKey), text8(recipient),
    bytes16(recipientKey), header));
  return {
    prk, binding,
    key: await expandLabel(prk, "letter key", binding, 32),
    nonce: await expandLabel(prk, "letter iv", binding, 12),
  };
}

function letterContent(header, ciphertext) {
  return sha256(concat(header, bytes32(ciphertext)));
}

const LETTER_LABEL = utf8("securechat/1 letter signature");

/**
 * Seal `content` (text) from `sender` to `recipient` (14.3).  Keys are DER
 * SubjectPublicKeyInfo; `signedPrekey` and `oneTimePrekey` (or null) are
 * the bundle's, already checked.  `draw` (tests only) gives letter_id then
 * the ephemeral private key.
 */
export async function sealLetter({
  signer, sender, senderKey, recipient, recipientKey, signedPrekey, oneTimePrekey = null,
  content, sentAt, replyTo = null, contentType = TEXT, draw,
}) {
  const letterId = draw ? draw(16) : randomBytes(16);
  const e = await x25519KeyPair(draw ? draw(32) : undefined);
  const header = encodeHeader({
    suite: AES_256_GCM, letterId, sender, recipient, sentAt, replyTo,
    signedPrekeyId: signedPrekey.id, oneTimePrekeyId: oneTimePrekey ? oneTimePrekey.id : null,
    ephemeral: e.publicKey,
  });
  const shared = await sharedSecret(e.privateKey, signedPrekey.publicKey,
    oneTimePrekey?.publicKey);
  const { key, nonce } = await letterKeys(shared, {
    sender, senderKey, recipient, recipientKey, header,
  });
  const plaintext = concat(u8(contentType), typeof content === "string" ? utf8(content) : content);
  const ciphertext = await aeadSeal(await aeadKey(key), nonce, plaintext, header);
  const signature = await sign(signer, concat(LETTER_LABEL, u8(0),
    await letterContent(header, ciphertext)));
  const letter = concat(header, bytes32(ciphertext), u16(signer.scheme), bytes16(signature));
  if (letter.length > MAX_LETTER) {
    throw new LetterError("letter-too-large", `a letter of ${letter.length} bytes`);
  }
  return { letter, letterId, header };
}

/** A sealed letter parsed (14.4 steps 1-2). */
export function parseLetter(letter) {
  if (letter.length > MAX_LETTER) {
    throw new LetterError("letter-too-large", `a letter of ${letter.length} bytes`);
  }
  if (letter.length >= 1 && letter[0] !== LETTER_VERSION) {
    throw new LetterError("unsupported-version", `letter version ${letter[0]}`);
  }
  const parsed = exactly(letter, "letter", (r) => {
    r.u8("version");
    const h = { suite: r.u16("suite"), letterId: r.take(16, "letter_id"),
      sender: readName(r, "sender"), recipient: readName(r, "recipient"),
      sentAt: r.u64("sent_at") };
    h.replyTo = flag(r, "has_reply_to") ? r.take(16, "reply_to") : null;
    h.signedPrekeyId = r.u32("signed_prekey_id");
    h.oneTimePrekeyId = flag(r, "has_one_time") ? r.u32("one_time_prekey_id") : null;
    h.ephemeral = r.take(32, "ephemeral");
    h.header = letter.subarray(0, r.at);
    h.ciphertext = r.bytes32("ciphertext");
    if (h.ciphertext.length < 17) throw new LetterError("malformed", "ciphertext under 17 bytes");
    h.scheme = r.u16("scheme");
    h.signature = r.bytes16("signature");
    if (h.signature.length > 512) throw new LetterError("malformed", "signature over 512 bytes");
    return h;
  });
  if (parsed.suite !== AES_256_GCM && parsed.suite !== CHACHA20_POLY1305) {
    throw new LetterError("unknown-suite", `suite 0x${parsed.suite.toString(16)}`);
  }
  if (!SUPPORTED_SUITES.has(parsed.suite)) {
    throw new LetterError("unknown-suite",
      `suite 0x${parsed.suite.toString(16)} cannot be read here (WebCrypto)`);
  }
  return parsed;
}

/** Whether the parsed letter `h`'s signature verifies with `publicKey` (14.3 step 7). */
export async function letterVerifies(h, publicKey) {
  const content = concat(LETTER_LABEL, u8(0), await letterContent(h.header, h.ciphertext));
  return verifySignature(publicKey, h.scheme, h.signature, content);
}

/**
 * 14.4 steps 1 to 5, before the sender's key is needed: size, parse,
 * envelope, recipient, replay.  Returns the parsed letter.
 */
export async function checkEnvelope({ letter, envelope, me, opened }) {
  const h = parseLetter(letter);
  if (h.sender !== envelope.sender || !equal(h.letterId, envelope.letterId)) {
    throw new LetterError("wrong-envelope", "the letter is not the one its envelope names");
  }
  if (h.recipient !== me) throw new LetterError("wrong-recipient", `a letter for ${h.recipient}`);
  if (await opened(h.sender, h.letterId)) throw new LetterError("replayed", "opened before");
  return h;
}

/**
 * Open a letter (14.4), in the spec's order.  `envelope` is the LETTER
 * message's sender and letter_id; `opened(sender, letterIdHex)` says
 * whether it was opened before; `senderKey` is the sender's pinned key
 * (`{spki, publicKey}`); `prekeyPrivate(kind, id)` gives a private key
 * (CryptoKey) or null.  Returns `{header fields, contentType, content}`.
 */
export async function openLetter({
  letter, envelope, me, myKey, opened, senderKey, prekeyPrivate,
}) {
  const h = await checkEnvelope({ letter, envelope, me, opened });
  if (!await letterVerifies(h, senderKey.publicKey)) {
    throw new LetterError("bad-signature", `the letter is not signed by ${h.sender}'s key`);
  }
  const signedPrivate = await prekeyPrivate("signed", h.signedPrekeyId);
  const oneTimePrivate = h.oneTimePrekeyId === null ? null
    : await prekeyPrivate("one-time", h.oneTimePrekeyId);
  if (signedPrivate === null || (h.oneTimePrekeyId !== null && oneTimePrivate === null)) {
    throw new LetterError("unknown-prekey", "this client does not hold the named prekey");
  }
  let shared = await sharedSecret(signedPrivate, h.ephemeral);
  if (oneTimePrivate !== null) shared = concat(shared, await sharedSecret(oneTimePrivate, h.ephemeral));
  const { key, nonce } = await letterKeys(shared, {
    sender: h.sender, senderKey: senderKey.spki, recipient: me, recipientKey: myKey,
    header: h.header,
  });
  const plaintext = await aeadOpen(await aeadKey(key), nonce, h.ciphertext, h.header);
  if (plaintext === null) throw new LetterError("decrypt-failed", "the ciphertext does not decrypt");
  const type = plaintext[0];
  let text = null;
  if (type === TEXT) {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(plaintext.subarray(1));
    } catch {
      throw new LetterError("bad-content", "a text letter that is not UTF-8");
    }
  }
  return { ...h, contentType: type, content: plaintext.subarray(1), text,
    digest: await sha256(letter) };
}
