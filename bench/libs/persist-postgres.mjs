// @cuitty/persist on its Postgres adapter (issue 5), on the server of scripts/ensure-postgres.sh:
// pool of 10, a fresh schema per store (dropped on close). Needs the server: run with --only.
import { loadPersist, wrapStore, addonProfile, persistVersion } from '../lib/persist-common.mjs'
import { PG, freshName, dropSchema, pgAdmin } from '../lib/servers.mjs'

export default {
  id: 'persist-postgres',
  label: '@cuitty/persist (postgres)',
  ours: true,
  optIn: true,
  async info() {
    const server = await pgAdmin(async (c) => (await c.query('SHOW server_version')).rows[0].server_version)
    return { version: persistVersion(), build: addonProfile(), server: `PostgreSQL ${server}` }
  },
  async open() {
    const { createStore } = await loadPersist()
    const schema = freshName()
    const store = await createStore({ name: 'bench', adapter: 'postgres', connection: { ...PG }, schema, pool: { max: 10 } })
    const s = wrapStore(store)
    const close = s.close
    s.close = async () => {
      await close()
      await dropSchema(schema)
    }
    return s
  },
}
