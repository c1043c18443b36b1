// The key schedule: docs/protocol.rst 5.2 and 5.3.
import { concat, u16, u8, utf8 } from "./bytes.js";
import { hkdfExpand, hkdfExtract, hmac, hmacVerify, sha256 } from "./crypto.js";

export const CONTEXT_NAMES = Object.freeze({ 1: "client-server", 2: "end-to-end" });
const LABEL_PREFIX = "sc1 ";

/** HKDF-Expand-Label(secret, label, context, length) (5.3). */
export function expandLabel(secret, label, context, length) {
  const full = utf8(LABEL_PREFIX + label);
  const info = concat(u16(length), u8(full.length), full, u8(context.length), context);
  return hkdfExpand(secret, info, length);
}

/** hs = HKDF-Extract(SHA-256("securechat/1 " || context name), shared). */
export async function handshakeSecret(context, shared) {
  const salt = await sha256(utf8(`securechat/1 ${CONTEXT_NAMES[context]}`));
  return hkdfExtract(salt, shared);
}

/** hs_i and hs_r over th_hs = SHA-256(HELLO frame || HELLO_REPLY frame). */
export async function handshakeTrafficSecrets(hs, thHs) {
  return {
    initiator: await expandLabel(hs, "i hs traffic", thHs, 32),
    responder: await expandLabel(hs, "r hs traffic", thHs, 32),
  };
}

/** ap_i and ap_r over th_all, the hash of the whole transcript. */
export async function applicationTrafficSecrets(hs, thAll) {
  return {
    initiator: await expandLabel(hs, "i ap traffic", thAll, 32),
    responder: await expandLabel(hs, "r ap traffic", thAll, 32),
  };
}

/** key(s) and iv(s) for the AES-256-GCM suite. */
export async function trafficKeys(secret) {
  return {
    key: await expandLabel(secret, "key", new Uint8Array(0), 32),
    iv: await expandLabel(secret, "iv", new Uint8Array(0), 12),
  };
}

/** next(s): the secret after a key update. */
export function nextSecret(secret) {
  return expandLabel(secret, "traffic upd", new Uint8Array(0), 32);
}

/** finished = HMAC(finished_key(s), hash). */
export async function finishedMac(secret, hash) {
  return hmac(await expandLabel(secret, "finished", new Uint8Array(0), 32), hash);
}

/** Whether `mac` is the Finished under `secret` for `hash` (constant time). */
export async function finishedOk(secret, hash, mac) {
  return hmacVerify(await expandLabel(secret, "finished", new Uint8Array(0), 32), hash, mac);
}

/** M = "securechat/1 <context> <role> signature" || 0x00 || hash (section 7). */
export function signatureContent(context, role, hash) {
  return concat(utf8(`securechat/1 ${CONTEXT_NAMES[context]} ${role} signature`), u8(0), hash);
}
