#!/usr/bin/env node
// The benchmark of @cuitty/persist against the libraries users pick today (README.md).
// Each (library, run) runs in its own child process (worker.mjs) with fresh databases in a temp
// dir; medians over the runs; ratios ours/theirs against the targets of issue 4.
//   node bench/run.mjs [--only a,b] [--runs 3] [--n 100000] [--phases set-seq,get-c64,...]
//                      [--blob-n 2000] [--blob-mib 64] [--max-phase-seconds 30] [--out bench/results]
//                      [--p2p] [--p2p-records 10000] [--p2p-writes 1000]
// --p2p adds the P2P sync section (p2p-sync.mjs; its partition part needs root); `--only p2p`
// runs that section alone (its JSON goes to results/<date>-p2p.json, latest.* stay as they are).
import { fork } from 'node:child_process'
import { readdirSync, mkdirSync, writeFileSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chartSvg, fmtRate } from './lib/chart.mjs'
import { REPO, ADDON_FILES, addonProfile } from './lib/persist-common.mjs'
import { benchP2p, p2pTable } from './p2p-sync.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))

export const PHASES = [
  { id: 'set-seq', label: 'set-seq', unit: 'ops/s' },
  { id: 'set-c64', label: 'set-c64', unit: 'ops/s' },
  { id: 'set-batch', label: 'set-batch', unit: 'ops/s' },
  { id: 'get-seq', label: 'get-seq', unit: 'ops/s' },
  { id: 'get-c64', label: 'get-c64', unit: 'ops/s' },
  { id: 'list', label: 'list', unit: 'keys/s' },
  { id: 'query', label: 'query (no index)', unit: 'q/s' },
  { id: 'query-index', label: 'query (index)', unit: 'q/s' },
  // blobs (issue 6): --blob-n objects of 1 KiB with 64 in flight, then one --blob-mib MiB body
  { id: 'blob-put-1k', label: 'blob put 1k (c64)', unit: 'ops/s' },
  { id: 'blob-get-1k', label: 'blob get 1k (c64)', unit: 'ops/s' },
  { id: 'blob-list', label: 'blob list', unit: 'keys/s' },
  { id: 'blob-list-info', label: 'blob list info', unit: 'keys/s' },
  { id: 'blob-multipart', label: 'blob multipart (MiB/s)', unit: 'MiB/s' },
]
const KV_PHASES = ['set-seq', 'set-c64', 'set-batch', 'get-seq', 'get-c64', 'list']
const RECORD_PHASES = ['query', 'query-index']
const BLOB_PHASES = ['blob-put-1k', 'blob-get-1k', 'blob-list', 'blob-list-info', 'blob-multipart']
/** What a row runs without --phases: a module may say (`phases` in libs/*.mjs; the S3 rows run the blob phases). */
const DEFAULT_PHASES = [...KV_PHASES, ...RECORD_PHASES]

// Rows compared, and the targets of issue 4 (minimum ratio ours/theirs per phase).
const COMPARISONS = [
  {
    ours: 'persist-sqlite',
    theirs: 'better-sqlite3',
    targets: { 'set-c64': 3, 'set-batch': 1, 'get-seq': 0.7, 'get-c64': 1, list: 1, 'query-index': 1 },
  },
  { ours: 'persist-sqlite', theirs: 'keyv-sqlite', targets: Object.fromEntries(KV_PHASES.map((p) => [p, 10])) },
  { ours: 'persist-sqlite', theirs: 'lmdb', targets: {} },
  { ours: 'persist-custom-map', theirs: 'map-floor', targets: {} },
  // issue 5: at least 1.5x pg on the 64-in-flight phases, at least 1x on the others
  {
    ours: 'persist-postgres',
    theirs: 'pg',
    targets: { 'set-seq': 1, 'set-c64': 1.5, 'set-batch': 1, 'get-seq': 1, 'get-c64': 1.5, list: 1, query: 1, 'query-index': 1 },
  },
  // issue 6: at least 1x @aws-sdk/client-s3 (every phase run on both rows)
  {
    ours: 'persist-s3',
    theirs: 'aws-sdk-s3',
    targets: Object.fromEntries([...KV_PHASES, ...BLOB_PHASES].map((p) => [p, 1])),
  },
]

