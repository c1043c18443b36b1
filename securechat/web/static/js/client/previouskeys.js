// Letters signed with a key their sender had before (docs/protocol.rst
// 14.9): when the signature does not verify with the sender's registered
// key, the first previous key (KEY_HISTORY, in the relay's order) that
// verifies it counts only if this browser pinned it for the sender, now or
// before, and the relay stored the letter before the key was compromised
// (if it was) and before it was replaced.
import { importPublicKey } from "../protocol/crypto.js";
import { LetterError, letterVerifies } from "../protocol/letters.js";

/**
 * The previous key that signed the parsed letter `h`, as `{key: {spki,
 * publicKey}, replacedAt}`, or a LetterError with the rule's code.
 * `wasPinned(fingerprint)` says whether a key is or was pinned for the sender.
 */
export async function previousSigner({ h, history, storedAt, wasPinned, fingerprint }) {
  for (const entry of history) {
    let publicKey;
    try {
      publicKey = await importPublicKey(entry.user_key);
    } catch {
      continue; // a key this browser cannot use verifies nothing
    }
    if (!await letterVerifies(h, publicKey)) continue;
    if (!await wasPinned(await fingerprint(entry.user_key))) {
      throw new LetterError("unpinned-key",
        `signed with a previous key of ${h.sender} that was never pinned here`);
    }
    if (entry.compromised_at !== 0n && storedAt >= entry.compromised_at) {
      throw new LetterError("key-compromised",
        `signed with a previous key of ${h.sender}, stored after it was compromised`);
    }
    if (storedAt >= entry.replaced_at) {
      throw new LetterError("key-replaced",
        `signed with a previous key of ${h.sender}, stored after it was replaced`);
    }
    return { key: { spki: entry.user_key, publicKey }, replacedAt: entry.replaced_at };
  }
  throw new LetterError("bad-signature", `the letter is not signed by ${h.sender}'s key, nor a previous one`);
}
