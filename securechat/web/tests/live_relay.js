// Run by tests/test_browser_relay.py (not by node --test): the browser
// client's protocol core logs in to a real relay over its WebSocket, with
// the relay's identity checked as section 9 says, asks who is online, and
// prints one line per step for the Python test to read.
// With CHAT_PEER it then asks that user to chat, says one line once the
// chat is secured, prints the line that comes back, and ends the chat.
// With letter:USER it seals a letter to USER's prekeys, posts it, and waits
// for USER's two receipts, each checked (14.5).
//   node --experimental-websocket tests/live_relay.js URL NAME SEED_HEX CA_DER_HEX SERVER_NAME [CHAT_PEER]
import { fromHex } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey } from "../static/js/protocol/crypto.js";
import { userIdentity } from "../static/js/protocol/connection.js";
import { encode, parse as parseRelay } from "../static/js/protocol/relay.js";
import * as mailbox from "../static/js/protocol/mailbox.js";
import { importPublicKey, sha256 } from "../static/js/protocol/crypto.js";
import { checkSignedPrekey, parseOneTimePrekey, parseSignedPrekey, sealLetter } from "../static/js/protocol/letters.js";
import { checkReceipt } from "../static/js/protocol/receipts.js";
import { checkServerIdentity } from "../static/js/protocol/x509.js";
import { connectRelay } from "../static/js/client/transport.js";
import { Chat } from "../static/js/client/chat.js";

const [url, name, seedHex, caHex, serverName, chatPeer] = process.argv.slice(2);
let maxPayload = 0n;
let chat = null;
const letterTo = chatPeer?.startsWith("letter:") ? chatPeer.slice(7) : null;
const post = {};
let inOrder = Promise.resolve();

function parse(type, body) {
  return type >= 0x60 ? { kind: "mailbox", ...mailbox.parse(type, body) } : parseRelay(type, body);
}

async function onMailbox(m) {
  if (m.message === "userKey") {
    post.key = await importPublicKey(m.user_key);
    post.spki = m.user_key;
  } else if (m.message === "bundle") {
    if (m.user !== letterTo) throw new Error("a bundle for someone else");
    const signed = parseSignedPrekey(m.signed_prekey);
    await checkSignedPrekey(signed, letterTo, post.key);
    say("bundle verified");
    const oneTime = m.one_time_prekey.length ? parseOneTimePrekey(m.one_time_prekey) : null;
    const sealed = await sealLetter({ signer, sender: name, senderKey: mine, recipient: letterTo,
      recipientKey: post.spki, signedPrekey: signed, oneTimePrekey: oneTime,
      content: `dear ${letterTo}, a letter from the browser core`, sentAt: BigInt(Math.floor(Date.now() / 1000)) });
    post.letter = { letterId: sealed.letterId, sender: name, recipient: letterTo,
      digest: await sha256(sealed.letter) };
    session.send(mailbox.encode("postLetter", { recipient: letterTo, letter_id: sealed.letterId,
      letter: sealed.letter }));
  } else if (m.message === "letterStored") {
    say(`letter stored for ${m.recipient}`);
  } else if (m.message === "receipt") {
    const receipt = await checkReceipt(m.receipt, post.letter, post.key);
    say(`receipt ${receipt.kind === 1 ? "delivered" : "read"} verified`);
    post.receipts = (post.receipts ?? 0) + 1;
    if (post.receipts === 2) session.close().then(() => say("closed"));
  }
}
const signer = await ed25519SigningKey(fromHex(seedHex));
const mine = new Uint8Array(await globalThis.crypto.subtle.exportKey("spki", signer.publicKey));
const say = (line) => process.stdout.write(`${line}\n`);

const session = connectRelay({
  url, signer, identity: userIdentity(name),
  checkRelay: async (identity) => {
    const { publicKey } = await checkServerIdentity({
      chain: identity.chain, crl: identity.crl, ca: fromHex(caHex), serverName,
      now: new Date(), seen: null,
    });
    say("relay certificate verified");
    return publicKey;
  },
  onEvent: (event) => {
    if (event.kind === "established") say("established");
    if (event.kind === "message") {
      const message = parse(event.type, event.body);
      if (message.kind === "welcome") {
        say(`welcome ${message.user} max_payload ${message.maxPayload}`);
        maxPayload = message.maxPayload;
        session.send(encode.listOnline());
      } else if (message.kind === "onlineList") {
        say(`online ${message.users.join(",")} of ${message.total}`);
        if (letterTo) {
          session.send(mailbox.encode("getUserKey", { user: letterTo }),
            mailbox.encode("fetchBundle", { user: letterTo }));
        } else if (chatPeer) {
          session.send(encode.chatRequest(chatPeer));
        } else {
          session.close().then(() => say("closed"));
        }
      } else if (message.kind === "chatStarted") {
        chat = new Chat({
          peer: message.peer, peerKey: message.peerKey, initiator: message.initiator, me: name,
          signer, maxPayload, out: (messages) => session.send(...messages),
          view: (e) => {
            if (e.kind === "secured") {
              say(`secured with ${e.peer}`);
              chat.say(`hello ${e.peer}, from the browser core`);
            } else if (e.kind === "text") {
              say(`text ${e.from}: ${e.text}`);
              chat.stop();
            } else if (e.kind === "ended") {
              say(`ended: ${e.how}, ${e.received} received`);
              session.close().then(() => say("closed"));
            } else {
              say(`chat ${e.kind}: ${e.code ?? e.why}`);
            }
          },
        });
        chat.start();
      } else if (message.kind === "relayed" && chat !== null) {
        chat.relayed(message.payload);
      } else if (message.kind === "chatEnded" && chat !== null) {
        chat.ended(message.reason);
      } else if (message.kind === "mailbox") {
        inOrder = inOrder.then(() => onMailbox(message))
          .catch((e) => say(`letter failed ${e.code ?? ""}: ${e.message}`));
      } else if (message.kind === "commandFailed") {
        say(`command 0x${message.command.toString(16)} failed: reason ${message.reason}`);
      } else if (message.kind === "chatDeclined") {
        say(`declined ${message.reason}`);
      }
    }
    if (event.kind === "failed") say(`failed ${event.error.code}: ${event.error.detail}`);
    if (event.kind === "lost") say(`lost ${event.code}`);
  },
});
