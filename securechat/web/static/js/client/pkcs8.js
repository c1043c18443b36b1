// An existing private key file brought into the browser: PKCS#8 PEM,
// plain or passphrase-encrypted (PBES2: PBKDF2 with HMAC-SHA-256 or
// SHA-1, then AES-CBC), decrypted here with WebCrypto and never sent
// anywhere.  The private key is re-imported non-extractable.
import { asn1js } from "../vendor/pki.js";
import { ECDSA_P256, ED25519, RSA_PSS } from "../protocol/crypto.js";
import { fromPem } from "./keys.js";

const subtle = globalThis.crypto.subtle;

const PBES2 = "1.2.840.113549.1.5.13";
const PBKDF2 = "1.2.840.113549.1.5.12";
const PRF = { "1.2.840.113549.2.7": "SHA-1", "1.2.840.113549.2.9": "SHA-256",
  "1.2.840.113549.2.11": "SHA-512" };
const AES_CBC = { "2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24,
  "2.16.840.1.101.3.4.1.42": 32 };
const ALGORITHMS = {
  "1.3.101.112": [ED25519, { name: "Ed25519" }],
  "1.2.840.10045.2.1": [ECDSA_P256, { name: "ECDSA", namedCurve: "P-256" }],
  "1.2.840.113549.1.1.1": [RSA_PSS, { name: "RSA-PSS", hash: "SHA-256" }],
};

/** Why a key file cannot be used, in one line for the user. */
export class KeyFileError extends Error {}

function der(bytes, what) {
  const asn1 = asn1js.fromBER(bytes);
  if (asn1.offset === -1 || asn1.offset !== bytes.byteLength) {
    throw new KeyFileError(`${what} is damaged (not DER)`);
  }
  return asn1.result;
}

const oid = (node) => node?.valueBlock?.toString?.();
const octets = (node) => node?.valueBlock?.valueHexView;

async function decrypt(encrypted, passphrase) {
  const [algorithm, data] = der(encrypted, "the key file").valueBlock.value;
  const [scheme, params] = algorithm.valueBlock.value;
  if (oid(scheme) !== PBES2) {
    throw new KeyFileError("the key file is encrypted with an old scheme (not PBES2): convert it " +
      "with `openssl pkcs8 -topk8 -v2 aes-256-cbc`");
  }
  const [kdf, cipher] = params.valueBlock.value;
  const [kdfOid, kdfParams] = kdf.valueBlock.value;
  if (oid(kdfOid) !== PBKDF2) {
    throw new KeyFileError("the key file's passphrase is not used with PBKDF2 (scrypt, say), " +
      "which browsers lack: convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`");
  }
  const fields = kdfParams.valueBlock.value;
  const salt = octets(fields[0]);
  const iterations = fields[1].valueBlock.valueDec;
  const prfNode = fields.find((f, i) => i >= 2 && f.valueBlock?.value?.length);
  const hash = prfNode ? PRF[oid(prfNode.valueBlock.value[0])] : "SHA-1";
  const [cipherOid, iv] = cipher.valueBlock.value;
  const keyLength = AES_CBC[oid(cipherOid)];
  if (!hash || !keyLength) throw new KeyFileError("the key file uses a cipher browsers lack");
  const base = await subtle.importKey("raw", new TextEncoder().encode(passphrase), "PBKDF2",
    false, ["deriveBits"]);
  const bits = await subtle.deriveBits({ name: "PBKDF2", salt, iterations, hash }, base,
    8 * keyLength);
  const key = await subtle.importKey("raw", bits, "AES-CBC", false, ["decrypt"]);
  try {
    return new Uint8Array(await subtle.decrypt({ name: "AES-CBC", iv: octets(iv) }, key,
      octets(data)));
  } catch {
    throw new KeyFileError("wrong passphrase (or a damaged key file)");
  }
}

/**
 * A signing key from a PKCS#8 PEM file's text: `{scheme, privateKey,
 * publicKey, spki}`, the private key non-extractable.  Throws KeyFileError.
 */
export async function importKeyFile(text, passphrase = "") {
  let info = fromPem(text, "PRIVATE KEY");
  if (info === null) {
    const encrypted = fromPem(text, "ENCRYPTED PRIVATE KEY");
    if (encrypted === null) {
      throw new KeyFileError(/BEGIN (RSA|EC) PRIVATE KEY/.test(text)
        ? "this is an old-style key file: convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
        : "not a PKCS#8 private key file (-----BEGIN PRIVATE KEY----- or ENCRYPTED PRIVATE KEY)");
    }
    if (!passphrase) throw new KeyFileError("the key file is encrypted: give its passphrase");
    info = await decrypt(encrypted, passphrase);
  }
  const parsed = der(info, "the private key");
  const algorithm = oid(parsed.valueBlock.value?.[1]?.valueBlock?.value?.[0]);
  const entry = ALGORITHMS[algorithm];
  if (!entry) throw new KeyFileError("the key is not Ed25519, ECDSA P-256 or RSA");
  const [scheme, params] = entry;
  let full;
  try {
    full = await subtle.importKey("pkcs8", info, params, true, ["sign"]);
  } catch {
    throw new KeyFileError("the key does not import (an unsupported curve or size?)");
  }
  const jwk = await subtle.exportKey("jwk", full);
  delete jwk.d; delete jwk.p; delete jwk.q; delete jwk.dp; delete jwk.dq; delete jwk.qi;
  jwk.key_ops = ["verify"];
  const publicKey = await subtle.importKey("jwk", jwk, params, true, ["verify"]);
  const spki = new Uint8Array(await subtle.exportKey("spki", publicKey));
  const privateKey = await subtle.importKey("pkcs8", info, params, false, ["sign"]);
  return { scheme, privateKey, publicKey, spki };
}
