// Untrusted text made safe to show, exactly as the terminal does it
// (securechat/client/display.py): every control, format, separator or
// surrogate character, and every non-character, replaced by its visible
// escape (\xNN, \uNNNN, \UNNNNNNNN).  The page then shows it as text
// (textContent), never as HTML.
const UNSAFE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;

function unsafe(char) {
  const code = char.codePointAt(0);
  return UNSAFE.test(char) || (code & 0xfffe) === 0xfffe || (code >= 0xfdd0 && code <= 0xfdef);
}

function escape(char) {
  const code = char.codePointAt(0);
  const hex = (width) => code.toString(16).padStart(width, "0");
  if (code < 0x100) return `\\x${hex(2)}`;
  if (code < 0x10000) return `\\u${hex(4)}`;
  return `\\U${hex(8)}`;
}

/** `text` safe to show on one line. */
export function untrusted(text) {
  let out = "";
  for (const char of String(text)) out += unsafe(char) ? escape(char) : char;
  return out;
}
