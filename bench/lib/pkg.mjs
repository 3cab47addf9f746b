import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const MODULES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'node_modules')

/** The installed version of a bench dependency (read from disk: some packages do not export ./package.json). */
export function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(path.join(MODULES, name, 'package.json'), 'utf8')).version
  } catch {
    return undefined
  }
}
