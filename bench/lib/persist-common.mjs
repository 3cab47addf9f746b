// Shared by the rows that run @cuitty/persist itself (one per adapter): the bench interface over
// the public API (store.kv and store.records), nothing else.
import { createRequire } from 'node:module'
import { openSync, readSync, closeSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
/** run.mjs snapshots the package (JS + addon) at start, so a rebuild in the repo during the bench changes nothing. */
export const PKG = process.env.PERSIST_BENCH_PKG || REPO
export const ADDON_FILES = ['index.js', 'index.mjs', 'binding.js', 'package.json']

let persist
export async function loadPersist() {
  if (!persist) {
    const m = await import(path.join(PKG, 'index.mjs'))
    persist = m.createStore ? m : m.default
    if (typeof persist?.createStore !== 'function') throw new Error('@cuitty/persist: createStore not exported')
  }
  return persist
}

/** Which build of the addon is loaded: "debug" if the ELF file has DWARF sections (.debug_info), else "release". */
export function addonProfile(file = path.join(PKG, 'persist.linux-x64-gnu.node')) {
  try {
    const fd = openSync(file, 'r')
    try {
      const read = (pos, len) => {
        const b = Buffer.alloc(len)
        readSync(fd, b, 0, len, pos)
        return b
      }
      const h = read(0, 64)
      if (h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2) return 'unknown' // ELF64 only
      const shoff = Number(h.readBigUInt64LE(0x28))
      const shentsize = h.readUInt16LE(0x3a)
      const shstrndx = h.readUInt16LE(0x3e)
      const sh = read(shoff + shstrndx * shentsize, shentsize)
      const names = read(Number(sh.readBigUInt64LE(0x18)), Number(sh.readBigUInt64LE(0x20)))
      return names.includes('.debug_info') ? 'debug' : 'release'
    } finally {
      closeSync(fd)
    }
  } catch {
    return 'unknown'
  }
}

export function persistVersion() {
  try {
    return createRequire(import.meta.url)(path.join(PKG, 'package.json')).version
  } catch {
    return undefined
  }
}

/** Run fn over items with `width` calls in flight. */
export async function inFlight(items, width, fn) {
  let next = 0
  const worker = async () => {
    while (next < items.length) await fn(items[next++])
  }
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker))
}

/** The bench interface over an open Store. */
export function wrapStore(store) {
  const kv = store.kv
  const col = store.records.collection('tasks')
  return {
    setOne: (key, value) => kv.set(key, value),
    setMany: (entries) => kv.setMany(entries),
    getOne: (key) => kv.get(key),
    list: (prefix) => kv.list({ prefix }),
    records: {
      // The API has no bulk insert: puts with 64 in flight (not a timed phase).
      insertMany: (docs) => inFlight(docs, 64, (d) => col.put(d.id, d.data)),
      query: async ({ minPriority, limit }) =>
        (
          await col
            .find({
              where: { done: false, priority: { $gte: minPriority } },
              orderBy: { field: 'priority', direction: 'desc' },
              limit,
            })
            .toArray()
        ).map((d) => ({ id: d.id, data: d.data })),
      ensureIndex: (field) => col.ensureIndex(field),
    },
    blobs: wrapBlobs(store),
    close: () => store.close(),
  }
}

/** The blob part of the bench interface over store.blobs (used by the blob phases; issue 6). */
export function wrapBlobs(store) {
  const blobs = store.blobs
  return {
    put: (key, body) => blobs.put(key, body),
    get: (key) => blobs.get(key),
    list: async function* (prefix) {
      for await (const info of blobs.list({ prefix })) yield info.key
    },
    /** The same listing, whole BlobInfo entries. */
    listInfo: (prefix) => blobs.list({ prefix }),
    /** A body of unknown length from a stream: the adapter decides how to upload it (multipart on S3). */
    putStream: (key, readable) => blobs.put(key, readable, { contentType: 'application/octet-stream' }),
  }
}
