// The user's key in the browser: made here (Ed25519, the private key
// non-extractable) for the operator to register, and PEM in and out.
import { ED25519 } from "../protocol/crypto.js";

const subtle = globalThis.crypto.subtle;

/** A new Ed25519 key pair: {scheme, privateKey, publicKey, spki}. */
export async function generateKey() {
  const pair = await subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const spki = new Uint8Array(await subtle.exportKey("spki", pair.publicKey));
  return { scheme: ED25519, privateKey: pair.privateKey, publicKey: pair.publicKey, spki };
}

/** DER as PEM with `label` (e.g. PUBLIC KEY). */
export function toPem(der, label) {
  const b64 = btoa(String.fromCharCode(...der)).replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** The DER inside the first PEM block labelled `label`, or null. */
export function fromPem(text, label) {
  const m = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`)
    .exec(text);
  if (!m) return null;
  return Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
}
