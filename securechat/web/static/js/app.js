// The chat page: a view over the client core (client/session.js).  It
// shows what the core reports and passes on what the user does; it makes
// no protocol decision.  Everything a peer or the relay chose is shown as
// text (textContent), never as HTML.
import { ed25519SigningKey } from "./protocol/crypto.js";
import { userIdentity } from "./protocol/connection.js";
import { isUserName } from "./protocol/messages.js";
import { checkServerIdentity } from "./protocol/x509.js";
import { fromPem, generateKey, toPem } from "./client/keys.js";
import { importKeyFile } from "./client/pkcs8.js";
import { untrusted } from "./client/display.js";
import { RelaySession, fingerprint } from "./client/session.js";
import { loadKey, mailStoreFor, pinsFor, saveKey } from "./client/store.js";
import { connectRelay } from "./client/transport.js";
import { reasonText } from "./protocol/relay.js";
import { Panes } from "./panes.js";
import { GroupPanes } from "./grouppanes.js";
import { ADD, LEAVE, REMOVE } from "./protocol/grouplog.js";

const $ = (id) => document.getElementById(id);
let session = null;
const panes = new Panes($("panes"), {
  say: (peer, line) => session?.say(peer, line),
  stop: (peer) => session?.stop(peer),
});

const neutral = untrusted;
const groupPanes = new GroupPanes($("groups"), {
  say: (id, line) => session?.groups.say(id, line),
  add: (id, user) => isUserName(user) && session?.groups.change(id, ADD, user),
  remove: (id, user) => isUserName(user) && session?.groups.change(id, REMOVE, user),
  leave: (id) => session?.groups.change(id, LEAVE),
}, (text, kind) => log(text, kind));

function status(text) {
  $("status").textContent = neutral(text);
}

function log(text, kind = "line") {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = neutral(text);
  $("log").append(li);
}

async function showKey(record) {
  $("public-key").textContent = toPem(record.spki, "PUBLIC KEY");
  $("fingerprint").textContent = await fingerprint(record.spki);
  $("key-info").hidden = false;
}

async function onGenerate() {
  const name = $("name").value.trim();
  if (!isUserName(name)) {
    status("a user name is 1 to 32 characters: a-z first, then a-z, 0-9, '.', '_' or '-'");
    return;
  }
  const record = await generateKey();
  await saveKey(name, record);
  await showKey(record);
  status(`a key for ${name} is kept in this browser; give the public key to your operator`);
}

async function onImport() {
  const name = $("name").value.trim();
  const file = $("key-file").files[0];
  if (!isUserName(name) || file === undefined) {
    status("give your user name and choose your key file");
    return;
  }
  const record = await importKeyFile(await file.text(), $("key-passphrase").value);
  $("key-passphrase").value = "";
  await saveKey(name, record);
  await showKey(record);
  status(`the key file for ${name} is kept in this browser (it was not sent anywhere)`);
}

