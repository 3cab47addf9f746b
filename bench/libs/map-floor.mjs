// The floor of any async API: a JS Map behind async functions (values stored by reference).
export default {
  id: 'map-floor',
  label: 'Promise-wrapped JS Map (floor)',
  async info() {
    return { version: process.versions.node }
  },
  async open() {
    const map = new Map()
    return {
      setOne: async (key, value) => {
        map.set(key, value)
      },
      setMany: async (entries) => {
        for (const e of entries) map.set(e.key, e.value)
      },
      getOne: async (key) => map.get(key),
      list: async function* (prefix) {
        const keys = []
        for (const k of map.keys()) if (k.startsWith(prefix)) keys.push(k)
        keys.sort()
        for (const key of keys) yield { key, value: map.get(key) }
      },
      close: async () => map.clear(),
    }
  },
}
