// What the browser keeps, in IndexedDB (per browser profile): the user's
// key pair (the private key non-extractable: the page can sign with it,
// nobody can read it out), the pinned fingerprints of peers' keys and,
// per user, what the mailbox keeps (client/prekeys.js, client/inbox.js):
// the prekeys' private halves (non-extractable X25519 CryptoKeys) and the
// letters opened (their ids, digests and texts).
const DB = "securechat";
const VERSION = 2;

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function open() {
  const r = indexedDB.open(DB, VERSION);
  r.onupgradeneeded = () => {
    for (const store of ["keys", "pins", "mail"]) {
      if (!r.result.objectStoreNames.contains(store)) r.result.createObjectStore(store);
    }
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
    set: async (peer, value) => {
      const old = await transact("pins", "readonly", (s) => s.get(`${me}/${peer}`));
      if (old !== undefined && old !== value) {
        const former = (await transact("pins", "readonly", (s) => s.get(`${me}/${peer}/former`))) ?? [];
        await transact("pins", "readwrite", (s) => s.put([...former, old], `${me}/${peer}/former`));
      }
      await transact("pins", "readwrite", (s) => s.put(value, `${me}/${peer}`));
    },
    /** Whether `value` is or was pinned for `peer` (14.9 rule 1). */
    wasPinned: async (peer, value) => {
      const now = await transact("pins", "readonly", (s) => s.get(`${me}/${peer}`));
      const former = (await transact("pins", "readonly", (s) => s.get(`${me}/${peer}/former`))) ?? [];
      return now === value || former.includes(value);
    },
  };
}

/** The mailbox's records for user `me`: `{get, put, delete}` by key. */
export function mailStoreFor(me) {
  return {
    get: (key) => transact("mail", "readonly", (s) => s.get(`${me}/${key}`)),
    put: (key, value) => transact("mail", "readwrite", (s) => s.put(value, `${me}/${key}`)),
    delete: (key) => transact("mail", "readwrite", (s) => s.delete(`${me}/${key}`)),
  };
}

/** The same in memory (tests, and a page that keeps nothing). */
export class MemoryStore {
  constructor() {
    this.records = new Map();
  }

  async get(key) {
    return this.records.get(key);
  }

  async put(key, value) {
    this.records.set(key, value);
  }

  async delete(key) {
    this.records.delete(key);
  }
}