/** A time for a user (Unix seconds): `2026-12-02 05:30 UTC`. */
function when(seconds) {
  return new Date(Number(seconds) * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function button(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

/** The terminal's warning, with a button in place of its !trust command. */
function keyChanged(event) {
  const [refused, retry] = event.letter
    ? [`Letters to and from ${event.peer} are refused until you trust the new key.`,
      ", then send or read the letter again."]
    : ["The chat was refused.", " and chat again."];
  const li = document.createElement("li");
  li.className = "warning";
  li.textContent = neutral(`!!! WARNING: ${event.peer}'s key CHANGED: pinned ${event.pinned}, `
    + `the relay now offers ${event.offered}. ${refused} If ${event.peer} confirms the new `
    + `fingerprint out of band, press Trust${retry} `);
  const trust = button(`Trust ${event.peer}'s new key`, () => {
    session.trustKey(event.peer, event.offered).then(() => {
      log(`${event.peer} is now pinned to ${event.offered}; ask for a chat (or send or read the `
        + "letter) again", "notice");
      trust.remove();
    }, (e) => log(`${event.peer}'s key was not trusted: ${e.detail}`, "warning"));
  });
  trust.className = "trust";
  li.append(trust);
  $("log").append(li);
}

const STATES = ["new", "fetched", "read"];

/** Our letters, each with a button that fetches and opens it. */
function showLetters(event) {
  const list = $("letters");
  list.replaceChildren();
  if (event.letters.length === 0) {
    list.append(Object.assign(document.createElement("li"), { textContent: "no letters" }));
    return;
  }
  for (const e of event.letters) {
    const li = document.createElement("li");
    li.textContent = neutral(`[${e.id}] from ${e.sender}, ${when(e.storedAt)}, ${e.size} bytes, `
      + `${STATES[e.state]} `);
    li.append(button("Read", () => {
      session.readLetter(e.sender, e.letterId);
      li.remove();
    }));
    list.append(li);
  }
}

/** A line in `peer`'s pane if it is open, else in the page's log (a closed pane stays closed). */
function toPane(peer, text, kind) {
  if (!panes.note(peer, text, kind)) log(text, kind);
}

function view(event) {
  if (groupPanes.show(event)) return;
  switch (event.kind) {
    case "welcome":
      status(`logged in as ${event.user}`);
      $("setup").hidden = true;
      $("chat").hidden = false;
      session.listOnline();
      break;
    case "onlineList":
      $("online").textContent = neutral(event.users.join(", ")
        + (event.total > event.users.length ? ` (${event.total} in all)` : ""));
      break;
    case "chatRequested": {
      const li = document.createElement("li");
      li.textContent = neutral(`${event.requester} wants to chat `);
      const accept = document.createElement("button");
      accept.type = "button";
      accept.textContent = "Accept";
      accept.addEventListener("click", () => {
        session.accept(event.requester);
        li.remove();
      });
      li.append(accept);
      $("requests").append(li);
      break;
    }
    case "requestPending":
      panes.log(event.peer, `asked ${event.peer} to chat`, "notice");
      break;
    case "chatStarted":
      panes.log(event.peer, `securing the chat with ${event.peer}, key ${event.fingerprint}${event.first
        ? " (first chat: compare it with theirs)" : ""}`, "notice");
      break;
    case "secured":
      panes.log(event.peer, `chat with ${event.peer} is end-to-end encrypted`, "notice");
      panes.focus(event.peer);
      break;
    case "text":
      panes.log(event.peer, `${event.from}: ${event.text}`);
      break;
    case "keyChanged":
      keyChanged(event);
      break;
    case "notice":
      log(event.text, "notice");
      break;
    case "newLetters":
      log(`you have ${event.count} new letter${event.count === 1n ? "" : "s"}`, "notice");
      session.listLetters(0);
      break;
    case "letterArrived":
      log(`new letter from ${event.sender} (${event.size} bytes, ${when(event.stored_at)})`, "notice");
      session.listLetters(0);
      break;
    case "prekeysStored":
      log(`letters can reach you: your prekeys are on the relay (${event.oneTime} one-time)`,
        "notice");
      break;
    case "letterList":
      showLetters(event);
      break;
    case "letterOpened":
      log(`letter [${event.id}] from ${event.from}${event.again ? " (read before)" : ""}, written `
        + `${when(event.sentAt)} (sender's clock), stored ${when(event.storedAt)}; `
        + `Verification: ${event.verification}${event.keyReplaced ? ` (signed with ${event.from}'s `
          + `previous key, replaced ${when(event.keyReplaced)})` : ""}`, "letter");
      for (const line of event.text.split(/\r?\n/)) log(`  | ${line}`, "letter");
      break;
    case "ended":
      toPane(event.peer, `chat with ${event.peer} ended: ${event.how} (${event.received} `
        + "messages received)", "notice");
      break;
    case "failed":
      toPane(event.peer, `chat with ${event.peer} failed: ${event.code}`, "warning");
      break;
    case "refused":
      toPane(event.peer, `not sent (${event.why}): ${event.text}`, "warning");
      break;
    case "chatDeclined":
    case "chatEnded": {
      const line = event.kind === "chatDeclined"
        ? `${event.peer} did not chat: ${reasonText(event.reason)}`
        : `chat with ${event.peer} ended: ${reasonText(event.reason)}`;
      toPane(event.peer, line, "notice");
      break;
    }
    case "letterStored":
      log(`letter ${event.id} to ${event.to} stored by the relay`, "notice");
      break;
    case "letterRefused":
      log(`letter to ${event.to} refused: ${reasonText(event.reason)}`, "warning");
      break;
    case "letterFailed":
      if (event.from !== undefined) {
        log(`letter [${event.id}] from ${event.from} (${when(event.storedAt)}) REFUSED, not shown: `
          + `${event.code}: ${event.detail}`, "warning");
      } else {
        log(`letter to ${event.to} not sent: ${event.code}`, "warning");
      }
      break;
    case "receipt":
      log(`letter ${event.id} to ${event.from}: ${event.what} (receipt verified)`, "notice");
      break;
    case "receiptRefused":
      log(`a receipt from ${event.from} for letter ${event.id} was refused: ${event.code}`,
        "warning");
      break;
    case "commandFailed":
      log(`${event.subject || "command"}: ${reasonText(event.reason)}`, "warning");
      break;
    default:
      break;
  }
}

async function onConnect() {
  const name = $("name").value.trim();
  const record = await loadKey(name);
  if (record === undefined) {
    status(`no key for ${name} in this browser: make one first`);
    return;
  }
  const ca = fromPem($("ca").value, "CERTIFICATE");
  if (ca === null) {
    status("paste your operator's CA certificate (PEM)");
    return;
  }
  const serverName = $("server-name").value.trim() || location.hostname;
  const signer = { scheme: record.scheme, privateKey: record.privateKey };
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/relay`;
  status("connecting");
  const relay = connectRelay({
    url, signer, identity: userIdentity(name),
    checkRelay: async (identity) => (await checkServerIdentity({
      chain: identity.chain, crl: identity.crl, ca, serverName, now: new Date(),
      seen: null,
    })).publicKey,
    onEvent: (event) => {
      if (event.kind === "message") {
        session.message(event.type, event.body).catch((e) => {
          status(`the relay broke the protocol: ${e.code ?? e.message}`);
          relay.connection.close(e.code ?? "internal-error", e.detail);
        });
      } else if (event.kind === "failed") {
        status(`disconnected: ${event.error.code}: ${event.error.detail}`);
      } else if (event.kind === "lost" || event.kind === "closed") {
        status("disconnected");
      }
    },
  });
  session = new RelaySession({ me: name, signer, spki: record.spki, pins: pinsFor(name), view,
    store: mailStoreFor(name), out: (messages) => relay.send(...messages) });
}

window.addEventListener("DOMContentLoaded", () => {
  $("server-name").value = location.hostname;
  status("make a key, or log in with the one this browser keeps");
  $("generate").addEventListener("click", () => onGenerate().catch((e) => status(String(e))));
  $("connect").addEventListener("click", () => onConnect().catch((e) => status(String(e))));
  $("import").addEventListener("click", () => onImport().catch((e) => status(e.message ?? String(e))));
  $("name").addEventListener("change", async () => {
    const record = await loadKey($("name").value.trim());
    if (record) await showKey(record);
  });
  $("refresh").addEventListener("click", () => session?.listOnline());
  $("ask").addEventListener("click", () => session?.requestChat($("peer").value.trim()));
  $("group-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("group-name").value.trim();
    if (!name) return;
    session?.groups.create(name);
    $("group-name").value = "";
  });
  $("check-letters").addEventListener("click", () => session?.listLetters(1));
  $("letter-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const to = $("letter-to").value.trim();
    const text = $("letter-text").value;
    if (!isUserName(to) || !text) return;
    session?.sendLetter(to, text);
    log(`letter to ${to}: ${text}`, "notice");
    $("letter-text").value = "";
  });
});
