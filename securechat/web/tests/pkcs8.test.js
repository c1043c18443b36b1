// Key files brought into the browser: PKCS#8, plain or encrypted (PBES2),
// as securechat-admin and cryptography write them (tests/key_fixtures.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { toHex } from "../static/js/protocol/bytes.js";
import { sign, verifySignature } from "../static/js/protocol/crypto.js";
import { KeyFileError, importKeyFile } from "../static/js/client/pkcs8.js";

const fixtures = JSON.parse(readFileSync(new URL("./key-fixtures.json", import.meta.url)));

for (const f of fixtures.keys) {
  test(`${f.kind} ${f.passphrase ? "encrypted" : "plain"}: imported, signs, the right public key`,
    async () => {
      const key = await importKeyFile(f.pem, f.passphrase);
      assert.equal(toHex(key.spki), f.spki);
      assert.equal(key.privateKey.extractable, false);
      const message = new TextEncoder().encode("M");
      const signature = await sign(key, message);
      assert.ok(await verifySignature({ scheme: key.scheme, key: key.publicKey,
        modulusBytes: f.kind === "rsa-2048" ? 256 : undefined }, key.scheme, signature, message));
    });
}

test("a wrong passphrase, a missing one, an old-style file: one clear line each", async () => {
  const encrypted = fixtures.keys.find((f) => f.passphrase);
  await assert.rejects(importKeyFile(encrypted.pem, "wrong"),
    (e) => e instanceof KeyFileError && e.message === "wrong passphrase (or a damaged key file)");
  await assert.rejects(importKeyFile(encrypted.pem, ""),
    (e) => e.message === "the key file is encrypted: give its passphrase");
  await assert.rejects(importKeyFile(fixtures.traditional, ""),
    (e) => e.message.startsWith("this is an old-style key file: convert it with"));
  await assert.rejects(importKeyFile("hello", ""), (e) => e instanceof KeyFileError);
});
