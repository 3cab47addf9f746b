// lmdb (lmdb-js): memory-mapped B+tree, synchronous reads, writes batched into async
// transactions; a put's promise resolves once its transaction is durably committed.
// Records: a `records` sub-database of id -> doc; the query without an index scans it all in JS;
// ensureIndex builds an `idx:<field>` sub-database keyed [priority, id], read in reverse (priority
// descending, ties id descending), built once from the records (the bench does not write after indexing).
import path from 'node:path'
import { pkgVersion } from '../lib/pkg.mjs'
import { prefixEnd } from '../lib/prefix.mjs'


export default {
  id: 'lmdb',
  label: 'lmdb',
  async info() {
    return { version: pkgVersion('lmdb') }
  },
  async open(dir) {
    const { open } = await import('lmdb')
    const root = open({ path: path.join(dir, 'bench.lmdb') })
    const kv = root.openDB({ name: 'kv' })
    const recs = root.openDB({ name: 'records' })
    let idx
    return {
      setOne: (key, value) => kv.put(key, value),
      setMany: (entries) =>
        kv.transaction(() => {
          for (const e of entries) kv.put(e.key, e.value)
        }),
      getOne: (key) => kv.get(key),
      list: function* (prefix) {
        for (const { key, value } of kv.getRange({ start: prefix, end: prefixEnd(prefix) })) yield { key, value }
      },
      records: {
        insertMany: async (docs) => {
          for (let i = 0; i < docs.length; i += 1000) {
            const chunk = docs.slice(i, i + 1000)
            await recs.transaction(() => {
              for (const d of chunk) recs.put(d.id, d.data)
            })
          }
        },
        query: ({ minPriority, limit }) => {
          if (idx) {
            const out = []
            for (const { key } of idx.getRange({ start: [10], end: [minPriority], reverse: true })) {
              const data = recs.get(key[1])
              if (data.done === false && data.priority >= minPriority) {
                out.push({ id: key[1], data })
                if (out.length === limit) break
              }
            }
            return out
          }
          const hits = []
          for (const { key, value } of recs.getRange())
            if (value.done === false && value.priority >= minPriority) hits.push({ id: key, data: value })
          hits.sort((a, b) => b.data.priority - a.data.priority || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
          return hits.slice(0, limit)
        },
        ensureIndex: async (field) => {
          if (field !== 'priority') throw new Error('the lmdb row indexes priority only')
          const db = root.openDB({ name: `idx:${field}` })
          await db.transaction(() => {
            for (const { key, value } of recs.getRange()) db.put([value.priority, key], '')
          })
          idx = db
        },
      },
      close: () => root.close(),
    }
  },
}
