// The workload of bench-workload.md: keys, values, shuffled order, records. Deterministic, so
// every library (and every run) sees the same data.

export const TAG_WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel']
const BIO = 'Writes software, reads papers, runs on weekends and keeps notes in plain text files.'.slice(0, 81)

/** mulberry32: small seeded PRNG (uniform in [0, 1)). */
export function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const pad6 = (i) => String(i).padStart(6, '0')
/** `user:000001` … `user:100000` (6 digits; N up to 999,999). */
export const keyOf = (i) => `user:${pad6(i)}`
/** Warm-up keys: outside the `user:` prefix, so they never show up in the list phase. */
export const warmKeyOf = (i) => `warm:${pad6(i)}`

/** About 200 bytes of JSON: {id, name, email, age, active, tags:[2], bio: 81 chars}. */
export function valueOf(i) {
  return {
    id: i,
    name: `User ${pad6(i)}`,
    email: `user${pad6(i)}@example.com`,
    age: 18 + (i % 60),
    active: i % 3 !== 0,
    tags: [TAG_WORDS[i % 8], TAG_WORDS[(i * 7 + 3) % 8]],
    bio: BIO,
  }
}

/** Cheap check of a value read back for key i (run on every get). */
export const valueOk = (v, i) => v != null && v.id === i && v.bio === BIO && v.tags.length === 2

/** Indices 1..n in one fixed shuffled order (Fisher-Yates, seed 42). */
export function shuffledIndices(n, seed = 42) {
  const a = new Array(n)
  for (let i = 0; i < n; i++) a[i] = i + 1
  const r = rng(seed)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1))
    const t = a[i]
    a[i] = a[j]
    a[j] = t
  }
  return a
}

/** The list phase: every key with prefix `user:00` (user:000001 … user:009999 for N >= 9,999). */
export const LIST_PREFIX = 'user:00'
export const listExpectedCount = (n) => Math.min(n, 9999)

/** Records: n docs {title, done, priority 0-9, tags: 1-3 of 8 words}, ids `doc:000001`…, seed 7. */
export function recordsOf(n, seed = 7) {
  const r = rng(seed)
  const docs = new Array(n)
  for (let i = 0; i < n; i++) {
    const ntags = 1 + Math.floor(r() * 3)
    const tags = []
    let start = Math.floor(r() * 8)
    for (let t = 0; t < ntags; t++) tags.push(TAG_WORDS[(start + t * 3) % 8])
    docs[i] = {
      id: `doc:${pad6(i + 1)}`,
      data: { title: `Task ${i + 1}`, done: r() < 0.5, priority: Math.floor(r() * 10), tags },
    }
  }
  return docs
}

/** The query: done = false AND priority >= 7 ORDER BY priority DESC LIMIT 100; ties break by id in the direction of
 * the last sort key (API.md / index.d.ts since 417c5d5): here id DESC. */
export const QUERY = { minPriority: 7, limit: 100 }

export function expectedQuery(docs) {
  return docs
    .filter((d) => d.data.done === false && d.data.priority >= QUERY.minPriority)
    .sort((a, b) => b.data.priority - a.data.priority || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
    .slice(0, QUERY.limit)
}

/** Throws unless `got` ([{id, data}]) is exactly `expected` (same ids, same order, matching fields). */
export function checkQuery(got, expected) {
  if (!Array.isArray(got) || got.length !== expected.length)
    throw new Error(`query returned ${got?.length} rows, expected ${expected.length}`)
  for (let i = 0; i < expected.length; i++) {
    const g = got[i]
    const e = expected[i]
    if (g.id !== e.id || g.data.done !== false || g.data.priority !== e.data.priority || g.data.title !== e.data.title)
      throw new Error(`query row ${i}: got ${JSON.stringify(g)}, expected ${JSON.stringify(e)}`)
  }
}

// ---- blobs (the S3 rows; issue 6): 1 KiB objects and one large multipart body ----

/** Blob keys `obj:000001` …; warm-up blobs `warm:…` stay outside the listed prefix. */
export const blobKeyOf = (i) => `obj:${pad6(i)}`
export const BLOB_PREFIX = 'obj:'
export const BLOB_SIZE = 1024
/** 1 KiB, different for every i (the key and a counter repeated), checked byte for byte on every get. */
export function blobOf(i) {
  return Buffer.alloc(BLOB_SIZE, `${blobKeyOf(i)}|${(i * 2654435761) >>> 0}|`)
}
/** The large body: `mib` MiB, generated in 1 MiB chunks (chunk c filled with its own pattern). */
export function* bigChunks(mib) {
  for (let c = 0; c < mib; c++) yield Buffer.alloc(1 << 20, `chunk ${c} of the large blob;`)
}
