'use strict'
// The public API of @cuitty/persist. A thin layer over the native binding (binding.js, built by
// `napi build`): it checks argument types, turns values into JSON text, exposes pages as async
// iterables and blobs as Node streams, and turns every native failure into a PersistError.
// Storage logic lives in the Rust core (src/).

const { Readable } = require('node:stream')
const util = require('node:util')

let native
let loadError
try {
  native = require('./binding.js')
} catch (err) {
  loadError = err
}

const ERROR_TAG = '\u0000PERSIST'
const KV_PAGE = 1000
const KV_FIRST_PAGE = 256
const RECORD_PAGE = 500
const BLOB_PAGE = 500
/** A long blob listing asks for pages growing up to this: fewer native calls, and an S3 store
 * lists its next 1,000 keys while it HEADs the blobs of the first ones. */
const BLOB_PAGE_MAX = 2000
const EVENT_PAGE = 500
const STREAM_PAGE = 1000
/** Bytes handed to the native layer per call when a body arrives as one large buffer. */
const BLOB_WRITE_SLICE = 1024 * 1024
/** How long one native wait for new events lasts before the subscription loop checks in. */
const EVENT_WAIT_MS = 1000

class PersistError extends Error {
  constructor(code, message, options) {
    super(message, options)
    this.name = 'PersistError'
    this.code = code
  }
}

function fail(code, message, cause) {
  return new PersistError(code, message, cause === undefined ? undefined : { cause })
}

// What custom adapters threw, kept until the PersistError that carries it as `cause` is made.
// Bounded: an entry whose error never reaches JS (a failed rollback, say) is dropped eventually.
const causes = new Map()
let nextCauseRef = 1
const MAX_CAUSES = 10000

function keepCause(value) {
  const ref = nextCauseRef++
  if (nextCauseRef > 0xfffffff0) nextCauseRef = 1
  causes.set(ref, value)
  if (causes.size > MAX_CAUSES) causes.delete(causes.keys().next().value)
  return ref
}

/** Turns whatever the native layer threw into a PersistError. */
function fromNative(err) {
  if (err instanceof PersistError) return err
  const message = err && typeof err.message === 'string' ? err.message : String(err)
  if (message.startsWith(ERROR_TAG)) return fromErrorBody(JSON.parse(message.slice(ERROR_TAG.length)))
  // A napi conversion failure or a Rust panic caught by napi: a bug, never a crash.
  return fail('INTERNAL', `internal error: ${message}`, err)
}

/** A PersistError from the native layer's `{ code, message, causeRef }`, with the adapter's
 * original error as `cause` when there is one. */
function fromErrorBody(body) {
  if (body.causeRef !== null && body.causeRef !== undefined && causes.has(body.causeRef)) {
    const cause = causes.get(body.causeRef)
    causes.delete(body.causeRef)
    return fail(body.code, body.message, cause)
  }
  return fail(body.code, body.message)
}

/** Settles each call of a batch with its entry in the native reply: `{ ok }` or `{ err }`. */
function settleEach(batch, results) {
  batch.forEach((call, i) => {
    const r = results[i]
    if (r.ok) call.resolve(r.ok)
    else call.reject(fromErrorBody(r.err))
  })
}

/** Runs `fn`, rejecting with a PersistError whatever it throws. */
async function guard(fn) {
  try {
    return await fn()
  } catch (err) {
    throw fromNative(err)
  }
}

// ---- argument checks (types only; the core checks lengths, ranges and content) ----

function str(what, value) {
  if (typeof value !== 'string') {
    throw fail('INVALID_ARGUMENT', `${what} must be a string, got ${describe(value)}`)
  }
  if (!value.isWellFormed()) {
    throw fail('INVALID_ARGUMENT', `${what} holds a lone UTF-16 surrogate (not Unicode text): ${describe(value)}`)
  }
  return value
}

/** An optional string: only `undefined` means absent (`null` is a wrong type, as in the types). */
function optStr(what, value) {
  return value === undefined ? null : str(what, value)
}

function optNum(what, value) {
  if (value === undefined || value === null) return null
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw fail('INVALID_ARGUMENT', `${what} must be a number, got ${describe(value)}`)
  }
  return value
}

function opts(what, value) {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw fail('INVALID_ARGUMENT', `${what} must be an object, got ${describe(value)}`)
  }
  return value
}

function optLimit(value) {
  if (value === undefined || value === null) return Infinity
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw fail('INVALID_ARGUMENT', `limit must be a non-negative integer, got ${describe(value)}`)
  }
  return value
}

