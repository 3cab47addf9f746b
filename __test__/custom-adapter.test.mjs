// Custom JS adapters beyond the conformance suite: every way an adapter can misbehave, the
// shapes `list` may return, `this`, concurrency, a hanging adapter, and what the adapter sees.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createStore, PersistError } from "@cuitty/persist";
import { mapAdapter } from "./support/custom-adapters.mjs";

let n = 0;
const name = () => `custom-${process.pid}-${n++}`;

async function rejectsWith(promise, code, check) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof PersistError, `expected a PersistError, got ${err}`);
    assert.equal(err.code, code, err.message);
    if (check) check(err);
    return err;
  }
  assert.fail(`expected a rejection with ${code}`);
}

test("the docs snippet's placeholder adapter gives a working, empty store", async () => {
  const myAdapter = {
    async get(key) { /* ... */ },
    async put(key, value) { /* ... */ },
    async delete(key) { /* ... */ },
    async list(prefix) { /* ... */ },
  };
  const store = await createStore({ name: "my-app", adapter: myAdapter });
  assert.equal(store.adapter, "custom");
  assert.equal(await store.kv.get("a"), undefined);
  await store.kv.set("a", 1);
  assert.equal(await store.kv.has("a"), false);
  assert.deepEqual(await store.records.collection("c").find().toArray(), []);
  assert.equal(await store.records.collection("c").count(), 0);
  const keys = [];
  for await (const e of store.kv.list()) keys.push(e.key);
  assert.deepEqual(keys, []);
  assert.equal(await store.blobs.head("b"), undefined);
  const events = [];
  for await (const e of store.events.read("s")) events.push(e);
  assert.deepEqual(events, []);
  await store.close();
});

test("a missing method is INVALID_CONFIG naming the first one missing", async () => {
  await rejectsWith(createStore({ name: name(), adapter: { get() {}, delete() {}, list() {} } }), "INVALID_CONFIG", (e) =>
    assert.match(e.message, /adapter\.put/));
  await rejectsWith(createStore({ name: name(), adapter: {} }), "INVALID_CONFIG", (e) => assert.match(e.message, /adapter\.get/));
  await rejectsWith(createStore({ name: name(), adapter: { get() {}, put() {}, delete() {}, list: 1 } }), "INVALID_CONFIG", (e) =>
    assert.match(e.message, /adapter\.list/));
});

for (const [label, get] of [
  ["a synchronous throw", () => { throw new Error("sync boom"); }],
  ["a rejected promise", async () => { throw new Error("async boom"); }],
  ["a rejection with a non-Error", () => Promise.reject("just a string")],
]) {
  test(`${label} in get becomes ADAPTER with the original as cause`, async () => {
    const adapter = { ...mapAdapter(), get };
    const store = await createStore({ name: name(), adapter });
    const err = await rejectsWith(store.kv.get("k"), "ADAPTER");
    let thrown;
    try { await get(); } catch (e) { thrown = e; }
    if (thrown instanceof Error) assert.equal(err.cause.message, thrown.message);
    else assert.equal(err.cause, thrown);
    await store.close();
  });
}

test("a throwing put writes nothing and rejects with ADAPTER; the store carries on", async () => {
  const map = new Map();
  let fail = true;
  const base = mapAdapter(map);
  const adapter = { ...base, async put(k, v) { if (fail) throw new TypeError("disk full"); return base.put(k, v); } };
  const store = await createStore({ name: name(), adapter });
  const err = await rejectsWith(store.kv.set("k", 1), "ADAPTER");
  assert.ok(err.cause instanceof TypeError);
  assert.equal(map.size, 0);
  fail = false;
  await store.kv.set("k", 2);
  assert.equal(await store.kv.get("k"), 2);
});

test("setMany is all or nothing when the adapter fails midway", async () => {
  const map = new Map();
  const base = mapAdapter(map);
  let puts = 0;
  const adapter = { ...base, async put(k, v) { if (++puts === 3) throw new Error("third put fails"); return base.put(k, v); } };
  const store = await createStore({ name: name(), adapter });
  await rejectsWith(store.kv.setMany([1, 2, 3, 4].map((i) => ({ key: `k${i}`, value: i }))), "ADAPTER");
  assert.deepEqual(await store.kv.getMany(["k1", "k2", "k3", "k4"]), [undefined, undefined, undefined, undefined]);
});

