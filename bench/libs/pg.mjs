// node-postgres (`pg`) as a Node user would write it against the same server as persist-postgres
// (issue 5): Pool max 10, a fresh schema per store (dropped on close), named (prepared) statements.
//   kv(key text COLLATE "C" PRIMARY KEY, value text): JSON.stringify / JSON.parse, the same storage
//     as our adapter's persist_kv; upsert with ON CONFLICT; setMany = one INSERT … SELECT FROM
//     unnest($1::text[], $2::text[]) per 1,000 (one statement, atomic); list = range scan in key order.
//   records(id text COLLATE "C" PRIMARY KEY, data jsonb): the query in SQL, ensureIndex = the
//     expression index ((data->'priority'), id), scanned backwards for ORDER BY priority DESC, id DESC
//     (ties break by id in the direction of the last sort key, as in our API).
import { pkgVersion } from '../lib/pkg.mjs'
import { createRequire } from 'node:module'
import { prefixEnd } from '../lib/prefix.mjs'
import { PG, freshName, dropSchema, pgAdmin } from '../lib/servers.mjs'

const require = createRequire(import.meta.url)

export default {
  id: 'pg',
  label: 'pg (node-postgres)',
  optIn: true,
  async info() {
    const server = await pgAdmin(async (c) => (await c.query('SHOW server_version')).rows[0].server_version)
    return { version: pkgVersion('pg'), server: `PostgreSQL ${server}`, pool: 10 }
  },
  async open() {
    const pg = require('pg')
    const schema = freshName()
    await pgAdmin((c) =>
      c.query(`CREATE SCHEMA "${schema}";
        CREATE TABLE "${schema}".kv (key text COLLATE "C" PRIMARY KEY, value text NOT NULL);
        CREATE TABLE "${schema}".records (id text COLLATE "C" PRIMARY KEY, data jsonb NOT NULL);`),
    )
    const pool = new pg.Pool({ ...PG, max: 10 })
    const t = (name) => `"${schema}".${name}`
    const put = { name: 'kv-put', text: `INSERT INTO ${t('kv')} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value` }
    const putMany = { name: 'kv-put-many', text: `INSERT INTO ${t('kv')} (key, value) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value` }
    const get = { name: 'kv-get', text: `SELECT value FROM ${t('kv')} WHERE key = $1` }
    const range = { name: 'kv-range', text: `SELECT key, value FROM ${t('kv')} WHERE key >= $1 AND key < $2 ORDER BY key` }
    const insertRecords = { name: 'rec-insert', text: `INSERT INTO ${t('records')} (id, data) SELECT * FROM unnest($1::text[], $2::jsonb[])` }
    const queryText = `SELECT id, data FROM ${t('records')} WHERE data->'done' = 'false'::jsonb AND data->'priority' >= $1::jsonb ORDER BY data->'priority' DESC, id DESC LIMIT $2`
    let queryName = 'rec-query-0'
    let planRows
    return {
      setOne: async (key, value) => {
        await pool.query({ ...put, values: [key, JSON.stringify(value)] })
      },
      setMany: async (entries) => {
        await pool.query({ ...putMany, values: [entries.map((e) => e.key), entries.map((e) => JSON.stringify(e.value))] })
      },
      getOne: async (key) => {
        const { rows } = await pool.query({ ...get, values: [key] })
        return rows.length ? JSON.parse(rows[0].value) : undefined
      },
      list: async function* (prefix) {
        const { rows } = await pool.query({ ...range, values: [prefix, prefixEnd(prefix)] })
        for (const r of rows) yield { key: r.key, value: JSON.parse(r.value) }
      },
      records: {
        insertMany: async (docs) => {
          for (let i = 0; i < docs.length; i += 1000) {
            const chunk = docs.slice(i, i + 1000)
            await pool.query({ ...insertRecords, values: [chunk.map((d) => d.id), chunk.map((d) => JSON.stringify(d.data))] })
          }
        },
        query: async ({ minPriority, limit }) => {
          const { rows } = await pool.query({ name: queryName, text: queryText, values: [JSON.stringify(minPriority), limit] })
          return rows.map((r) => ({ id: r.id, data: r.data }))
        },
        ensureIndex: async (field) => {
          if (field !== 'priority') throw new Error('the pg row indexes priority only')
          await pool.query(`CREATE INDEX IF NOT EXISTS records_priority ON ${t('records')} ((data->'priority'), id)`)
          queryName = 'rec-query-1' // a new prepared statement on every connection: planned with the index
          const { rows } = await pool.query(`EXPLAIN ${queryText.replace('$1::jsonb', `'7'::jsonb`).replace('$2', '100')}`)
          planRows = rows.map((r) => r['QUERY PLAN'].trim())
        },
        plan: () => planRows,
      },
      close: async () => {
        await pool.end()
        await dropSchema(schema)
      },
    }
  },
}
