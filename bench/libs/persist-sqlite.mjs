// @cuitty/persist on its default adapter: one SQLite file.
import path from 'node:path'
import { loadPersist, wrapStore, addonProfile, persistVersion } from '../lib/persist-common.mjs'

export default {
  id: 'persist-sqlite',
  label: '@cuitty/persist (sqlite)',
  ours: true,
  async info() {
    return { version: persistVersion(), build: addonProfile() }
  },
  async open(dir) {
    const { createStore } = await loadPersist()
    return wrapStore(await createStore({ name: 'bench', adapter: 'sqlite', path: path.join(dir, 'bench.db') }))
  },
}