test("a failed setMany puts keys back only once their writes have settled; a key it could not put back is named in the error", async () => {
  const map = new Map();
  const base = mapAdapter(map);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  let mode = "slow-a";
  let refuseB = false; // once: the new value of b, not its old one put back
  const adapter = {
    ...base,
    async put(k, v) {
      if (mode === "slow-a" && k === "kv/a") { await sleep(300); return base.put(k, v); } // lands after b failed
      if (refuseB && k === "kv/b") { refuseB = false; throw new Error("b refused"); }
      if (mode === "flapping" && k === "kv/a") { mode = "down"; return base.put(k, v); }
      if (mode === "down") throw new Error("adapter down");
      return base.put(k, v);
    },
  };
  const store = await createStore({ name: name(), adapter });
  mode = "ok";
  await store.kv.setMany([{ key: "a", value: "old" }, { key: "b", value: "old" }]);
  mode = "slow-a";
  refuseB = true;
  await rejectsWith(store.kv.setMany([{ key: "a", value: "new" }, { key: "b", value: "new" }]), "ADAPTER", (e) =>
    assert.doesNotMatch(e.message, /could not be put back/));
  await sleep(400);
  assert.deepEqual(await store.kv.getMany(["a", "b"]), ["old", "old"]);
  // The write of a lands, b's fails, and then the adapter refuses to put a back.
  mode = "flapping";
  refuseB = true;
  await rejectsWith(store.kv.setMany([{ key: "a", value: "new" }, { key: "b", value: "new" }]), "ADAPTER", (e) =>
    assert.match(e.message, /b refused.*2 of its keys could not be put back/));
  mode = "ok";
  assert.deepEqual(await store.kv.getMany(["a", "b"]), ["new", "old"]);
});

test("results of the wrong type become ADAPTER", async () => {
  for (const bad of [() => () => 1, () => Symbol("s"), () => 10n]) {
    const store = await createStore({ name: name(), adapter: { ...mapAdapter(), async get() { return bad(); } } });
    await rejectsWith(store.kv.get("k"), "ADAPTER");
  }
  const store = await createStore({ name: name(), adapter: { ...mapAdapter(), async get() { return { not: "an envelope" }; } } });
  await rejectsWith(store.kv.get("k"), "ADAPTER");
});

test("list may return an async iterable, an iterable, an array, a promise of those, or nothing", async () => {
  const entries = () => [...map].filter(([k]) => k.startsWith(currentPrefix)).map(([key, value]) => ({ key, value }));
  const map = new Map();
  let currentPrefix = "";
  const shapes = {
    "async generator": async function* () { yield* entries(); },
    "sync generator": function* () { yield* entries(); },
    array: () => entries(),
    "promise of array": async () => entries(),
    "promise of async iterable": async () => (async function* () { yield* entries(); })(),
    "promise of iterable": async () => new Set(entries()),
  };
  for (const [label, shape] of Object.entries(shapes)) {
    map.clear();
    const base = mapAdapter(map);
    const store = await createStore({ name: name(), adapter: { ...base, list(prefix) { currentPrefix = prefix; return shape(); } } });
    await store.kv.setMany([{ key: "b", value: 2 }, { key: "a", value: 1 }, { key: "c", value: 3 }]);
    const seen = [];
    for await (const e of store.kv.list()) seen.push([e.key, e.value]);
    assert.deepEqual(seen, [["a", 1], ["b", 2], ["c", 3]], label);
  }
  for (const nothing of [() => undefined, async () => undefined, () => null]) {
    const store = await createStore({ name: name(), adapter: { ...mapAdapter(), list: nothing } });
    const seen = [];
    for await (const e of store.kv.list()) seen.push(e);
    assert.deepEqual(seen, []);
  }
});

test("list returning something else, or yielding malformed items, rejects the read with ADAPTER", async () => {
  for (const bad of [() => 5, () => "abc", async () => ({}), () => [{ nokey: 1 }], async function* () { yield 7; }, () => { throw new Error("list boom"); }]) {
    const store = await createStore({ name: name(), adapter: { ...mapAdapter(), list: bad } });
    const iterate = (async () => { for await (const _ of store.kv.list()) { /* drain */ } })();
    await rejectsWith(iterate, "ADAPTER");
    await rejectsWith(store.records.collection("c").find().toArray(), "ADAPTER");
  }
});

