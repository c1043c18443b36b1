// The test vectors of docs/protocol.rst section 13, read from the spec
// itself: each `.. begin vector NAME` block's `key = value` lines (hex,
// wrapped onto indented lines, or a quoted string) as bytes.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { fromHex, utf8 } from "../static/js/protocol/bytes.js";

const SPEC = fileURLToPath(new URL("../../../docs/protocol.rst", import.meta.url));

/** The vector NAME as {key: Uint8Array}. */
export function vector(name) {
  const text = readFileSync(SPEC, "utf8");
  const start = text.indexOf(`.. begin vector ${name}\n`);
  const end = text.indexOf(`.. end vector ${name}\n`);
  if (start < 0 || end < 0) throw new Error(`no vector ${name} in ${SPEC}`);
  const values = {};
  let key = null;
  for (const line of text.slice(start, end).split("\n")) {
    const m = /^ {4}(\S+) = (.*)$/.exec(line);
    if (m) {
      key = m[1];
      values[key] = m[2];
    } else if (key !== null && /^ {8}\S/.test(line)) {
      values[key] += line.trim();
    } else if (line.trim() === "") {
      continue;
    } else {
      key = null;
    }
  }
  const out = {};
  for (const [k, v] of Object.entries(values)) {
    out[k] = v.startsWith('"') ? utf8(JSON.parse(v)) : fromHex(v);
  }
  return out;
}
