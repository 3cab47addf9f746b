// @cuitty/persist on a custom adapter ({get, put, delete, list}) over a JS Map: what the core and
// the thread-safe-function round trips cost, to compare with the map-floor row.
import { loadPersist, wrapStore, addonProfile, persistVersion } from '../lib/persist-common.mjs'

function mapAdapter() {
  const map = new Map()
  return {
    async get(key) {
      return map.get(key)
    },
    async put(key, value) {
      map.set(key, value)
    },
    async delete(key) {
      map.delete(key)
    },
    async list(prefix) {
      const out = []
      for (const [key, value] of map) if (key.startsWith(prefix)) out.push({ key, value })
      return out
    },
  }
}

export default {
  id: 'persist-custom-map',
  label: '@cuitty/persist (custom adapter over a Map)',
  ours: true,
  async info() {
    return { version: persistVersion(), build: addonProfile() }
  },
  async open() {
    const { createStore } = await loadPersist()
    return wrapStore(await createStore({ name: 'bench', adapter: mapAdapter() }))
  },
}
