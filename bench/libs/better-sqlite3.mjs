// better-sqlite3: synchronous SQLite, the fastest way Node users reach SQLite today. WAL,
// synchronous=NORMAL, prepared statements; a kv table, and a records table holding JSON queried
// with json_extract (the query in SQL).
import path from 'node:path'
import { pkgVersion } from '../lib/pkg.mjs'
import { createRequire } from 'node:module'
import { prefixEnd } from '../lib/prefix.mjs'

const require = createRequire(import.meta.url)

export default {
  id: 'better-sqlite3',
  label: 'better-sqlite3 (sync)',
  async info() {
    const Database = require('better-sqlite3')
    const db = new Database(':memory:')
    const sqlite = db.prepare('select sqlite_version() v').pluck().get()
    db.close()
    return { version: pkgVersion('better-sqlite3'), sqlite }
  },
  async open(dir) {
    const Database = require('better-sqlite3')
    const db = new Database(path.join(dir, 'bench.db'))
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    db.exec('CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)')
    // WITHOUT ROWID: the primary key (id) is the tie-break of the index below, so
    // ORDER BY priority DESC, id DESC is answered from the index (priority, id) scanned backwards.
    db.exec('CREATE TABLE records (id TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID')
    const put = db.prepare('INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)')
    const get = db.prepare('SELECT value FROM kv WHERE key = ?').pluck()
    const range = db.prepare('SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key')
    const putMany = db.transaction((entries) => {
      for (const e of entries) put.run(e.key, JSON.stringify(e.value))
    })
    const insertRecord = db.prepare('INSERT INTO records (id, data) VALUES (?, ?)')
    const insertRecords = db.transaction((docs) => {
      for (const d of docs) insertRecord.run(d.id, JSON.stringify(d.data))
    })
    let query
    const prepareQuery = () =>
      db.prepare(
        `SELECT id, data FROM records
         WHERE json_extract(data, '$.done') = 0 AND json_extract(data, '$.priority') >= ?
         ORDER BY json_extract(data, '$.priority') DESC, id DESC LIMIT ?`,
      )
    return {
      setOne: (key, value) => {
        put.run(key, JSON.stringify(value))
      },
      setMany: (entries) => {
        putMany(entries)
      },
      getOne: (key) => {
        const v = get.get(key)
        return v === undefined ? undefined : JSON.parse(v)
      },
      list: function* (prefix) {
        for (const row of range.iterate(prefix, prefixEnd(prefix))) yield { key: row.key, value: JSON.parse(row.value) }
      },
      records: {
        insertMany: (docs) => {
          for (let i = 0; i < docs.length; i += 1000) insertRecords(docs.slice(i, i + 1000))
        },
        query: ({ minPriority, limit }) => {
          query ??= prepareQuery()
          return query.all(minPriority, limit).map((r) => ({ id: r.id, data: JSON.parse(r.data) }))
        },
        ensureIndex: (field) => {
          if (!/^[A-Za-z_][\w.]*$/.test(field)) throw new Error(`bad field ${field}`)
          db.exec(`CREATE INDEX IF NOT EXISTS idx_${field.replace(/\./g, '_')} ON records (json_extract(data, '$.${field}'))`)
          query = prepareQuery() // re-plan with the index
        },
        plan: () =>
          db
            .prepare(
              `EXPLAIN QUERY PLAN SELECT id, data FROM records WHERE json_extract(data, '$.done') = 0 AND json_extract(data, '$.priority') >= 7 ORDER BY json_extract(data, '$.priority') DESC, id DESC LIMIT 100`,
            )
            .all()
            .map((r) => r.detail),
      },
      close: () => db.close(),
    }
  },
}
