// Section 9 in the browser: the relay's chain and stapled CRL, each check
// with its code.  The 13.2 vector, and fixtures whose verdicts come from
// the reference implementation (tests/x509_fixtures.py): the browser must
// reach the same verdict for each.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { fromHex } from "../static/js/protocol/bytes.js";
import { CertificateError, checkServerIdentity, subjectOf } from "../static/js/protocol/x509.js";
import { vector } from "./vectors.js";

const v = vector("client-server");
const identity = (overrides = {}) => ({
  chain: [v["responder.certificate"]], crl: v["responder.crl"], ca: v["ca.certificate"],
  serverName: "localhost", now: new Date("2026-06-01T12:00:00Z"), seen: null, ...overrides,
});

async function check(args) {
  try {
    await checkServerIdentity(args);
    return "ok";
  } catch (e) {
    if (!(e instanceof CertificateError)) throw e;
    assert.equal(e.code, "bad-certificate");
    return e.check;
  }
}

test("13.2's relay identity verifies for localhost at 2026-06-01", async () => {
  const result = await checkServerIdentity(identity());
  assert.equal(result.publicKey.scheme, 0x0807);
  assert.equal(result.seen.number, 1n);
  assert.deepEqual([...result.seen.revoked], []);
});

test("dates: the leaf's, then the CRL's", async () => {
  assert.equal(await check(identity({ now: new Date("2025-12-31T22:59:59Z") })), "not-yet-valid");
  assert.equal(await check(identity({ now: new Date("2035-12-30T00:00:01Z") })), "expired");
  // The leaf is valid from 23:00 on 2025-12-31, the CRL from 2026-01-01.
  assert.equal(await check(identity({ now: new Date("2025-12-31T23:30:00Z") })),
    "crl-not-yet-valid");
});

test("the vector's boundaries are inclusive", async () => {
  assert.equal(await check(identity({ now: new Date("2026-01-01T00:00:00Z") })), "ok");
  assert.equal(await check(identity({ now: new Date("2035-12-30T00:00:00Z") })), "ok");
});

test("bytes that are not DER are malformed", async () => {
  assert.equal(await check(identity({ chain: [Uint8Array.of(1, 2, 3)] })), "malformed");
  assert.equal(await check(identity({ crl: Uint8Array.of(0x30, 0x03, 1) })), "malformed");
  const trailing = Uint8Array.from([...v["responder.certificate"], 0]);
  assert.equal(await check(identity({ chain: [trailing] })), "malformed");
});

test("rollback and revocation memory", async () => {
  assert.equal(await check(identity({ seen: { number: 2n, revoked: new Set() } })), "crl-rollback");
  const serial = "4ee44de64b0f6075a5877f5816827c68ed3079f7";
  const refused = await checkServerIdentity(identity({ seen: { number: 0n, revoked: new Set([serial]) } }))
    .catch((e) => e);
  assert.equal(refused.check, "revoked");
  assert.equal(refused.seen.number, 1n); // the newer CRL is remembered all the same
});

test("names: IP literals and DNS names as section 9 defines them", () => {
  assert.deepEqual(subjectOf("127.0.0.1"), { ip: Uint8Array.of(127, 0, 0, 1) });
  assert.deepEqual(subjectOf("::1").ip, fromHex("00000000000000000000000000000001"));
  assert.deepEqual(subjectOf("::ffff:10.0.0.1").ip, fromHex("00000000000000000000ffff0a000001"));
  assert.deepEqual(subjectOf("Chat.Example.org."), { dns: "chat.example.org" });
  for (const bad of ["*.example.org", "bücher.example", "a b", "-x.example", ""]) {
    assert.throws(() => subjectOf(bad), (e) => e.check === "name-mismatch", bad);
  }
});

const fixtures = JSON.parse(readFileSync(new URL("./x509-fixtures.json", import.meta.url)));

for (const f of fixtures) {
  test(`fixture: ${f.title} -> ${f.expect} (as the reference implementation)`, async () => {
    const seen = f.seen === null ? null
      : { number: BigInt(f.seen.number), revoked: new Set(f.seen.revoked) };
    const got = await check({
      chain: f.chain.map(fromHex), crl: fromHex(f.crl), ca: fromHex(f.ca),
      serverName: f.name, now: new Date(f.now), seen,
    });
    assert.equal(got, f.expect);
  });
}
