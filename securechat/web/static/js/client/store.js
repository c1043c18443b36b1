// What the browser keeps, in IndexedDB (per browser profile): the user's
// key pair (the private key non-extractable: the page can sign with it,
// nobody can read it out) and the pinned fingerprints of peers' keys.
const DB = "securechat";
const VERSION = 1;

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function open() {
  const r = indexedDB.open(DB, VERSION);
  r.onupgradeneeded = () => {
    r.result.createObjectStore("keys");
    r.result.createObjectStore("pins");
  };
  return request(r);
}

async function transact(store, mode, step) {
  const db = await open();
  try {
    return await request(step(db.transaction(store, mode).objectStore(store)));
  } finally {
    db.close();
  }
}

/** The key pair kept for `name`, or undefined. */
export function loadKey(name) {
  return transact("keys", "readonly", (s) => s.get(name));
}

/** Keep `record` ({privateKey, publicKey, spki}) for `name`. */
export function saveKey(name, record) {
  return transact("keys", "readwrite", (s) => s.put(record, name));
}

/** Pins for user `me`, as RelaySession wants them. */
export function pinsFor(me) {
  return {
    get: async (peer) => (await transact("pins", "readonly", (s) => s.get(`${me}/${peer}`))) ?? null,
    set: (peer, value) => transact("pins", "readwrite", (s) => s.put(value, `${me}/${peer}`)),
  };
}