function parseArgs(argv) {
  const o = { runs: 3, n: 100000, blobN: 2000, blobMib: 64, only: null, phases: null, maxPhaseSeconds: 30, out: path.join(HERE, 'results'), timeout: 1800, addon: path.join(REPO, 'persist.linux-x64-gnu.node'), p2p: false, p2pRecords: 10000, p2pWrites: 1000 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const [k, inline] = a.includes('=') ? a.split(/=(.*)/s) : [a, undefined]
    const val = () => (inline !== undefined ? inline : argv[++i])
    if (k === '--runs') o.runs = Number(val())
    else if (k === '--n') o.n = Number(val())
    else if (k === '--blob-n') o.blobN = Number(val())
    else if (k === '--blob-mib') o.blobMib = Number(val())
    else if (k === '--only') o.only = val().split(',').map((s) => s.trim()).filter(Boolean)
    else if (k === '--phases') {
      const groups = { kv: KV_PHASES, records: RECORD_PHASES, blobs: BLOB_PHASES }
      const ps = val().split(',').flatMap((s) => groups[s.trim()] ?? [s.trim()])
      for (const p of ps) if (!PHASES.some((x) => x.id === p)) throw new Error(`unknown phase ${p} (known: ${PHASES.map((x) => x.id).join(', ')}, kv, records, blobs)`)
      o.phases = [...new Set(ps)]
    } else if (k === '--max-phase-seconds') o.maxPhaseSeconds = Number(val())
    else if (k === '--timeout') o.timeout = Number(val())
    else if (k === '--out') o.out = path.resolve(val())
    else if (k === '--addon') o.addon = path.resolve(val())
    else if (k === '--p2p') o.p2p = true
    else if (k === '--p2p-records') o.p2pRecords = Number(val())
    else if (k === '--p2p-writes') o.p2pWrites = Number(val())
    else if (k === '--help' || k === '-h') {
      console.log('node bench/run.mjs [--only lib,lib] [--runs 3] [--n 100000] [--phases p,p|kv|records|blobs] [--blob-n 2000] [--blob-mib 64] [--max-phase-seconds 30] [--timeout 1800] [--out dir] [--addon file.node] [--p2p] [--p2p-records 10000] [--p2p-writes 1000]')
      process.exit(0)
    } else throw new Error(`unknown option ${a}`)
  }
  if (o.only?.includes('p2p')) {
    o.p2p = true
    o.only = o.only.filter((x) => x !== 'p2p')
  }
  if (!(o.n >= 1 && o.n <= 999999)) throw new Error('--n must be 1..999999')
  if (!(o.runs >= 1)) throw new Error('--runs must be >= 1')
  if (!(o.blobN >= 1 && o.blobN <= 999999)) throw new Error('--blob-n must be 1..999999')
  if (!(o.blobMib >= 1)) throw new Error('--blob-mib must be >= 1')
  return o
}

async function discoverLibs(only) {
  const files = readdirSync(path.join(HERE, 'libs')).filter((f) => f.endsWith('.mjs')).sort()
  const libs = []
  for (const f of files) {
    const id = f.replace(/\.mjs$/, '')
    if (only && !only.includes(id)) continue
    let meta = { id, label: id }
    try {
      const m = (await import(path.join(HERE, 'libs', f))).default
      meta = { id, label: m.label ?? id, ours: !!m.ours, optIn: !!m.optIn, phases: m.phases }
    } catch (e) {
      meta.importError = String(e?.message ?? e).split('\n')[0]
    }
    if (!only && meta.optIn) continue // rows that need a server (postgres, s3) run with --only
    libs.push(meta)
  }
  if (only) for (const id of only) if (!libs.some((l) => l.id === id)) throw new Error(`no bench/libs/${id}.mjs`)
  // ours first, then the anchors in a fixed order
  const rank = ['persist-sqlite', 'better-sqlite3', 'keyv-sqlite', 'lmdb', 'persist-custom-map', 'map-floor', 'persist-postgres', 'pg', 'persist-s3', 'aws-sdk-s3']
  const r = (id) => (rank.includes(id) ? rank.indexOf(id) : rank.length)
  return libs.sort((a, b) => r(a.id) - r(b.id) || a.id.localeCompare(b.id))
}