test("methods are called with `this` bound to the adapter object", async () => {
  class ClassAdapter {
    constructor() { this.map = new Map(); }
    async get(k) { return this.map.get(k); }
    async put(k, v) { this.map.set(k, v); }
    async delete(k) { this.map.delete(k); }
    *list(prefix) { for (const [key, value] of this.map) if (key.startsWith(prefix)) yield { key, value }; }
  }
  const adapter = new ClassAdapter();
  const store = await createStore({ name: name(), adapter });
  await store.kv.set("x", { y: 1 });
  assert.deepEqual(await store.kv.get("x"), { y: 1 });
  assert.ok(adapter.map.size > 0);
});

test("2,000 concurrent calls all succeed and reach the adapter concurrently", async () => {
  const base = mapAdapter();
  let inFlight = 0;
  let maxInFlight = 0;
  const track = (fn) => async (...args) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise((r) => setImmediate(r));
    try { return await fn(...args); } finally { inFlight--; }
  };
  const adapter = { get: track(base.get), put: track(base.put), delete: track(base.delete), list: base.list };
  const store = await createStore({ name: name(), adapter });
  await Promise.all(Array.from({ length: 1000 }, (_, i) => store.kv.set(`k${i}`, { i })));
  const values = await Promise.all(Array.from({ length: 1000 }, (_, i) => store.kv.get(`k${i}`)));
  values.forEach((v, i) => assert.deepEqual(v, { i }));
  assert.ok(maxInFlight > 1, `calls were serialised (max in flight ${maxInFlight})`);
});

test("a hanging adapter times out, blocks neither the event loop nor other stores, and close() returns", async () => {
  const hanging = { ...mapAdapter(), get: () => new Promise(() => {}) };
  const stuck = await createStore({ name: name(), adapter: hanging, timeoutMs: 300 });
  const healthy = await createStore({ name: name(), adapter: mapAdapter() });
  const pending = stuck.kv.get("k");
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  await healthy.kv.set("k", 1);
  assert.equal(await healthy.kv.get("k"), 1);
  await rejectsWith(pending, "TIMEOUT", (e) => assert.match(e.message, /did not settle within 300 ms/));
  clearInterval(timer);
  assert.ok(ticks >= 5, `the event loop stalled (${ticks} ticks)`);
  const again = stuck.kv.get("other");
  await stuck.close();
  await rejectsWith(stuck.kv.get("k"), "CLOSED");
  // A call that races with close() settles either way: it reached the adapter before close and
  // times out, or close won and it rejects with CLOSED; it never stays pending.
  const raced = await again.then(() => assert.fail("a get of a hanging adapter resolved"), (e) => e);
  assert.ok(["TIMEOUT", "CLOSED"].includes(raced.code), `${raced.code}: ${raced.message}`);
  await healthy.close();
});

test("plain sets stay ordered with compare-and-set, update and setMany on the same key, and a timed-out put frees its key", async () => {
  const base = mapAdapter();
  let hang = false;
  const adapter = { ...base, put: (k, v) => (hang ? new Promise(() => {}) : base.put(k, v)) };
  const store = await createStore({ name: name(), adapter, timeoutMs: 300 });
  // One tick: a plain set, a compare-and-set on what it will have written, another plain set.
  const first = store.kv.set("k", 1);
  const firstEntry = await first;
  const [cas, plain] = await Promise.allSettled([store.kv.set("k", 2, { ifVersion: firstEntry.version }), store.kv.set("k", 3)]);
  assert.equal(cas.status, "fulfilled", cas.reason?.message);
  assert.equal(plain.status, "fulfilled", plain.reason?.message);
  assert.equal(await store.kv.get("k"), 3, "the sets of one tick land in the order they were made");
  const entry = await store.kv.getEntry("k");
  assert.equal(entry.version, plain.value.version);
  assert.deepEqual(Object.keys(plain.value), ["key", "value", "version"]);
  const ttl = await store.kv.set("t", { a: [1] }, { ttl: 60000 });
  assert.deepEqual(ttl.value, { a: [1] });
  assert.ok(Date.parse(ttl.expiresAt) > Date.now());
  // setMany and a plain set of one of its keys, issued together: each is whole.
  await Promise.all([store.kv.setMany([{ key: "m1", value: "many" }, { key: "m2", value: "many" }]), store.kv.set("m1", "one")]);
  assert.ok(["many", "one"].includes(await store.kv.get("m1")));
  assert.equal(await store.kv.get("m2"), "many");
  // A put that never settles: TIMEOUT, and the key is free again afterwards.
  hang = true;
  const stuck = store.kv.set("h", 1);
  const behind = store.kv.set("h", 2, { ifVersion: null });
  await rejectsWith(stuck, "TIMEOUT", (e) => assert.match(e.message, /put\("kv\/h"\) did not settle within 300 ms/));
  await rejectsWith(behind, "TIMEOUT");
  hang = false;
  await store.kv.set("h", 3);
  assert.equal(await store.kv.get("h"), 3);
  await store.close();
});

