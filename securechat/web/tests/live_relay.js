// Run by tests/test_browser_relay.py (not by node --test): the browser
// client's protocol core logs in to a real relay over its WebSocket, with
// the relay's identity checked as section 9 says, asks who is online, and
// prints one line per step for the Python test to read.
// With CHAT_PEER it then asks that user to chat, says one line once the
// chat is secured, prints the line that comes back, and ends the chat.
//   node --experimental-websocket tests/live_relay.js URL NAME SEED_HEX CA_DER_HEX SERVER_NAME [CHAT_PEER]
import { fromHex } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey } from "../static/js/protocol/crypto.js";
import { userIdentity } from "../static/js/protocol/connection.js";
import { encode, parse } from "../static/js/protocol/relay.js";
import { checkServerIdentity } from "../static/js/protocol/x509.js";
import { connectRelay } from "../static/js/client/transport.js";
import { Chat } from "../static/js/client/chat.js";

const [url, name, seedHex, caHex, serverName, chatPeer] = process.argv.slice(2);
let maxPayload = 0n;
let chat = null;
const signer = await ed25519SigningKey(fromHex(seedHex));
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
        if (chatPeer) session.send(encode.chatRequest(chatPeer));
        else session.close().then(() => say("closed"));
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
      } else if (message.kind === "chatDeclined") {
        say(`declined ${message.reason}`);
      }
    }
    if (event.kind === "failed") say(`failed ${event.error.code}: ${event.error.detail}`);
    if (event.kind === "lost") say(`lost ${event.code}`);
  },
});