function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${typeof value} ${String(value)}`
  return typeof value
}

/** JSON text of a value, as API.md's value rules say: what JSON cannot hold is INVALID_VALUE. */
function toJson(what, value) {
  let text
  try {
    text = JSON.stringify(value)
  } catch (err) {
    throw fail('INVALID_VALUE', `${what} cannot be stored as JSON: ${err.message}`, err)
  }
  if (text === undefined) {
    throw fail('INVALID_VALUE', `${what} cannot be stored as JSON (${typeof value})`)
  }
  checkWellFormed(what, text)
  return text
}

/** `JSON.stringify` writes a string's lone surrogate as a `\udXXX` escape (and nothing else in
 * that range: pairs come out as themselves); an escape is one preceded by an even run of
 * backslashes. */
const LONE_SURROGATE = /(?<!\\)(?:\\\\)*\\ud[89a-f]/

/** Refuses JSON text holding a lone UTF-16 surrogate: such text is not interoperable JSON (RFC
 * 8259 8.2; I-JSON forbids it) and the JSON parsers of Rust and Postgres refuse it, so most
 * backends could not give it back as written. */
function checkWellFormed(what, text) {
  if (text.includes('\\u') && LONE_SURROGATE.test(text)) {
    throw fail('INVALID_VALUE', `${what} holds a string with a lone UTF-16 surrogate, which JSON storage cannot keep`)
  }
}

function docJson(what, value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw fail('INVALID_VALUE', `${what} must be a JSON object, got ${describe(value)}`)
  }
  return toJson(what, value)
}

/**
 * An async iterable over the items of the pages that `producePages` (an async generator of
 * arrays) yields; errors become PersistErrors. The iterator is written by hand so that an item
 * already fetched costs one resolved promise, not a trip through two async generators.
 */
function paged(producePages) {
  return {
    [Symbol.asyncIterator]() {
      let pages = null
      let page = []
      let index = 0
      let finished = false
      let fetching = null
      const fetchPage = async () => {
        try {
          pages ??= producePages()
          for (;;) {
            const step = await pages.next()
            if (step.done) {
              finished = true
              return
            }
            page = step.value
            index = 0
            if (page.length > 0) return
          }
        } catch (err) {
          finished = true
          throw fromNative(err)
        }
      }
      const iterator = {
        next() {
          if (fetching) return fetching.then(() => iterator.next())
          if (index < page.length) return Promise.resolve({ value: page[index++], done: false })
          if (finished) return Promise.resolve({ value: undefined, done: true })
          fetching = fetchPage().finally(() => {
            fetching = null
          })
          return fetching.then(() => iterator.next())
        },
        async return(value) {
          finished = true
          page = []
          if (pages) await pages.return(undefined)
          return { value, done: true }
        },
        [Symbol.asyncIterator]() {
          return iterator
        },
      }
      return iterator
    },
  }
}

// ---- kv ----

function toKvEntry(e) {
  return e
}

/** The `ops` text of `kvSetBatch` for pending sets: `[key, value, ttl, ifVersion, ifAbsent]`
 * each; without `withValues`, that of `kvDirectSetPlan` (no value: the caller keeps it). */
function setOps(batch, withValues = true) {
  return '[' + batch.map((o) => `[${JSON.stringify(o.key)},${withValues ? o.json + ',' : ''}${o.ttl === null ? 'null' : JSON.stringify(o.ttl)},${o.ifVersion === null ? 'null' : JSON.stringify(o.ifVersion)},${o.ifAbsent}]`).join(',') + ']'
}

/**
 * Plain kv gets and sets on a custom adapter, made by calling the adapter from this thread:
 * through the core, a batch would cross threads four times (JS → core → JS for the adapter →
 * core → JS). The core still decides everything but the call (src/keyspace/direct.rs): the
 * adapter key, version, expiry and record of each set, the key's lock until the put settles
 * (so plain sets stay ordered with compare-and-set, update and setMany, which take the core's
 * path), and what a record read back means. Each call is bounded by the adapter timeout, a
 * failure is ADAPTER with the adapter's error as `cause`, and a slow call holds up no other.
 */
class DirectKv {
  #n
  #get
  #put
  #timeoutMs
  /** Settled sets waiting for their keys to be unlocked, once per tick, before they resolve. */
  #settledSets = []
  /** Records read back, decoded by the core once per tick. */
  #settledGets = []

  constructor(nativeStore, adapter, timeoutMs) {
    this.#n = nativeStore
    this.#get = adapter.get.bind(adapter)
    this.#put = adapter.put.bind(adapter)
    this.#timeoutMs = timeoutMs
  }

  /** Runs pending sets (see KV#flushSets); those the core defers go to `sendDeferred`. */
  sets(batch, sendDeferred) {
    // The core plans without the values (they stay here as JSON text): each record is the
    // plan's head, the value's JSON and the set's tail, parsed once into what the adapter gets.
    const [ticket, head, planned, deferred, invalid] = JSON.parse(this.#n.kvDirectSetPlan(setOps(batch, false)))
    for (const [i, body] of invalid) batch[i].reject(fromErrorBody(body))
    if (deferred.length > 0) sendDeferred(deferred.map((i) => batch[i]))
    if (planned.length === 0) return
    const bound = { remaining: planned.length, timer: null }
    const calls = planned.map(([i, key, , version, expiresAt]) => ({ bound, ticket, index: i, op: batch[i], key, version, expiresAt, settled: false, error: null }))
    this.#bound(bound, calls, 'put', (call, error) => this.#setSettled(call, error))
    for (let n = 0; n < calls.length; n++) {
      const call = calls[n]
      const record = JSON.parse(head + call.op.json + planned[n][2])
      callAdapter(this.#put, call.key, record, () => this.#setSettled(call, null), (err) => this.#setSettled(call, adapterFailure('put', call.key, err)))
    }
  }

  #setSettled(call, error) {
    if (!settleOnce(call)) return
    call.error = error
    if (this.#settledSets.push(call) === 1) queueMicrotask(this.#flushSettledSets)
  }

  #flushSettledSets = () => {
    const calls = this.#settledSets
    this.#settledSets = []
    const byTicket = new Map()
    for (const c of calls) {
      const list = byTicket.get(c.ticket)
      if (list) list.push(c.index)
      else byTicket.set(c.ticket, [c.index])
    }
    for (const [ticket, indexes] of byTicket) this.#n.kvDirectSetsDone(ticket, indexes)
    for (const c of calls) {
      if (c.error !== null) {
        c.op.reject(c.error)
        continue
      }
      const entry = { key: c.op.key, value: JSON.parse(c.op.json), version: c.version }
      if (c.expiresAt !== null) entry.expiresAt = c.expiresAt
      c.op.resolve(entry)
    }
  }

  /** Runs pending value gets (see KV#get); a record the core must judge by itself (bytes at a
   * kv key) goes to `getThroughCore`. Throws when a key is invalid (the caller retries each). */
  gets(batch, getThroughCore) {
    const keys = this.#n.kvDirectKeys(batch.map((g) => g.key)).split('\0')
    const bound = { remaining: batch.length, timer: null }
    const calls = batch.map((g, i) => ({ bound, g, key: keys[i], settled: false }))
    this.#bound(bound, calls, 'get', (call, error) => this.#getSettled(call, null, error))
    for (const call of calls) {
      const ok = (record) => {
        if (record === undefined || record === null) return this.#getSettled(call, undefined, null)
        if (record instanceof Uint8Array) {
          if (settleOnce(call)) getThroughCore(call.g)
          return
        }
        if (typeof record !== 'object') {
          return this.#getSettled(call, null, adapterFailure('get', call.key, new AdapterShapeError(`get() returned ${describe(record)}, which is not a JSON object`)))
        }
        this.#getSettled(call, record, null)
      }
      callAdapter(this.#get, call.key, undefined, ok, (err) => this.#getSettled(call, null, adapterFailure('get', call.key, err)))
    }
  }

  /** `record`: undefined (absent), an object to decode, or null with `error`. */
  #getSettled(call, record, error) {
    if (!settleOnce(call)) return
    if (error !== null) return call.g.reject(error)
    if (record === undefined) return call.g.resolve(undefined)
    call.record = record
    if (this.#settledGets.push(call) === 1) queueMicrotask(this.#flushSettledGets)
  }

  #flushSettledGets = () => {
    const calls = this.#settledGets
    this.#settledGets = []
    let text
    try {
      text = JSON.stringify(calls.map((c) => c.record))
    } catch {
      // One record is not JSON (a BigInt, a cycle): that get fails, the others are decoded.
      const ok = []
      for (const c of calls) {
        try {
          JSON.stringify(c.record)
          ok.push(c)
        } catch (err) {
          c.g.reject(adapterFailure('get', c.key, new AdapterShapeError(`the adapter returned a value that is not JSON: ${err.message}`, { cause: err })))
        }
      }
      if (ok.length > 0) {
        this.#settledGets = ok.concat(this.#settledGets)
        this.#flushSettledGets()
      }
      return
    }
    let values
    try {
      values = JSON.parse(this.#n.kvDirectValues(calls.map((c) => c.key).join('\0'), text))
    } catch (err) {
      const e = fromNative(err)
      for (const c of calls) c.g.reject(e)
      return
    }
    for (let i = 0; i < calls.length; i++) {
      const v = values[i]
      if (v === 0) calls[i].g.resolve(undefined)
      else if (Array.isArray(v)) calls[i].g.resolve(v[0])
      else calls[i].g.reject(fail(v.code, v.message))
    }
  }

  /** One timer per batch: the calls still unsettled when it fires end in TIMEOUT. Like a call
   * through the core, a pending call keeps the process alive until then. */
  #bound(bound, calls, op, settle) {
    bound.timer = setTimeout(() => {
      for (const call of calls) {
        if (!call.settled) settle(call, fail('TIMEOUT', native.adapterTimeoutMessage(op, call.key, this.#timeoutMs)))
      }
    }, this.#timeoutMs)
  }
}

/** Calls `method(key[, value])` of an adapter: its result (or what its promise resolves to)
 * goes to `ok`, a synchronous throw or a rejection to `failed`. */
function callAdapter(method, key, value, ok, failed) {
  let result
  try {
    result = value === undefined ? method(key) : method(key, value)
  } catch (err) {
    failed(err)
    return
  }
  if (result !== null && typeof result === 'object' && typeof result.then === 'function') result.then(ok, failed)
  else ok(result)
}

/** Marks a direct call settled; false if it already was. The last call of a batch to settle
 * clears the batch's timer. */
function settleOnce(call) {
  if (call.settled) return false
  call.settled = true
  if (--call.bound.remaining === 0) clearTimeout(call.bound.timer)
  return true
}

/** ADAPTER, in the core's words, with the adapter's error as `cause`. */
function adapterFailure(op, key, err) {
  const message = err instanceof Error ? err.message : describe(err)
  return fail('ADAPTER', native.adapterFailureMessage(op, key, message), err)
}

class KV {
  #n
  /** Sets issued in the current tick, sent to the native layer as one call (one thread hop
   * and, on SQLite, one group commit for all of them). */
  #pendingSets = []
  /** Custom adapters: plain gets and sets made from this thread (see DirectKv), else null. */
  #direct
  constructor(nativeStore, direct = null) {
    this.#n = nativeStore
    this.#direct = direct
  }

  #flushSets = () => {
    const batch = this.#pendingSets
    this.#pendingSets = []
    if (this.#direct !== null) {
      try {
        this.#direct.sets(batch, (deferred) => this.#sendSets(deferred, setOps(deferred)))
      } catch (err) {
        const e = fromNative(err)
        for (const op of batch) op.reject(e)
      }
      return
    }
    this.#sendSets(batch, setOps(batch))
  }

  async #sendSets(batch, ops) {
    let results
    try {
      // Committed right here when the backend can do it without waiting (SQLite with an idle
      // writer, Postgres on the lane of an idle store: no thread hop at all), else off this
      // thread. U+0001 and a number: sent here, still running past the time budget.
      let text = this.#n.kvSetBatchNow(ops)
      if (text === null) text = await this.#n.kvSetBatch(ops)
      else if (text.charCodeAt(0) === 1) text = await this.#n.kvSetBatchLater(Number(text.slice(1)))
      results = JSON.parse(text)
    } catch (err) {
      const e = fromNative(err)
      for (const op of batch) op.reject(e)
      return
    }
    settleEach(batch, results)
  }

  /** One entry or null; answered on this thread when the backend can (no thread hop), else
   * batched with the other gets of this tick into one native call. */
  async #entry(key, tryNow = true) {
    str('key', key)
    if (tryNow) {
      const now = this.#n.kvGetManyNow([key])
      if (now !== null) return JSON.parse(now)[0]
    }
    return new Promise((resolve, reject) => {
      if (this.#pendingGets.push({ key, resolve, reject }) === 1) queueMicrotask(this.#flushGets)
    })
  }

  #pendingGets = []
  #flushGets = async () => {
    const batch = this.#pendingGets
    this.#pendingGets = []
    try {
      const entries = JSON.parse(await this.#n.kvGetMany(batch.map((g) => g.key)))
      batch.forEach((g, i) => g.resolve(entries[i]))
    } catch (err) {
      const e = fromNative(err)
      for (const g of batch) g.reject(e)
    }
  }

  get(key) {
    // The common case without an async frame: string keys, the gets of one tick answered on
    // this thread in one native call (one read transaction on SQLite).
    if (typeof key === 'string' && key.isWellFormed()) {
      return new Promise((resolve, reject) => {
        if (this.#pendingValueGets.push({ key, resolve, reject }) === 1) queueMicrotask(this.#flushValueGets)
      })
    }
    return guard(async () => {
      const entry = await this.#entry(key)
      return entry === null ? undefined : entry.value
    })
  }

  #pendingValueGets = []
  #flushValueGets = () => {
    const batch = this.#pendingValueGets
    this.#pendingValueGets = []
    this.#getValues(batch)
  }

  #getValues(batch) {
    let text
    try {
      if (this.#direct !== null) {
        this.#direct.gets(batch, (g) => this.#getValuesAsync([g]))
        return
      }
      text = this.#n.kvGetValuesNow(batch.map((g) => g.key))
    } catch (err) {
      if (batch.length === 1) batch[0].reject(fromNative(err))
      // One bad key must not fail the others: retry them one at a time.
      else for (const g of batch) this.#getValues([g])
      return
    }
    if (text === null) {
      // The async path, called now (not from a later microtask), so gets issued before
      // close() reach the core before close does.
      this.#getValuesAsync(batch)
      return
    }
    const values = JSON.parse(text)
    for (let i = 0; i < batch.length; i++) {
      const v = values[i]
      batch[i].resolve(v === 0 ? undefined : v[0])
    }
  }

  #getValuesAsync(batch) {
    this.#n.kvGetMany(batch.map((g) => g.key)).then(
      (json) => {
        const entries = JSON.parse(json)
        batch.forEach((g, i) => g.resolve(entries[i] === null ? undefined : entries[i].value))
      },
      (err) => {
        const e = fromNative(err)
        for (const g of batch) g.reject(e)
      },
    )
  }

  getMany(keys) {
    return guard(async () => {
      if (!Array.isArray(keys)) throw fail('INVALID_ARGUMENT', `keys must be an array of strings, got ${describe(keys)}`)
      keys.forEach((k, i) => str(`keys[${i}]`, k))
      if (keys.length === 0) return []
      const now = this.#n.kvGetManyNow(keys)
      return JSON.parse(now ?? (await this.#n.kvGetMany(keys))).map((e) => (e === null ? undefined : e.value))
    })
  }

  getEntry(key) {
    return guard(async () => {
      const entry = await this.#entry(key)
      return entry === null ? undefined : toKvEntry(entry)
    })
  }

  set(key, value, options) {
    // The common case without an async frame (as in get): a string key and no options.
    if (typeof key === 'string' && options === undefined && key.isWellFormed()) {
      let json
      try {
        json = toJson('value', value)
      } catch (err) {
        return Promise.reject(err)
      }
      return this.#queueSet(key, json, null, null, false)
    }
    return guard(async () => {
      str('key', key)
      const o = opts('options', options)
      const json = toJson('value', value)
      const ttl = optNum('ttl', o.ttl)
      let ifVersion = null
      const ifAbsent = o.ifVersion === null
      if (o.ifVersion !== undefined && o.ifVersion !== null) ifVersion = str('ifVersion', o.ifVersion)
      if (ttl !== null && !Number.isFinite(ttl)) throw fail('INVALID_ARGUMENT', `ttl must be a positive number of milliseconds, got ${ttl}`)
      return this.#queueSet(key, json, ttl, ifVersion, ifAbsent)
    })
  }

  /** A set joins this tick's batch (flushed once, in a microtask). */
  #queueSet(key, json, ttl, ifVersion, ifAbsent) {
    return new Promise((resolve, reject) => {
      if (this.#pendingSets.push({ key, json, ttl, ifVersion, ifAbsent, resolve, reject }) === 1) queueMicrotask(this.#flushSets)
    })
  }

  setMany(entries) {
    return guard(async () => {
      if (!Array.isArray(entries)) throw fail('INVALID_ARGUMENT', `entries must be an array, got ${describe(entries)}`)
      const n = entries.length
      if (n === 0) return
      const keys = new Array(n)
      const values = new Array(n)
      let ttls = null
      for (let i = 0; i < n; i++) {
        // The checks' messages (which name the entry) are only built for an entry that fails.
        let e = entries[i]
        if (e === null || typeof e !== 'object' || Array.isArray(e)) e = opts(`entries[${i}]`, e)
        const key = e.key
        keys[i] = typeof key === 'string' && key.isWellFormed() ? key : str(`entries[${i}].key`, key)
        let json
        try {
          json = JSON.stringify(e.value)
        } catch {}
        if (json !== undefined) checkWellFormed(`entries[${i}].value`, json)
        values[i] = json !== undefined ? json : toJson(`entries[${i}].value`, e.value)
        if (e.ttl !== undefined && e.ttl !== null) {
          ttls ??= new Array(n).fill(null)
          ttls[i] = optNum(`entries[${i}].ttl`, e.ttl)
        }
      }
      // Two strings cross instead of 2n: keys as JSON, values joined by NUL (which
      // JSON.stringify never writes raw).
      await this.#n.kvSetMany(JSON.stringify(keys), values.join('\0'), ttls)
    })
  }

  delete(key, options) {
    return guard(async () => {
      str('key', key)
      const o = opts('options', options)
      return this.#n.kvDelete(key, optStr('ifVersion', o.ifVersion))
    })
  }

  has(key) {
    return guard(async () => (await this.#entry(key)) !== null)
  }

  list(options) {
    const n = this.#n
    return paged(async function* () {
      const o = opts('options', options)
      const prefix = optStr('prefix', o.prefix) ?? ''
      const start = optStr('start', o.start)
      const end = optStr('end', o.end)
      const reverse = Boolean(o.reverse)
      let remaining = optLimit(o.limit)
      // A page's first line is [count, lastKey]: the next page is asked for (on a reader
      // thread) before this one is parsed, so reading it overlaps parsing and consuming this
      // one. At most one page is read ahead; the first one is small so the overlap starts soon.
      let want = Math.min(KV_FIRST_PAGE, remaining)
      let text = n.kvListPageNow(prefix, start, end, reverse, null, want) ?? (await n.kvListPage(prefix, start, end, reverse, null, want))
      for (;;) {
        const nl = text.indexOf('\n')
        const [count, last] = JSON.parse(text.slice(0, nl))
        remaining -= count
        let next = null
        if (count === want && remaining > 0) {
          want = Math.min(KV_PAGE, remaining)
          next = n.kvListPage(prefix, start, end, reverse, last, want)
          // Handled when awaited; if the caller stops early it is simply dropped.
          next.catch(() => {})
        }
        yield JSON.parse(text.slice(nl + 1))
        if (next === null) return
        text = await next
      }
    })
  }
}

// ---- records ----

/** The documents of a find page, which comes as one flat array: the page's distinct times, then
 * five values a document with its times as indexes into them (`json::doc_page` in
 * src/napi/json.rs: less text to parse than objects with their keys, each time parsed once);
 * the objects are built here, all with one shape. */
function docsOfPage(text) {
  const flat = JSON.parse(text)
  const times = flat[0]
  const docs = new Array((flat.length - 1) / 5)
  for (let i = 0, j = 1; j < flat.length; i++, j += 5) {
    docs[i] = { id: flat[j], version: flat[j + 1], createdAt: times[flat[j + 2]], updatedAt: times[flat[j + 3]], data: flat[j + 4] }
  }
  return docs
}

/** The `records.put` calls of one tick, sent to the native layer as one call where the backend
 * writes them together (`recPutsBatched`; Postgres: one statement for the plain ones, see
 * `records::put_each`). A tick with one put sends it alone, as before. */
class RecordPuts {
  #n
  #pending = []
  constructor(nativeStore) {
    this.#n = nativeStore
  }

  queue(coll, id, json, ifVersion, ifAbsent) {
    return new Promise((resolve, reject) => {
      if (this.#pending.push({ coll, id, json, ifVersion, ifAbsent, resolve, reject }) === 1) queueMicrotask(this.#flush)
    })
  }

  #flush = async () => {
    const batch = this.#pending
    this.#pending = []
    if (batch.length === 1) {
      const p = batch[0]
      try {
        p.resolve(JSON.parse(await this.#n.recPut(p.coll, p.id, p.json, p.ifVersion, p.ifAbsent)))
      } catch (err) {
        p.reject(fromNative(err))
      }
      return
    }
    let results
    try {
      const n = batch.length
      const colls = new Array(n)
      const ids = new Array(n)
      const jsons = new Array(n)
      const ifVersions = new Array(n)
      const ifAbsents = new Array(n)
      for (let i = 0; i < n; i++) {
        const p = batch[i]
        colls[i] = p.coll
        ids[i] = p.id
        jsons[i] = p.json
        ifVersions[i] = p.ifVersion
        ifAbsents[i] = p.ifAbsent
      }
      results = JSON.parse(await this.#n.recPutBatch(colls, ids, jsons, ifVersions, ifAbsents))
    } catch (err) {
      const e = fromNative(err)
      for (const p of batch) p.reject(e)
      return
    }
    settleEach(batch, results)
  }
}

class Collection {
  #n
  #name
  /** The store's RecordPuts, or null when puts go one by one. */
  #puts
  constructor(nativeStore, name, puts) {
    this.#n = nativeStore
    this.#name = name
    this.#puts = puts
  }

  get name() {
    return this.#name
  }

  insert(data, options) {
    return guard(async () => {
      const o = opts('options', options)
      const json = docJson('data', data)
      return JSON.parse(await this.#n.recInsert(str('collection name', this.#name), json, optStr('id', o.id)))
    })
  }

  put(id, data, options) {
    return guard(async () => {
      str('id', id)
      const o = opts('options', options)
      const json = docJson('data', data)
      const ifAbsent = o.ifVersion === null
      const ifVersion = ifAbsent ? null : optNum('ifVersion', o.ifVersion)
      const coll = str('collection name', this.#name)
      if (this.#puts !== null) return this.#puts.queue(coll, id, json, ifVersion, ifAbsent)
      return JSON.parse(await this.#n.recPut(coll, id, json, ifVersion, ifAbsent))
    })
  }

  get(id) {
    return guard(async () => {
      str('id', id)
      const coll = str('collection name', this.#name)
      const now = this.#n.recGetNow(coll, id)
      if (now !== null) return now === '' ? undefined : JSON.parse(now)
      const doc = await this.#n.recGet(coll, id)
      return doc === null ? undefined : JSON.parse(doc)
    })
  }

  update(id, patch, options) {
    return guard(async () => {
      str('id', id)
      const o = opts('options', options)
      const json = docJson('patch', patch)
      return JSON.parse(await this.#n.recUpdate(str('collection name', this.#name), id, json, optNum('ifVersion', o.ifVersion)))
    })
  }

  delete(id, options) {
    return guard(async () => {
      str('id', id)
      const o = opts('options', options)
      return this.#n.recDelete(str('collection name', this.#name), id, optNum('ifVersion', o.ifVersion))
    })
  }

  find(query) {
    const n = this.#n
    const coll = this.#name
    const producePages = async function* () {
      str('collection name', coll)
      const q = opts('query', query)
      let remaining = optLimit(q.limit)
      const queryJson = toJson('query', { where: q.where, orderBy: q.orderBy, after: q.after })
      let resumeId = null
      let resumeData = null
      while (remaining > 0) {
        const want = Math.min(RECORD_PAGE, remaining)
        const page = docsOfPage(n.recFindPageNow(coll, queryJson, resumeId, resumeData, want) ?? (await n.recFindPage(coll, queryJson, resumeId, resumeData, want)))
        yield page
        if (page.length < want) return
        remaining -= page.length
        const last = page[page.length - 1]
        resumeId = last.id
        resumeData = JSON.stringify(last.data)
      }
    }
    const iterable = paged(producePages)
    // Straight from the pages: no promise per document.
    iterable.toArray = () =>
      guard(async () => {
        const all = []
        for await (const page of producePages()) for (const doc of page) all.push(doc)
        return all
      })
    return iterable
  }

  count(where) {
    return guard(async () => {
      const filter = where === undefined || where === null ? null : toJson('where', opts('where', where))
      return this.#n.recCount(str('collection name', this.#name), filter)
    })
  }

  ensureIndex(field) {
    return guard(async () => this.#n.recEnsureIndex(str('collection name', this.#name), str('field', field)))
  }
}

class Records {
  #n
  #puts
  constructor(nativeStore) {
    this.#n = nativeStore
    this.#puts = nativeStore.recPutsBatched() ? new RecordPuts(nativeStore) : null
  }

  /** Collection names are checked on first use: an invalid name makes every call reject. */
  collection(name) {
    return new Collection(this.#n, name, this.#puts)
  }
}

// ---- blobs ----

function isReadableLike(body) {
  return body !== null && typeof body === 'object' && typeof body[Symbol.asyncIterator] === 'function'
}

function asBuffer(chunk) {
  if (Buffer.isBuffer(chunk)) return chunk
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8')
  return null
}

class BodyError extends Error {}

async function* bodyChunks(body) {
  const whole = asBuffer(body)
  if (whole !== null) {
    for (let at = 0; at < whole.length; at += BLOB_WRITE_SLICE) {
      yield whole.subarray(at, Math.min(whole.length, at + BLOB_WRITE_SLICE))
    }
    return
  }
  if (!isReadableLike(body)) {
    throw fail('INVALID_ARGUMENT', `a blob body must be a Uint8Array, a string, a Readable or an async iterable of Uint8Array, got ${describe(body)}`)
  }
  const iterator = body[Symbol.asyncIterator]()
  for (;;) {
    let step
    try {
      step = await iterator.next()
    } catch (err) {
      throw new BodyError('body', { cause: err })
    }
    if (step.done) return
    const chunk = asBuffer(step.value)
    if (chunk === null) {
      if (typeof iterator.return === 'function') await Promise.resolve(iterator.return()).catch(() => {})
      throw fail('INVALID_ARGUMENT', `a blob body stream must yield Uint8Array chunks, got ${describe(step.value)}`)
    }
    for (let at = 0; at < chunk.length; at += BLOB_WRITE_SLICE) {
      yield chunk.subarray(at, Math.min(chunk.length, at + BLOB_WRITE_SLICE))
    }
  }
}

function rangeArgs(options) {
  const o = opts('options', options)
  if (o.range === undefined || o.range === null) return [0, null]
  const r = opts('range', o.range)
  const start = optNum('range.start', r.start) ?? 0
  return [start, optNum('range.end', r.end)]
}

class Blobs {
  #n
  constructor(nativeStore) {
    this.#n = nativeStore
  }

  put(key, body, options) {
    return guard(async () => {
      str('key', key)
      const o = opts('options', options)
      const contentType = optStr('contentType', o.contentType)
      let metadata = null
      if (o.metadata !== undefined && o.metadata !== null) {
        const m = opts('metadata', o.metadata)
        for (const [k, v] of Object.entries(m)) str(`metadata[${JSON.stringify(k)}]`, v)
        metadata = JSON.stringify(m)
      }
      if (asBuffer(body) === null && !isReadableLike(body)) {
        // Checked before anything is written.
        throw fail('INVALID_ARGUMENT', `a blob body must be a Uint8Array, a string, a Readable or an async iterable of Uint8Array, got ${describe(body)}`)
      }
      const whole = asBuffer(body)
      if (whole !== null && whole.length <= BLOB_WRITE_SLICE) {
        return JSON.parse(await this.#n.blobPutBytes(key, contentType, metadata, whole))
      }
      const upload = await this.#n.blobPut(key, contentType, metadata)
      try {
        for await (const chunk of bodyChunks(body)) await upload.write(chunk)
      } catch (err) {
        await upload.abort().catch(() => {})
        if (err instanceof BodyError) {
          throw fail('INVALID_ARGUMENT', `the blob body stream failed: ${err.cause && err.cause.message}`, err.cause)
        }
        throw err
      }
      return JSON.parse(await upload.commit())
    })
  }

  get(key, options) {
    return guard(async () => {
      str('key', key)
      const [start, end] = rangeArgs(options)
      const body = await this.#n.blobGetBytes(key, start, end)
      return body === null ? undefined : body
    })
  }

  stream(key, options) {
    return guard(async () => {
      str('key', key)
      const [start, end] = rangeArgs(options)
      const reader = await this.#n.blobOpen(key, start, end)
      if (reader === null) throw fail('NOT_FOUND', `blob ${JSON.stringify(key)} does not exist`)
      async function* chunks() {
        try {
          for (let chunk = await reader.next(); chunk !== null; chunk = await reader.next()) yield chunk
        } catch (err) {
          throw fromNative(err)
        }
      }
      return Readable.from(chunks(), { objectMode: false })
    })
  }

  head(key) {
    return guard(async () => {
      str('key', key)
      const info = await this.#n.blobHead(key)
      return info === null ? undefined : JSON.parse(info)
    })
  }

  delete(key) {
    return guard(async () => this.#n.blobDelete(str('key', key)))
  }

  list(options) {
    const n = this.#n
    return paged(async function* () {
      const o = opts('options', options)
      const prefix = optStr('prefix', o.prefix) ?? ''
      let remaining = optLimit(o.limit)
      let after = null
      let pageSize = BLOB_PAGE
      while (remaining > 0) {
        const want = Math.min(pageSize, remaining)
        const page = JSON.parse(await n.blobListPage(prefix, after, want))
        yield page
        if (page.length < want) return
        remaining -= page.length
        after = page[page.length - 1].key
        pageSize = Math.min(BLOB_PAGE_MAX, pageSize * 2)
      }
    })
  }
}

// ---- events ----

function newEvents(events) {
  const list = Array.isArray(events) ? events : [events]
  return list.map((e, i) => {
    const where = Array.isArray(events) ? `events[${i}]` : 'event'
    if (e === null || typeof e !== 'object' || Array.isArray(e)) {
      throw fail('INVALID_ARGUMENT', `${where} must be an object { type, data? }, got ${describe(e)}`)
    }
    str(`${where}.type`, e.type)
    return e.data === undefined ? { type: e.type } : { type: e.type, data: JSON.parse(toJson(`${where}.data`, e.data)) }
  })
}

class Subscription {
  #stop
  constructor(stop) {
    this.#stop = stop
  }

  /** Stops delivery: no handler call starts after this resolves. */
  close() {
    return guard(async () => this.#stop())
  }
}

class Events {
  #n
  #subscriptions
  constructor(nativeStore, subscriptions) {
    this.#n = nativeStore
    this.#subscriptions = subscriptions
  }

  append(stream, events, options) {
    return guard(async () => {
      str('stream', stream)
      const o = opts('options', options)
      const list = newEvents(events)
      const seq = await this.#n.evAppend(stream, JSON.stringify(list), optNum('expectedSeq', o.expectedSeq))
      return { seq }
    })
  }

  read(stream, options) {
    const n = this.#n
    return paged(async function* () {
      str('stream', stream)
      const o = opts('options', options)
      const reverse = Boolean(o.reverse)
      let next = optNum('from', o.from) ?? (reverse ? Number.MAX_SAFE_INTEGER : 1)
      let remaining = optLimit(o.limit)
      while (remaining > 0 && next >= (reverse ? 1 : 0)) {
        const want = Math.min(EVENT_PAGE, remaining)
        const page = JSON.parse(await n.evReadPage(stream, next, reverse, want))
        yield page
        if (page.length < want) return
        remaining -= page.length
        next = page[page.length - 1].seq + (reverse ? -1 : 1)
      }
    })
  }

  subscribe(stream, handler, options) {
    return guard(async () => {
      str('stream', stream)
      if (typeof handler !== 'function') throw fail('INVALID_ARGUMENT', `handler must be a function, got ${describe(handler)}`)
      const o = opts('options', options)
      const onError = o.onError
      if (onError !== undefined && typeof onError !== 'function') throw fail('INVALID_ARGUMENT', 'onError must be a function')
      let from = null // null: the end of the stream
      if (o.from !== 'end') {
        from = optNum('from', o.from) ?? 1
        if (!Number.isInteger(from) || from < 0) throw fail('INVALID_ARGUMENT', `from must be a non-negative integer or "end", got ${describe(o.from)}`)
      }
      const n = this.#n
      let stopped = false
      const report = (err) => {
        if (onError) {
          try {
            onError(err)
          } catch {}
        } else {
          process.emitWarning(`@cuitty/persist: subscription to ${JSON.stringify(stream)} stopped: ${err && err.message}`)
        }
      }
      const stop = () => {
        stopped = true
        this.#subscriptions.delete(stop)
      }
      // Pages come with a cursor from the core, which decides the order: seq order, or on p2p
      // stores arrival order, so events merged in behind ones already delivered still come, once.
      // The first page is read before subscribe resolves, so a bad stream name or a closed
      // store rejects here rather than in the background.
      let first = JSON.parse(await n.evFollowPage(stream, from, null, EVENT_PAGE))
      let cursor = first.cursor
      const run = async () => {
        while (!stopped) {
          let page = first
          first = null
          try {
            page = page ?? JSON.parse(await n.evFollowPage(stream, null, cursor, EVENT_PAGE))
          } catch (err) {
            const e = fromNative(err)
            if (e.code !== 'CLOSED') report(e)
            return stop()
          }
          for (const event of page.events) {
            if (stopped) return
            try {
              await handler(event)
            } catch (err) {
              report(err)
              return stop()
            }
          }
          cursor = page.cursor
          if (page.events.length === 0 && !stopped) {
            try {
              await n.evWait(stream, page.waitAfter, EVENT_WAIT_MS)
            } catch (err) {
              const e = fromNative(err)
              if (e.code !== 'CLOSED') report(e)
              return stop()
            }
          }
        }
      }
      this.#subscriptions.add(stop)
      run()
      return new Subscription(async () => stop())
    })
  }

  streams(options) {
    const n = this.#n
    return paged(async function* () {
      const o = opts('options', options)
      const prefix = optStr('prefix', o.prefix) ?? ''
      let after = null
      for (;;) {
        const page = JSON.parse(await n.evStreamsPage(prefix, after, STREAM_PAGE))
        yield page
        if (page.length < STREAM_PAGE) return
        after = page[page.length - 1]
      }
    })
  }
}

// ---- the store ----

const asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')

// ---- store.sync (p2p stores) ----

const SYNC_EVENTS = ['peer', 'synced']

class Sync {
  #n
  #listeners = new Map(SYNC_EVENTS.map((e) => [e, new Set()]))
  #pumping = false
  constructor(nativeStore) {
    this.#n = nativeStore
    this.peerId = nativeStore.syncPeerId()
    Object.freeze(this)
  }

  peers() {
    return guard(async () => JSON.parse(await this.#n.syncPeers()))
  }

  waitFor(options = {}) {
    return guard(async () => {
      if (options === null || typeof options !== 'object') {
        throw fail('INVALID_ARGUMENT', `sync.waitFor options must be an object, got ${describe(options)}`)
      }
      const peers = optNum('peers', options.peers) ?? 1
      const timeoutMs = optNum('timeoutMs', options.timeoutMs) ?? 30000
      if (!Number.isInteger(peers) || peers < 0) throw fail('INVALID_ARGUMENT', `peers must be a non-negative integer, got ${peers}`)
      if (!(timeoutMs >= 0)) throw fail('INVALID_ARGUMENT', `timeoutMs must be a non-negative number, got ${timeoutMs}`)
      await this.#n.syncWaitFor(peers, timeoutMs)
    })
  }

  /** Calls `listener(peerId)` on each "peer" (connected) or "synced" (caught up) event; returns
   * the function that removes it. A listener that throws is reported as a process warning. */
  on(event, listener) {
    if (!SYNC_EVENTS.includes(event)) throw fail('INVALID_ARGUMENT', `sync.on: event must be "peer" or "synced", got ${describe(event)}`)
    if (typeof listener !== 'function') throw fail('INVALID_ARGUMENT', `sync.on: listener must be a function, got ${describe(listener)}`)
    const set = this.#listeners.get(event)
    const entry = (peerId) => listener(peerId)
    set.add(entry)
    this.#pump()
    return () => { set.delete(entry) }
  }

  #listening() {
    for (const set of this.#listeners.values()) if (set.size > 0) return true
    return false
  }

  async #pump() {
    if (this.#pumping) return
    this.#pumping = true
    try {
      while (this.#listening() && !this.#n.closed) {
        let raw
        try { raw = await this.#n.syncNextEvent(EVENT_WAIT_MS) } catch { break }
        if (raw === null || raw === undefined) continue
        const { event, peerId } = JSON.parse(raw)
        for (const l of [...(this.#listeners.get(event) ?? [])]) {
          // A throwing listener must not take the process down (nor stop the others).
          try { l(peerId) } catch (err) { process.emitWarning(`@cuitty/persist: a sync.on("${event}") listener threw: ${err && err.message}`) }
        }
      }
    } finally {
      this.#pumping = false
    }
  }
}

class Store {
  #n
  #subscriptions = new Set()
  /** `adapter`: the user's custom adapter object, if any. */
  constructor(nativeStore, adapter = null) {
    this.#n = nativeStore
    this.name = nativeStore.name
    this.adapter = nativeStore.adapter
    this.records = new Records(nativeStore)
    const timeoutMs = adapter ? nativeStore.kvDirectTimeoutMs() : null
    this.kv = new KV(nativeStore, timeoutMs === null ? null : new DirectKv(nativeStore, adapter, timeoutMs))
    this.blobs = new Blobs(nativeStore)
    this.events = new Events(nativeStore, this.#subscriptions)
    if (this.adapter === 'p2p') this.sync = new Sync(nativeStore)
    Object.freeze(this)
  }

  close() {
    return guard(async () => {
      // Let calls batched in this tick (kv sets and gets, record puts) reach the core before close does.
      await null
      for (const stop of [...this.#subscriptions]) stop()
      await this.#n.close()
    })
  }

  [asyncDispose]() {
    return this.close()
  }

  [util.inspect.custom]() {
    return `Store { name: ${JSON.stringify(this.name)}, adapter: ${JSON.stringify(this.adapter)} }`
  }
}

// ---- custom adapters ----

const LIST_PAGE = 256

class AdapterShapeError extends TypeError {}

/** The adapter's `list(prefix)` result as an iterator, whatever of the allowed shapes it is. */
async function openList(list, prefix) {
  let result = list(prefix)
  if (result !== null && typeof result === 'object' && typeof result.then === 'function') result = await result
  if (result === undefined || result === null) return [][Symbol.iterator]()
  if (typeof result[Symbol.asyncIterator] === 'function') return result[Symbol.asyncIterator]()
  if (typeof result === 'object' && typeof result[Symbol.iterator] === 'function') return result[Symbol.iterator]()
  throw new AdapterShapeError(`list() must return an async iterable, an iterable, an array or nothing; it returned ${describe(result)}`)
}

// Calls arrive as one JSON text per batch, replies go back as one JSON text per tick; the
// encoding is documented in src/napi/js_adapter.rs.

/** The reply to a `get`: `[id]` for absent, `[id, 1, value]`, or `[id, 2, buffer]` (the buffer
 * is swapped for its index when the replies are sent). */
function valueReply(id, value, method) {
  if (value === undefined || value === null) return [id]
  if (value instanceof Uint8Array) return [id, 2, Buffer.from(value.buffer, value.byteOffset, value.byteLength)]
  if (typeof value !== 'object') throw new AdapterShapeError(`${method} returned ${describe(value)}, which is not a JSON object`)
  return [id, 1, value]
}

function failedReply(id, err) {
  const message = err instanceof Error ? err.message : describe(err)
  return [id, 3, message, keepCause(err)]
}

/**
 * The function that runs one call of a batch against the user's adapter. It never throws:
 * every failure (a sync throw, a rejection, a result of the wrong shape) becomes a failed reply.
 */
function adapterDispatcher(adapter) {
  const get = adapter.get.bind(adapter)
  const put = adapter.put.bind(adapter)
  const del = adapter.delete.bind(adapter)
  const list = adapter.list.bind(adapter)
  const lists = new Map()
  let nextList = 1
  return async (call, bytes) => {
    const [id, op, key, arg] = call
    try {
      switch (op) {
        case 'get':
          return valueReply(id, await get(key), 'get()')
        case 'put':
          await put(key, arg)
          return [id]
        case 'putBytes':
          await put(key, bytes[arg])
          return [id]
        case 'delete':
          await del(key)
          return [id]
        case 'listOpen': {
          const listId = nextList++
          lists.set(listId, await openList(list, key))
          return [id, 4, listId]
        }
        case 'listNext': {
          const iterator = lists.get(arg)
          if (!iterator) return [id, 5, [], true]
          const items = []
          let done = false
          while (items.length < LIST_PAGE) {
            const step = await iterator.next()
            if (step.done) {
              done = true
              break
            }
            const item = step.value
            if (item === null || typeof item !== 'object' || typeof item.key !== 'string') {
              throw new AdapterShapeError(`list() must yield { key: string, value } objects; it yielded ${describe(item)}`)
            }
            if (!item.key.startsWith(key)) continue
            items.push([item.key, item.value === undefined ? null : item.value])
          }
          if (done) lists.delete(arg)
          return [id, 5, items, done]
        }
        case 'listClose': {
          const iterator = lists.get(arg)
          lists.delete(arg)
          if (iterator && typeof iterator.return === 'function') await iterator.return()
          return [id]
        }
        default:
          return [id, 3, `unknown adapter call ${op}`, null]
      }
    } catch (err) {
      if (op === 'listNext') lists.delete(arg)
      return failedReply(id, err)
    }
  }
}

// Replies of settled adapter calls, sent to the native layer once per tick.
let pendingReplies = []

function flushReplies() {
  const replies = pendingReplies
  pendingReplies = []
  const bytes = []
  for (const reply of replies) {
    if (reply[1] === 2) reply[2] = bytes.push(reply[2]) - 1
  }
  let text
  try {
    text = JSON.stringify(replies)
  } catch {
    // Some value is not JSON (a BigInt, a cycle): that call fails, the others go through.
    text = '[' + replies.map(replyJson).join(',') + ']'
  }
  native.adapterReplies(text, bytes)
}

function replyJson(reply) {
  try {
    return JSON.stringify(reply)
  } catch (err) {
    const cause = new AdapterShapeError(`the adapter returned a value that is not JSON: ${err.message}`, { cause: err })
    return JSON.stringify(failedReply(reply[0], cause))
  }
}

/** The function the native layer calls with a batch of adapter calls; each reply goes back as
 * soon as its call settles, so a slow call delays no other. */
function batchDispatcher(adapter) {
  const one = adapterDispatcher(adapter)
  const settled = (reply) => {
    if (reply[0] === 0) return
    if (pendingReplies.push(reply) === 1) queueMicrotask(flushReplies)
  }
  return (batch) => {
    for (const call of JSON.parse(batch.calls)) one(call, batch.bytes).then(settled)
  }
}

/** The config the core validates: JSON, with a custom adapter object replaced by a marker. */
function configJson(config) {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw fail('INVALID_CONFIG', `createStore: the config must be an object, got ${describe(config)}`)
  }
  const plain = { ...config }
  if (plain.adapter !== null && typeof plain.adapter === 'object') {
    const a = plain.adapter
    plain.adapter = { $custom: Object.fromEntries(['get', 'put', 'delete', 'list'].map((m) => [m, typeof a[m] === 'function'])) }
  }
  try {
    return JSON.stringify(plain)
  } catch (err) {
    throw fail('INVALID_CONFIG', `createStore: the config cannot be read: ${err.message}`, err)
  }
}

function createStore(config) {
  return guard(async () => {
    if (!native) throw fail('INTERNAL', `the native addon of @cuitty/persist could not be loaded: ${loadError && loadError.message}`, loadError)
    const json = configJson(config)
    const adapter = config.adapter
    if (adapter !== null && typeof adapter === 'object' && ['get', 'put', 'delete', 'list'].every((m) => typeof adapter[m] === 'function')) {
      return new Store(await native.openCustomStore(json, process.cwd(), batchDispatcher(adapter)), adapter)
    }
    return new Store(await native.openStore(json, process.cwd()))
  })
}

module.exports.createStore = createStore
module.exports.PersistError = PersistError
