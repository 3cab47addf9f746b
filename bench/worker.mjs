// One (library, run): a fresh process (this one) and fresh databases in a temp dir. Runs the
// selected phases and reports each one to the parent (run.mjs) over IPC as it finishes.
// Usage (normally through run.mjs):
//   node --expose-gc worker.mjs <lib-id> <n> <phases,..> <maxPhaseSeconds> [<blob-n> <blob-mib>]
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  keyOf, warmKeyOf, valueOf, valueOk, shuffledIndices, LIST_PREFIX, listExpectedCount,
  recordsOf, QUERY, expectedQuery, checkQuery,
  blobKeyOf, blobOf, BLOB_PREFIX, bigChunks,
} from './lib/workload.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const [libId, nArg, phasesArg, capArg, blobNArg = '2000', blobMibArg = '64'] = process.argv.slice(2)
const BLOB_N = Number(blobNArg)
const BLOB_MIB = Number(blobMibArg)
const N = Number(nArg)
const PHASES = new Set(phasesArg.split(','))
const CAP_NS = BigInt(Math.round(Number(capArg) * 1e9))
const WARM = Math.max(100, Math.min(1000, Math.floor(N / 10)))
const C = 64

const send = (msg) => (process.send ? process.send(msg) : console.log(JSON.stringify(msg)))
const now = () => process.hrtime.bigint()
const secs = (ns) => Number(ns) / 1e9
const gc = () => globalThis.gc?.()

let lib
let root
let dbCount = 0
async function fresh() {
  const dir = path.join(root, `db${++dbCount}`)
  mkdirSync(dir)
  return lib.open(dir)
}

/** Calls op(i) for i in `indices`, `width` in flight, stopping early (capped) after CAP_NS. */
async function drive(indices, width, op) {
  let next = 0
  let capped = false
  const t0 = now()
  const worker = async () => {
    while (next < indices.length) {
      const i = indices[next++]
      await op(i)
      if ((next & 63) === 0 && now() - t0 > CAP_NS) {
        capped = true
        break
      }
    }
  }
  if (width === 1) await worker()
  else await Promise.all(Array.from({ length: width }, worker))
  const t1 = now()
  const done = Math.min(next, indices.length)
  return { ops: done, seconds: secs(t1 - t0), opsPerSec: done / secs(t1 - t0), ...(capped ? { capped: true } : {}) }
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, k) => from + k)
const values = new Array(N + 1)
for (let i = 1; i <= N; i++) values[i] = valueOf(i)
const warmIdx = range(1, WARM)

async function warmSets(s, width) {
  await drive(warmIdx, width, (i) => s.setOne(warmKeyOf(i), valueOf(i)))
}
async function checkSome(s, written) {
  for (const i of [1, Math.max(1, Math.floor(written / 2)), written]) {
    const v = await s.getOne(keyOf(i))
    if (!valueOk(v, i)) throw new Error(`after the phase, ${keyOf(i)} read back ${JSON.stringify(v)}`)
  }
}
async function setBatch(s, timed) {
  const t0 = now()
  for (let i = 1; i <= N; i += 1000) {
    const entries = []
    for (let j = i; j <= Math.min(N, i + 999); j++) entries.push({ key: keyOf(j), value: values[j] })
    await s.setMany(entries)
  }
  const t1 = now()
  return timed ? { ops: N, seconds: secs(t1 - t0), opsPerSec: N / secs(t1 - t0) } : undefined
}
async function listOnce(s, prefix, expectedCount, check) {
  let count = 0
  const ordered = !lib.unorderedList
  const seen = ordered ? undefined : new Set()
  const verify = (e) => {
    count++
    if (!check) return
    if (ordered) {
      if (e.key !== keyOf(count) || !valueOk(e.value, count))
        throw new Error(`list entry ${count}: ${e.key} ${JSON.stringify(e.value)}`)
    } else {
      const i = Number(e.key.slice(5))
      if (!e.key.startsWith(prefix) || e.key !== keyOf(i) || seen.has(i) || !valueOk(e.value, i))
        throw new Error(`list entry ${count}: ${e.key} ${JSON.stringify(e.value)}`)
      seen.add(i)
    }
  }
  const it = s.list(prefix)
  if (it[Symbol.asyncIterator]) for await (const e of it) verify(e)
  else for (const e of it) verify(e)
  if (expectedCount !== undefined && count !== expectedCount)
    throw new Error(`list(${prefix}) gave ${count} keys, expected ${expectedCount}`)
  return count
}
/** Repeats fn until at least 1 s and 3 reps (or the cap, at least 1 rep); returns reps/s. */
async function repeat(fn) {
  await fn() // warm-up (verified too)
  gc()
  let reps = 0
  const t0 = now()
  let t
  do {
    await fn()
    reps++
    t = now() - t0
  } while ((t < 1_000_000_000n || reps < 3) && t < CAP_NS)
  return { reps, seconds: secs(t), perSec: reps / secs(t) }
}

