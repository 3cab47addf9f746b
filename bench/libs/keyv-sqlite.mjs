// Keyv 5 + @keyv/sqlite 4 (node-sqlite3 underneath), with the WAL pragmas a user would add.
// Keyv has no bulk write on this store (setMany = one set per entry, all in flight) and no
// ordered prefix listing: list pages through the whole namespace with keyv.iterator()
// (iterationLimit 1000 instead of the default 10) and keeps the keys with the prefix, in the
// table's order (not key order: `unorderedList`, so the harness checks the set of keys instead).
import path from 'node:path'
import { pkgVersion } from '../lib/pkg.mjs'


export default {
  id: 'keyv-sqlite',
  label: 'keyv + @keyv/sqlite',
  unorderedList: true,
  async info() {
    return { version: pkgVersion('keyv'), store: pkgVersion('@keyv/sqlite') }
  },
  async open(dir) {
    const { default: Keyv } = await import('keyv')
    const { default: KeyvSqlite } = await import('@keyv/sqlite')
    const store = new KeyvSqlite({ uri: `sqlite://${path.join(dir, 'bench.db')}`, iterationLimit: 1000 })
    await store.query('PRAGMA journal_mode = WAL')
    await store.query('PRAGMA synchronous = NORMAL')
    const keyv = new Keyv({ store, throwOnErrors: true })
    keyv.on('error', () => {}) // errors are thrown (throwOnErrors), not only emitted
    return {
      setOne: async (key, value) => {
        if ((await keyv.set(key, value)) !== true) throw new Error(`keyv.set(${key}) failed`)
      },
      setMany: async (entries) => {
        const ok = await keyv.setMany(entries)
        if (!ok.every((x) => x === true)) throw new Error('keyv.setMany failed')
      },
      getOne: (key) => keyv.get(key),
      list: async function* (prefix) {
        for await (const [key, value] of keyv.iterator()) if (key.startsWith(prefix)) yield { key, value }
      },
      close: () => keyv.disconnect(),
    }
  },
}
