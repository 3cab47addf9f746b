#!/usr/bin/env node
// P2P sync figures (issue 7), peers in their own processes (__test__/support/p2p-peer.mjs):
// - initial sync: peer A holds N records; peer B starts empty, dials A on 127.0.0.1 (A is its
//   DHT bootstrap peer); time from B's "peer" event (connected, topic verified) until B holds all
//   N records; sync-protocol bytes each way (`store.sync.peers()` bytesSent/bytesReceived);
// - partition: three mDNS peers, each in its own network namespace on a private bridge
//   (__test__/support/netns.mjs; needs root). Peer 3's link goes down; the time until both sides
//   see each other disconnected (ping timeouts); W records written on each of the three peers
//   while apart; then the link comes up: time until peer 3 reconnects, until all three hold all
//   records, and the sync bytes all peers sent meanwhile.
//   node bench/p2p-sync.mjs [--records 10000] [--partition-writes 1000] [--runs 3] [--json file]
// Alone it prints a table; bench/run.mjs runs it with --p2p (or --only p2p) and keeps its JSON.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { startPeer, freePort, until } from '../__test__/support/p2p-procs.mjs'
import { Lan } from '../__test__/support/netns.mjs'

const now = () => performance.timeOrigin + performance.now()
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2 }

function parseArgs(argv) {
  const o = { records: 10000, partitionWrites: 1000, runs: 3, json: null }
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i].includes('=') ? argv[i].split(/=(.*)/s) : [argv[i], undefined]
    const val = () => (inline !== undefined ? inline : argv[++i])
    if (k === '--records') o.records = Number(val())
    else if (k === '--partition-writes') o.partitionWrites = Number(val())
    else if (k === '--runs') o.runs = Number(val())
    else if (k === '--json') o.json = path.resolve(val())
    else throw new Error(`unknown option ${argv[i]} (node bench/p2p-sync.mjs [--records N] [--partition-writes W] [--runs R] [--json file])`)
  }
  return o
}

/** Code for a peer: puts `n` records `<prefix>000001`… into collection docs, 64 in flight. */
const putRecords = (prefix, n) => `async (s) => {
  const c = s.records.collection('docs'); let next = 0
  const worker = async () => { for (let i = next++; i < ${n}; i = next++) {
    await c.put('${prefix}' + String(i + 1).padStart(6, '0'), { title: 'Task ' + (i + 1), done: i % 2 === 0, priority: i % 10, tags: ['alpha', 'delta'].slice(0, 1 + (i % 2)) })
  } }
  await Promise.all(Array.from({ length: 64 }, worker))
}`
const count = (p) => p.run(async (s) => s.records.collection('docs').count())
const traffic = (p) => p.run(async (s) => (await s.sync.peers()).reduce((t, x) => ({ sent: t.sent + x.bytesSent, received: t.received + x.bytesReceived }), { sent: 0, received: 0 }))
const connected = (p) => p.run(async (s) => (await s.sync.peers()).filter((x) => x.connected).length)
const eventAt = (p, event, after) => p.events.find((e) => e.event === event && e.at >= after)?.at

async function initialSync(dir, n, run) {
  const topic = `bench-initial-${process.pid}-${run}`
  const port = await freePort()
  const a = await startPeer({ name: 'bench', adapter: 'p2p', path: path.join(dir, `init${run}-a`), discovery: { method: 'dht', topic }, listen: [`/ip4/127.0.0.1/tcp/${port}`] })
  let b
  try {
    await a.run(putRecords('doc:', n))
    if ((await count(a)) !== n) throw new Error('peer A does not hold the records')
    b = await startPeer({ name: 'bench', adapter: 'p2p', path: path.join(dir, `init${run}-b`), discovery: { method: 'dht', topic, bootstrap: [`/ip4/127.0.0.1/tcp/${port}/p2p/${a.peerId}`] }, listen: ['/ip4/127.0.0.1/tcp/0'] })
    // Polled inside B: the moment it holds every record, on the same clock as its "peer" event.
    const done = await b.run(`async (s) => {
      const c = s.records.collection('docs'); const end = Date.now() + 120000
      for (;;) { if (await c.count() === ${n}) return performance.timeOrigin + performance.now(); if (Date.now() > end) throw new Error('initial sync did not finish in 120 s'); await new Promise((r) => setTimeout(r, 2)) }
    }`)
    const connectedAt = eventAt(b, 'peer', 0)
    await b.run(async (s) => s.sync.waitFor({ peers: 1, timeoutMs: 30000 }))
    const [ta, tb] = await Promise.all([traffic(a), traffic(b)])
    return { records: n, syncMs: done - connectedAt, bytesAtoB: ta.sent, bytesBtoA: tb.sent }
  } finally {
    await Promise.all([a.stop(), b?.stop()])
  }
}

