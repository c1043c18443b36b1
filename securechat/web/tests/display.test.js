// Untrusted text, neutralised exactly as the terminal neutralises it.
import { test } from "node:test";
import assert from "node:assert/strict";

import { untrusted } from "../static/js/client/display.js";

test("controls, format and separator characters become visible escapes", () => {
  assert.equal(untrusted("a\x1b[2Jb"), "a\\x1b[2Jb");
  assert.equal(untrusted("line\nbreak\r"), "line\\x0abreak\\x0d");
  assert.equal(untrusted("rtl\u202eevil"), "rtl\\u202eevil");
  assert.equal(untrusted("zero\u200bwidth"), "zero\\u200bwidth");
  assert.equal(untrusted("para\u2029sep"), "para\\u2029sep");
  assert.equal(untrusted("nonchar\ufffe\u{1fffe}"), "nonchar\\ufffe\\U0001fffe");
  assert.equal(untrusted("tag\u{e0041}"), "tag\\U000e0041");
});

test("printable text of any script, spaces and backslashes are kept", () => {
  assert.equal(untrusted("héllo wörld – 你好 🙂 \\x41"), "héllo wörld – 你好 🙂 \\x41");
  assert.equal(untrusted("<b>not html</b>"), "<b>not html</b>");
});