test("a get that returns something other than a record, or a record that is not a kv entry, is an error, never a value", async () => {
  const base = mapAdapter();
  const adapter = { ...base, get: async (k) => (k === "kv/str" ? "text" : k === "kv/odd" ? { not: "an entry" } : k === "kv/big" ? { value: 1n } : base.get(k)) };
  const store = await createStore({ name: name(), adapter });
  await store.kv.set("fine", 1);
  const [str, odd, big, fine] = await Promise.allSettled(["str", "odd", "big", "fine"].map((k) => store.kv.get(k)));
  assert.equal(str.reason?.code, "ADAPTER");
  assert.ok(str.reason.cause instanceof TypeError);
  assert.notEqual(odd.reason?.code, undefined, "a record without version is refused");
  assert.equal(big.reason?.code, "ADAPTER");
  assert.deepEqual(fine, { status: "fulfilled", value: 1 });
  await store.close();
});

test("timeoutMs must be a positive integer", async () => {
  await rejectsWith(createStore({ name: name(), adapter: mapAdapter(), timeoutMs: 0 }), "INVALID_CONFIG", (e) => assert.match(e.message, /timeoutMs/));
  await rejectsWith(createStore({ name: name(), adapter: mapAdapter(), timeoutMs: "1s" }), "INVALID_CONFIG");
});

test("the adapter sees the documented layout, plain JSON values and bounded Buffer chunks", async () => {
  const map = new Map();
  const store = await createStore({ name: name(), adapter: mapAdapter(map) });
  await store.kv.set("a/../b", { v: 1 });
  await store.records.collection("todos").insert({ title: "t" }, { id: "id/1" });
  await store.events.append("orders", { type: "created", data: { n: 1 } });
  const body = Buffer.alloc(700 * 1024, 3);
  await store.blobs.put("img/logo.png", body, { contentType: "image/png" });
  const keys = [...map.keys()];
  assert.ok(keys.includes("kv/a.~.-.-.~b"), keys.join(" "));
  assert.ok(keys.includes("records/todos/id.~1"));
  assert.ok(keys.includes("events/orders/0000000000000001"));
  assert.ok(keys.includes("blobs/img.~logo.-png"));
  // No user string makes a path segment of its own.
  for (const k of keys) assert.ok(!k.split("/").some((s) => s === ".." || s === "."), k);
  const kvValue = map.get("kv/a.~.-.-.~b");
  assert.equal(Object.getPrototypeOf(kvValue), Object.prototype);
  assert.deepEqual(kvValue.value, { v: 1 });
  assert.deepEqual(map.get("records/todos/id.~1").data, { title: "t" });
  const chunks = keys.filter((k) => k.startsWith("chunks/")).map((k) => map.get(k));
  assert.equal(chunks.length, 3);
  for (const c of chunks) {
    assert.ok(Buffer.isBuffer(c));
    assert.ok(c.length <= 256 * 1024);
  }
  assert.ok(Buffer.concat(chunks).equals(body));
  assert.ok((await store.blobs.get("img/logo.png")).equals(body));
  await store.blobs.delete("img/logo.png");
  assert.equal([...map.keys()].filter((k) => k.startsWith("chunks/")).length, 0);
});

test("concurrent appends through a custom adapter get gapless, unique seqs", async () => {
  const store = await createStore({ name: name(), adapter: mapAdapter() });
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => store.events.append("s", { type: "e", data: i })));
  const seqs = results.map((r) => r.seq).sort((a, b) => a - b);
  assert.deepEqual(seqs, Array.from({ length: 100 }, (_, i) => i + 1));
});