async function phase(name, fn) {
  if (!PHASES.has(name)) return
  gc()
  try {
    const result = await fn()
    send({ type: 'phase', phase: name, result })
  } catch (e) {
    send({ type: 'phase', phase: name, result: { error: String(e?.message ?? e).split('\n')[0] } })
  }
}

async function main() {
  try {
    lib = (await import(path.join(HERE, 'libs', `${libId}.mjs`))).default
    const info = (await lib.info?.()) ?? {}
    root = mkdtempSync(path.join(os.tmpdir(), `persist-bench-${libId}-`))
    const probe = await fresh() // a library that cannot open a store is unavailable, not a crash
    await probe.close()
    send({ type: 'info', info: { ...info, records: !!probe.records, dir: root } })
  } catch (e) {
    send({ type: 'unavailable', error: String(e?.message ?? e).split('\n')[0] })
    return
  }
  const all = range(1, N)

  await phase('set-seq', async () => {
    const s = await fresh()
    await warmSets(s, 1)
    gc()
    const r = await drive(all, 1, (i) => s.setOne(keyOf(i), values[i]))
    await checkSome(s, r.ops)
    await s.close()
    return r
  })
  await phase('set-c64', async () => {
    const s = await fresh()
    await warmSets(s, C)
    gc()
    const r = await drive(all, C, (i) => s.setOne(keyOf(i), values[i]))
    await checkSome(s, r.ops)
    await s.close()
    return r
  })

  // set-batch fills the store that the read phases use.
  const needReads = ['get-seq', 'get-c64', 'list'].some((p) => PHASES.has(p))
  let filled
  if (PHASES.has('set-batch') || needReads) {
    let r
    try {
      filled = await fresh()
      const warm = warmIdx.map((i) => ({ key: warmKeyOf(i), value: valueOf(i) }))
      await filled.setMany(warm)
      gc()
      r = await setBatch(filled, true)
      await checkSome(filled, N)
    } catch (e) {
      r = { error: String(e?.message ?? e).split('\n')[0] }
      filled = undefined
    }
    if (PHASES.has('set-batch')) send({ type: 'phase', phase: 'set-batch', result: r })
  }
  const order = shuffledIndices(N, 42)
  const getPhase = (width) => async () => {
    if (!filled) throw new Error('store not filled (set-batch failed)')
    await drive(warmIdx, width, async (i) => {
      if (!valueOk(await filled.getOne(warmKeyOf(i)), i)) throw new Error(`warm-up get ${warmKeyOf(i)} wrong`)
    })
    gc()
    const r = await drive(order, width, async (i) => {
      const v = await filled.getOne(keyOf(i))
      if (!valueOk(v, i)) throw new Error(`get ${keyOf(i)} returned ${JSON.stringify(v)}`)
    })
    if (!r.capped) {
      const miss = await filled.getOne('user:absent')
      if (miss !== undefined && miss !== null) throw new Error(`get of an absent key returned ${JSON.stringify(miss)}`)
    }
    return r
  }
  await phase('get-seq', getPhase(1))
  await phase('get-c64', getPhase(C))
  await phase('list', async () => {
    if (!filled) throw new Error('store not filled (set-batch failed)')
    await listOnce(filled, 'warm:', WARM, false)
    const expected = listExpectedCount(N)
    const r = await repeat(() => listOnce(filled, LIST_PREFIX, expected, true))
    return { keys: expected, reps: r.reps, seconds: r.seconds, opsPerSec: r.perSec * expected }
  })
  if (filled) await filled.close()

  if (PHASES.has('query') || PHASES.has('query-index')) {
    let s
    let docs
    let expected
    try {
      s = await fresh()
      if (!s.records) throw new Error('no records support')
      docs = recordsOf(N)
      expected = expectedQuery(docs)
      const t0 = now()
      await s.records.insertMany(docs)
      send({ type: 'extra', key: 'records-insert', result: { opsPerSec: N / secs(now() - t0) } })
    } catch (e) {
      const msg = String(e?.message ?? e).split('\n')[0]
      for (const p of ['query', 'query-index']) if (PHASES.has(p)) send({ type: 'phase', phase: p, result: msg === 'no records support' ? { na: true } : { error: msg } })
      s = undefined
    }
    if (s) {
      const q = async () => checkQuery(await s.records.query(QUERY), expected)
      await phase('query', async () => {
        const r = await repeat(q)
        return { reps: r.reps, seconds: r.seconds, opsPerSec: r.perSec }
      })
      await phase('query-index', async () => {
        const t0 = now()
        await s.records.ensureIndex('priority')
        const indexBuildMs = secs(now() - t0) * 1000
        const r = await repeat(q)
        const plan = s.records.plan?.()
        return { reps: r.reps, seconds: r.seconds, opsPerSec: r.perSec, indexBuildMs, ...(plan ? { plan } : {}) }
      })
      await s.close()
    }
  }

  // ---- blobs (issue 6): BLOB_N objects of 1 KiB, 64 in flight; one BLOB_MIB MiB body ----
  const BLOB_PHASES = ['blob-put-1k', 'blob-get-1k', 'blob-list', 'blob-list-info', 'blob-multipart']
  if (BLOB_PHASES.some((p) => PHASES.has(p))) {
    let bs
    let filledBlobs = false
    const na = (msg) => { for (const p of BLOB_PHASES) if (PHASES.has(p)) send({ type: 'phase', phase: p, result: msg ? { error: msg } : { na: true } }) }
    try {
      bs = await fresh()
      if (!bs.blobs) {
        await bs.close()
        bs = undefined
        na()
      }
    } catch (e) {
      bs = undefined
      na(String(e?.message ?? e).split('\n')[0])
    }
    if (bs) {
      const b = bs.blobs
      const blobIdx = range(1, BLOB_N)
      const bodies = new Array(BLOB_N + 1)
      for (let i = 1; i <= BLOB_N; i++) bodies[i] = blobOf(i)
      const warmB = range(1, Math.max(16, Math.min(100, Math.floor(BLOB_N / 10))))
      const same = (got, i) => got != null && Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(bodies[i])
      const putAll = async () => {
        const r = await drive(blobIdx, C, (i) => b.put(blobKeyOf(i), bodies[i]))
        if (r.capped) throw new Error(`put only ${r.ops} of ${BLOB_N} objects within the cap`)
        filledBlobs = true
        return r
      }
      const fill = async () => {
        if (!filledBlobs) await putAll()
      }
      await phase('blob-put-1k', async () => {
        await drive(warmB, C, (i) => b.put(`warm:${String(i).padStart(6, '0')}`, bodies[i]))
        gc()
        const r = await putAll()
        for (const i of [1, BLOB_N]) if (!same(await b.get(blobKeyOf(i)), i)) throw new Error(`after the phase, ${blobKeyOf(i)} read back wrong`)
        return r
      })
      await phase('blob-get-1k', async () => {
        await fill()
        await drive(warmB, C, async (i) => {
          if (!same(await b.get(blobKeyOf(i)), i)) throw new Error(`warm-up get ${blobKeyOf(i)} wrong`)
        })
        gc()
        const r = await drive(shuffledIndices(BLOB_N, 42), C, async (i) => {
          const got = await b.get(blobKeyOf(i))
          if (!same(got, i)) throw new Error(`get ${blobKeyOf(i)} returned ${got == null ? got : `${got.length} wrong bytes`}`)
        })
        const miss = await b.get('obj:absent')
        if (miss !== undefined && miss !== null) throw new Error('get of an absent blob returned a body')
        return r
      })
      await phase('blob-list', async () => {
        await fill()
        const once = async () => {
          let n = 0
          for await (const key of b.list(BLOB_PREFIX)) {
            n++
            if (key !== blobKeyOf(n)) throw new Error(`list entry ${n}: ${key}`)
          }
          if (n !== BLOB_N) throw new Error(`list(${BLOB_PREFIX}) gave ${n} keys, expected ${BLOB_N}`)
        }
        const r = await repeat(once)
        return { keys: BLOB_N, reps: r.reps, seconds: r.seconds, opsPerSec: r.perSec * BLOB_N }
      })
      // The listing with what BlobInfo holds (size, content type, metadata) for every blob.
      await phase('blob-list-info', async () => {
        await fill()
        const once = async () => {
          let n = 0
          for await (const info of b.listInfo(BLOB_PREFIX)) {
            n++
            if (info.key !== blobKeyOf(n)) throw new Error(`list entry ${n}: ${info.key}`)
            if (info.size !== 1024 || typeof info.contentType !== 'string' || typeof info.metadata !== 'object') {
              throw new Error(`list entry ${n}: ${JSON.stringify(info)} lacks size, contentType or metadata`)
            }
          }
          if (n !== BLOB_N) throw new Error(`listInfo(${BLOB_PREFIX}) gave ${n} entries, expected ${BLOB_N}`)
        }
        const r = await repeat(once)
        return { keys: BLOB_N, reps: r.reps, seconds: r.seconds, opsPerSec: r.perSec * BLOB_N }
      })
      await phase('blob-multipart', async () => {
        const want = createHash('sha256')
        for (const c of bigChunks(BLOB_MIB)) want.update(c)
        const wantHex = want.digest('hex')
        // warm-up: a 2 MiB stream (one part)
        await b.putStream('warm:big', Readable.from(bigChunks(2)))
        gc()
        const t0 = now()
        await b.putStream('big:000001', Readable.from(bigChunks(BLOB_MIB)))
        const seconds = secs(now() - t0)
        const got = await b.get('big:000001') // read back untimed, checked
        const gotHex = got && createHash('sha256').update(got).digest('hex')
        if (gotHex !== wantHex) throw new Error(`the ${BLOB_MIB} MiB blob read back ${got ? `${got.length} bytes, wrong` : got}`)
        return { ops: BLOB_MIB, seconds, opsPerSec: BLOB_MIB / seconds, bytes: BLOB_MIB * 2 ** 20 }
      })
      await bs.close()
    }
  }
}

try {
  await main()
} finally {
  if (root) rmSync(root, { recursive: true, force: true })
  send({ type: 'done' })
  process.disconnect?.()
}
