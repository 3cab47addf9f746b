// ESM entry: the same module as index.js (require), re-exported by name.
import persist from './index.js'

export const { createStore, PersistError } = persist
export default persist
