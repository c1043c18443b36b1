// Run by tests/test_browser_relay.py (not by node --test): the browser
// client's protocol core logs in to a real relay over its WebSocket, with
// the relay's identity checked as section 9 says, asks who is online, and
// prints one line per step for the Python test to read.
//   node --experimental-websocket tests/live_relay.js URL NAME SEED_HEX CA_DER_HEX SERVER_NAME
import { fromHex } from "../static/js/protocol/bytes.js";
import { ed25519SigningKey } from "../static/js/protocol/crypto.js";
import { userIdentity } from "../static/js/protocol/connection.js";
import { encode, parse } from "../static/js/protocol/relay.js";
import { checkServerIdentity } from "../static/js/protocol/x509.js";
import { connectRelay } from "../static/js/client/transport.js";

const [url, name, seedHex, caHex, serverName] = process.argv.slice(2);
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
        session.send(encode.listOnline());
      } else if (message.kind === "onlineList") {
        say(`online ${message.users.join(",")} of ${message.total}`);
        session.close().then(() => say("closed"));
      }
    }
    if (event.kind === "failed") say(`failed ${event.error.code}: ${event.error.detail}`);
    if (event.kind === "lost") say(`lost ${event.code}`);
  },
});