async function partition(dir, w, run) {
  const lan = new Lan(`bench${run}`, 3)
  const peers = []
  try {
    lan.create()
    const topic = `bench-partition-${process.pid}-${run}`
    for (let i = 1; i <= 3; i++) {
      peers.push(await startPeer({ name: 'bench', adapter: 'p2p', path: path.join(dir, `part${run}-${i}`), discovery: { method: 'mdns', topic } }, { netns: lan.ns(i) }))
    }
    const [a, b, c] = peers
    await Promise.all(peers.map((p) => p.run(async (s) => s.sync.waitFor({ peers: 2, timeoutMs: 30000 }))))
    const down = now()
    lan.down(3)
    await until(async () => (await connected(a)) === 1 && (await connected(b)) === 1 && (await connected(c)) === 0, 60000, 'the dead link detected')
    const detectMs = now() - down
    await Promise.all([a.run(putRecords('a:', w)), b.run(putRecords('b:', w)), c.run(putRecords('c:', w))])
    await until(async () => (await count(a)) === 2 * w && (await count(b)) === 2 * w, 60000, 'peers 1 and 2 in sync while apart')
    const before = await Promise.all(peers.map(traffic))
    const healed = now()
    lan.up(3)
    await until(async () => (await Promise.all(peers.map(count))).every((x) => x === 3 * w), 120000, 'convergence after the heal')
    const convergeMs = now() - healed
    const after = await Promise.all(peers.map(traffic))
    const reconnectAt = eventAt(c, 'peer', healed)
    return {
      writesPerPeer: w,
      detectMs,
      reconnectMs: reconnectAt === undefined ? null : reconnectAt - healed,
      convergeMs,
      healBytes: after.reduce((t, x, i) => t + x.sent - before[i].sent, 0),
    }
  } finally {
    await Promise.all(peers.map((p) => p.stop()))
    lan.destroy()
  }
}

export async function benchP2p(opts) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'persist-bench-p2p-'))
  const out = { options: opts, initial: [], partition: [], partitionUnavailable: undefined }
  try {
    for (let run = 1; run <= opts.runs; run++) {
      console.error(`p2p run ${run}/${opts.runs}: initial sync of ${opts.records} records`)
      out.initial.push(await initialSync(dir, opts.records, run))
      if (out.partitionUnavailable) continue
      console.error(`p2p run ${run}/${opts.runs}: three peers, partition and heal (${opts.partitionWrites} records per peer while apart)`)
      try {
        out.partition.push(await partition(dir, opts.partitionWrites, run))
      } catch (e) {
        if (run === 1 && process.getuid?.() !== 0) out.partitionUnavailable = `needs root (network namespaces): ${e.message}`
        else throw e
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const med = (list, k) => (list.length ? median(list.map((r) => r[k]).filter((x) => x != null)) : undefined)
  out.median = {
    initialSyncMs: med(out.initial, 'syncMs'),
    initialBytesAtoB: med(out.initial, 'bytesAtoB'),
    initialBytesBtoA: med(out.initial, 'bytesBtoA'),
    detectMs: med(out.partition, 'detectMs'),
    reconnectMs: med(out.partition, 'reconnectMs'),
    convergeMs: med(out.partition, 'convergeMs'),
    healBytes: med(out.partition, 'healBytes'),
  }
  return out
}

export function p2pTable(r) {
  const m = r.median
  const ms = (x) => (x == null ? '—' : `${x.toFixed(0)} ms`)
  const kb = (x) => (x == null ? '—' : `${(x / 1024).toFixed(1)} KiB`)
  const runs = (list, k, f) => list.map((x) => f(x[k])).join(', ')
  const rows = [
    [`initial sync, ${r.options.records} records, from connect (target < 2 s)`, ms(m.initialSyncMs), runs(r.initial, 'syncMs', ms)],
    ['  sync bytes sent A → B (holder → newcomer)', kb(m.initialBytesAtoB), runs(r.initial, 'bytesAtoB', kb)],
    ['  sync bytes sent B → A', kb(m.initialBytesBtoA), runs(r.initial, 'bytesBtoA', kb)],
  ]
  if (r.partitionUnavailable) rows.push(['three peers, partition', r.partitionUnavailable, ''])
  else {
    rows.push(
      ['3 peers: dead link detected (both sides)', ms(m.detectMs), runs(r.partition, 'detectMs', ms)],
      [`3 peers: heal → peer 3 reconnected`, ms(m.reconnectMs), runs(r.partition, 'reconnectMs', ms)],
      [`3 peers: heal → converged (${r.options.partitionWrites} records per peer written apart)`, ms(m.convergeMs), runs(r.partition, 'convergeMs', ms)],
      ['  sync bytes sent by all peers during the heal', kb(m.healBytes), runs(r.partition, 'healBytes', kb)],
    )
  }
  const w = [Math.max(...rows.map((x) => x[0].length)), Math.max(...rows.map((x) => x[1].length)), Math.max(...rows.map((x) => x[2].length), 4)]
  const line = (x) => `| ${x[0].padEnd(w[0])} | ${x[1].padStart(w[1])} | ${x[2].padEnd(w[2])} |`
  return [line(['p2p', 'median', 'runs']), `|${'-'.repeat(w[0] + 2)}|${'-'.repeat(w[1] + 1)}:|${'-'.repeat(w[2] + 2)}|`, ...rows.map(line)].join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const opts = parseArgs(process.argv.slice(2))
  benchP2p(opts).then((r) => {
    console.log(`\n## p2p, median of ${opts.runs} run(s)\n`)
    console.log(p2pTable(r))
    if (opts.json) writeFileSync(opts.json, JSON.stringify(r, null, 2) + '\n')
  }, (e) => {
    console.error(`bench p2p: ${e?.stack ?? e}`)
    process.exit(1)
  })
}
