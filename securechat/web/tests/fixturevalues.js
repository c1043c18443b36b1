// The relay fixtures' values (relay-fixtures.json, made by the Python code)
// as the JavaScript codec takes and gives them: shared by the mailbox and
// group message tests.
import { fromHex, toHex } from "../static/js/protocol/bytes.js";

// A fixture's value for a field of the given kind, as the encoder takes it.
export function typed(kind, value) {
  if (kind === "name") return value;
  if (kind === "u64") return BigInt(value);
  if (kind === "u8" || kind === "u32") return Number(value);
  return fromHex(value);
}

// A parsed field as the fixture writes it (hex, lists of entries, strings).
export function plain(value) {
  if (value instanceof Uint8Array) return toHex(value);
  if (Array.isArray(value)) return value.map((entry) => Object.values(entry).map(plain));
  return String(value);
}