function runChild(lib, opts) {
  return new Promise((resolve) => {
    const res = { phases: {}, extra: {}, info: undefined, unavailable: undefined }
    const child = fork(
      path.join(HERE, 'worker.mjs'),
      [lib.id, String(opts.n), lib.phaseList.join(','), String(opts.maxPhaseSeconds), String(opts.blobN), String(opts.blobMib)],
      { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'pipe', 'ipc'] },
    )
    let stderr = ''
    child.stderr.on('data', (d) => {
      stderr += d
      if (stderr.length > 20000) stderr = stderr.slice(-20000)
    })
    let done = false
    const killer = setTimeout(() => {
      res.timedOut = true
      child.kill('SIGKILL')
    }, opts.timeout * 1000)
    child.on('message', (m) => {
      if (m.type === 'info') res.info = m.info
      else if (m.type === 'unavailable') res.unavailable = m.error
      else if (m.type === 'extra') res.extra[m.key] = m.result
      else if (m.type === 'phase') {
        res.phases[m.phase] = m.result
        const r = m.result
        const shown = r.error ? `ERROR ${r.error}` : r.na ? 'n/a' : `${fmtRate(r.opsPerSec)}/s${r.capped ? ` (capped at ${r.ops} ops)` : ''}${r.indexBuildMs != null ? `, index built in ${r.indexBuildMs.toFixed(0)} ms` : ''}`
        process.stderr.write(`    ${m.phase.padEnd(12)} ${shown}\n`)
      } else if (m.type === 'done') {
        done = true
        // a store that keeps handles open must not hold the bench up
        setTimeout(() => child.kill('SIGKILL'), 5000).unref()
      }
    })
    child.on('exit', (code, signal) => {
      clearTimeout(killer)
      if (!done && !res.unavailable) {
        const why = res.timedOut ? `timed out after ${opts.timeout} s` : `child exited (${signal ?? `code ${code}`})`
        const last = stderr.trim().split('\n').slice(-3).join(' | ')
        res.crash = `${why}${last ? `: ${last}` : ''}`
        for (const p of lib.phaseList) if (!res.phases[p]) res.phases[p] = { error: res.crash }
      }
      resolve(res)
    })
  })
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (!s.length) return undefined
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function table(header, rows, alignLeft = 1) {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (r) => '| ' + r.map((c, i) => (i < alignLeft ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join(' | ') + ' |'
  return [line(header), '|' + w.map((x, i) => (i < alignLeft ? '-'.repeat(x + 2) : '-'.repeat(x + 1) + ':')).join('|') + '|', ...rows.map(line)].join('\n')
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const libs = await discoverLibs(opts.only)
  // each row runs --phases, or without it its own default (the S3 rows: the blob phases)
  for (const l of libs) l.phaseList = opts.phases ?? (l.phases?.length ? l.phases : DEFAULT_PHASES)
  const runPhases = PHASES.map((p) => p.id).filter((p) => libs.some((l) => l.phaseList.includes(p)))
  const started = new Date()
  const machine = {
    cpu: os.cpus()[0]?.model?.trim(),
    cores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    tmpdir: os.tmpdir(),
  }
  // Snapshot our package (JS + addon) so concurrent rebuilds in the repo cannot swap it mid-bench.
  let addon
  if (libs.some((l) => l.ours) || opts.p2p) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'persist-bench-pkg-'))
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
    try {
      for (const f of ADDON_FILES) copyFileSync(path.join(REPO, f), path.join(dir, f))
      copyFileSync(opts.addon, path.join(dir, 'persist.linux-x64-gnu.node'))
      process.env.PERSIST_BENCH_PKG = dir
      addon = { file: path.relative(REPO, opts.addon), build: addonProfile(path.join(dir, 'persist.linux-x64-gnu.node')) }
      console.error(`bench: @cuitty/persist addon ${addon.file} (${addon.build} build), snapshot in ${dir}`)
    } catch (e) {
      console.error(`bench: cannot snapshot the addon: ${e.message}`)
    }
  }
  if (opts.p2p && libs.length === 0) return p2pOnly(opts, started, machine, addon)
  console.error(`bench: N=${opts.n}${runPhases.some((p) => BLOB_PHASES.includes(p)) ? `, blobs ${opts.blobN} x 1 KiB + ${opts.blobMib} MiB` : ''}, ${opts.runs} run(s), libraries ${libs.map((l) => `${l.id} (${l.phaseList.join(',')})`).join(', ')}`)
  const raw = Object.fromEntries(libs.map((l) => [l.id, []]))
  for (let run = 1; run <= opts.runs; run++) {
    for (const lib of libs) {
      console.error(`run ${run}/${opts.runs}: ${lib.id}`)
      if (lib.importError) {
        raw[lib.id].push({ unavailable: lib.importError, phases: {}, extra: {} })
        console.error(`    unavailable: ${lib.importError}`)
        continue
      }
      const r = await runChild(lib, opts)
      if (r.unavailable) console.error(`    unavailable: ${r.unavailable}`)
      if (r.crash) console.error(`    ${r.crash}`)
      raw[lib.id].push(r)
    }
  }

  // medians
  const results = {}
  for (const lib of libs) {
    const runs = raw[lib.id]
    const ok = runs.filter((r) => !r.unavailable)
    const entry = { label: lib.label, info: ok[0]?.info, phases: {}, extra: {} }
    if (!ok.length) entry.unavailable = runs[0]?.unavailable ?? 'no run'
    for (const p of lib.phaseList) {
      const rs = ok.map((r) => r.phases[p]).filter(Boolean)
      const good = rs.filter((r) => !r.error && !r.na)
      if (rs.length && rs.every((r) => r.na)) entry.phases[p] = { na: true }
      else if (good.length) {
        entry.phases[p] = {
          median: median(good.map((r) => r.opsPerSec)),
          runs: good.map((r) => r.opsPerSec),
          ...(good.some((r) => r.capped) ? { capped: true, ops: good.map((r) => r.ops) } : {}),
          ...(p === 'query-index' ? { indexBuildMs: median(good.map((r) => r.indexBuildMs)) } : {}),
          ...(good[0].plan ? { plan: good[0].plan } : {}),
          ...(good.length < rs.length ? { errors: rs.filter((r) => r.error).map((r) => r.error) } : {}),
        }
      } else if (rs.length) entry.phases[p] = { error: rs.find((r) => r.error)?.error }
    }
    const ins = ok.map((r) => r.extra['records-insert']?.opsPerSec).filter(Boolean)
    if (ins.length) entry.extra['records-insert'] = { median: median(ins) }
    const builds = [...new Set(ok.map((r) => r.info?.build).filter(Boolean))]
    if (builds.length) entry.build = builds.join(' then ')
    results[lib.id] = entry
  }

  // ratios
  const ratios = []
  for (const c of COMPARISONS) {
    const a = results[c.ours]
    const b = results[c.theirs]
    if (!a || !b) continue
    if (a.unavailable || b.unavailable) {
      ratios.push({ ours: c.ours, theirs: c.theirs, unavailable: a.unavailable ? c.ours : c.theirs, phases: {} })
      continue
    }
    const row = { ours: c.ours, theirs: c.theirs, phases: {} }
    for (const p of runPhases) {
      const x = a.phases[p]?.median
      const y = b.phases[p]?.median
      const ratio = x && y ? x / y : undefined
      const target = c.targets[p]
      row.phases[p] = { ratio, target, met: target === undefined || ratio === undefined ? undefined : ratio >= target }
    }
    ratios.push(row)
  }

  // print
  const phaseCols = PHASES.filter((p) => runPhases.includes(p.id))
  const cell = (e) => (!e ? '' : e.na ? '—' : e.error ? 'error' : fmtRate(e.median) + (e.capped ? '*' : ''))
  const opsRows = libs.map((l) => {
    const e = results[l.id]
    if (e.unavailable) return [l.id, ...phaseCols.map(() => 'unavail.')]
    return [l.id, ...phaseCols.map((p) => cell(e.phases[p.id]))]
  })
  const builds = [...new Set(libs.filter((l) => l.ours).map((l) => results[l.id].build).filter(Boolean))]
  console.log(`\n## ops/s, median of ${opts.runs} run(s), N = ${opts.n}${runPhases.some((p) => BLOB_PHASES.includes(p)) ? `, blobs: ${opts.blobN} x 1 KiB, ${opts.blobMib} MiB multipart` : ''} (list: keys/s; query: queries/s; multipart: MiB/s)${builds.length ? `; addon build: ${builds.join(', ')}` : ''}\n`)
  console.log(table(['library', ...phaseCols.map((p) => p.label)], opsRows))
  const unavailable = libs.filter((l) => results[l.id].unavailable)
  for (const l of unavailable) console.log(`\n${l.id}: unavailable: ${results[l.id].unavailable}`)
  const errs = []
  for (const l of libs) for (const p of phaseCols) { const e = results[l.id].phases[p.id]; if (e?.error) errs.push(`${l.id} ${p.id}: ${e.error}`); if (e?.errors) errs.push(`${l.id} ${p.id} (some runs): ${e.errors.join('; ')}`) }
  if (errs.length) console.log('\nerrors:\n' + errs.map((x) => `  ${x}`).join('\n'))
  if (libs.some((l) => Object.values(results[l.id].phases).some((e) => e.capped)))
    console.log(`\n* capped: the phase stopped after ${opts.maxPhaseSeconds} s (--max-phase-seconds); the rate is over the operations done.`)
  const idx = libs.filter((l) => results[l.id].phases['query-index']?.indexBuildMs != null)
  if (idx.length) console.log('\nindex build (ms, median): ' + idx.map((l) => `${l.id} ${results[l.id].phases['query-index'].indexBuildMs.toFixed(0)}`).join(', '))
  if (ratios.length) {
    console.log('\n## ratios ours / theirs (medians; target in brackets)\n')
    const ratioRows = ratios.map((r) => r.unavailable ? [`${r.ours} / ${r.theirs}`, ...phaseCols.map(() => 'n/a')] : [
      `${r.ours} / ${r.theirs}`,
      ...phaseCols.map((p) => {
        const x = r.phases[p.id]
        if (!x || x.ratio === undefined) return '—'
        const v = x.ratio >= 10 ? x.ratio.toFixed(1) : x.ratio.toFixed(2)
        return x.target === undefined ? `${v}×` : `${v}× ${x.met ? 'met' : 'MISSED'} (≥${x.target})`
      }),
    ])
    console.log(table(['ratio', ...phaseCols.map((p) => p.label)], ratioRows))
  }

  const p2p = opts.p2p ? await runP2p(opts) : undefined

  // write
  mkdirSync(opts.out, { recursive: true })
  const stamp = started.toISOString().replace(/[:]/g, '-').replace(/\..*/, '')
  const json = {
    date: started.toISOString(),
    machine,
    addon,
    options: { n: opts.n, runs: opts.runs, phases: runPhases, phasesPerLibrary: Object.fromEntries(libs.map((l) => [l.id, l.phaseList])), blobN: opts.blobN, blobMib: opts.blobMib, blobSize: 1024, maxPhaseSeconds: opts.maxPhaseSeconds, concurrency: 64, batch: 1000, shuffleSeed: 42 },
    results,
    ratios,
    raw,
    ...(p2p ? { p2p } : {}),
  }
  writeFileSync(path.join(opts.out, 'latest.json'), JSON.stringify(json, null, 2) + '\n')
  writeFileSync(path.join(opts.out, `${stamp}.json`), JSON.stringify(json, null, 2) + '\n')
  const chartLibs = libs.filter((l) => !results[l.id].unavailable)
  if (chartLibs.length) {
    const svg = chartSvg({
      title: '@cuitty/persist vs the libraries users pick today',
      subtitle: `${started.toISOString().slice(0, 10)} · N = ${opts.n} · median of ${opts.runs} run(s) · ${machine.cpu}, ${machine.cores} cores · Node ${process.version}${builds.length ? ` · addon: ${builds.join(', ')} build` : ''}`,
      libs: chartLibs,
      phases: phaseCols,
      value: (lib, p) => results[lib].phases[p]?.median,
    })
    writeFileSync(path.join(opts.out, 'latest.svg'), svg)
    writeFileSync(path.join(opts.out, `${stamp}.svg`), svg)
  }
  console.error(`\nwrote ${path.relative(process.cwd(), path.join(opts.out, 'latest.json'))}, latest.svg and ${stamp}.json`)
}

async function runP2p(opts) {
  const p2p = await benchP2p({ records: opts.p2pRecords, partitionWrites: opts.p2pWrites, runs: opts.runs })
  console.log(`\n## p2p, median of ${opts.runs} run(s)\n`)
  console.log(p2pTable(p2p))
  return p2p
}

async function p2pOnly(opts, started, machine, addon) {
  const p2p = await runP2p(opts)
  mkdirSync(opts.out, { recursive: true })
  const file = path.join(opts.out, `${started.toISOString().replace(/[:]/g, '-').replace(/\..*/, '')}-p2p.json`)
  writeFileSync(file, JSON.stringify({ date: started.toISOString(), machine, addon, p2p }, null, 2) + '\n')
  console.error(`\nwrote ${path.relative(process.cwd(), file)}`)
}

main().catch((e) => {
  console.error(`bench: ${e?.message ?? e}`)
  process.exit(1)
})
