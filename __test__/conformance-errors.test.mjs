import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { describe, it } from "node:test";
import { createStore, PersistError } from "@cuitty/persist";
import {
  conformance, openFresh, collect, rejectsWith, iterRejectsWith, randomName,
} from "./support/util.mjs";

const BAD_NAMES = [
  ["empty string", ""],
  ["NUL byte", "a\0b"],
  ["lone surrogate", "a\ud800"],
  ["1025 ASCII bytes", "x".repeat(1025)],
  ["1025 UTF-8 bytes (512 × é + a)", "é".repeat(512) + "a"],
  ["number", 123],
  ["null", null],
  ["undefined", undefined],
  ["object", { key: "k" }],
  ["array", ["k"]],
];
const MAX_NAME = "é".repeat(512); // exactly 1024 UTF-8 bytes: valid

function cyclicObject() { const o = { a: 1 }; o.self = o; return o; }
function cyclicArray() { const arr = [1]; arr.push({ back: arr }); return arr; }

const BAD_JSON = [
  ["top-level undefined", undefined],
  ["top-level function", () => 1],
  ["top-level symbol", Symbol("s")],
  ["BigInt", 10n],
  ["nested BigInt", { a: 10n }],
  ["BigInt in array", [1, 2n]],
  ["deep BigInt", { deep: { x: [{ y: 1n }] } }],
  ["cyclic object", cyclicObject()],
  ["cyclic array", cyclicArray()],
  ["string with a lone surrogate", "x\udc00"],
  ["nested lone surrogate", { a: ["\ud800"] }],
];
const BAD_RECORD_DATA = [
  ["nested BigInt", { a: 10n }],
  ["deep BigInt", { deep: { x: [{ y: 1n }] } }],
  ["cyclic object", cyclicObject()],
  ["object holding a cyclic array", { list: cyclicArray() }],
  ["array", [1, 2]],
  ["empty array", []],
  ["string", "text"],
  ["number", 42],
  ["boolean", true],
  ["null", null],
  ["undefined", undefined],
  ["function", () => ({})],
  ["BigInt", 5n],
  ["object holding a lone surrogate", { s: "ok", t: "\\\ud800" }],
  ["object with a lone surrogate in a key", { ["k\udfff"]: 1 }],
];
const BAD_EVENT_DATA = [
  ["BigInt", 10n],
  ["nested BigInt", { a: 10n }],
  ["cyclic object", cyclicObject()],
  ["cyclic array", cyclicArray()],
  ["lone surrogate", { s: "\udbff" }],
];
// What a BlobBody cannot be; the contract does not say which INVALID_* code, so both are accepted.
const BAD_BODIES = [["number", 42], ["plain object", { a: 1 }], ["null", null], ["undefined", undefined], ["boolean", true]];
const ARG_OR_VALUE = ["INVALID_ARGUMENT", "INVALID_VALUE"];

async function assertStoreEmpty(s, what) {
  assert.deepEqual(await collect(s.kv.list()), [], `${what}: kv must be empty`);
  assert.deepEqual(await collect(s.blobs.list()), [], `${what}: blobs must be empty`);
  assert.deepEqual(await collect(s.events.streams()), [], `${what}: events must be empty`);
}

describe("PersistError export", () => {
  it("is a class extending Error", () => {
    assert.equal(typeof PersistError, "function");
    assert.ok(PersistError.prototype instanceof Error);
  });
});

await conformance("errors", (a) => {
  it("store exposes name, adapter and the four namespaces", async (t) => {
    const name = randomName();
    const s = await a.open(name);
    t.after(() => s.close().catch(() => {}));
    assert.equal(s.name, name);
    assert.equal(s.adapter, a.caps.kind);
    for (const ns of ["kv", "records", "blobs", "events"]) assert.equal(typeof s[ns], "object", ns);
    assert.equal(typeof s.close, "function");
    assert.equal(typeof s[Symbol.asyncDispose], "function");
  });

  it("kv: invalid keys reject with INVALID_ARGUMENT and write nothing", async (t) => {
    const s = await openFresh(a, t);
    for (const [label, k] of BAD_NAMES) {
      await rejectsWith(() => s.kv.get(k), "INVALID_ARGUMENT", `kv.get(${label})`);
      await rejectsWith(() => s.kv.getMany([k]), "INVALID_ARGUMENT", `kv.getMany([${label}])`);
      await rejectsWith(() => s.kv.getMany(["ok", k]), "INVALID_ARGUMENT", `kv.getMany([ok, ${label}])`);
      await rejectsWith(() => s.kv.getEntry(k), "INVALID_ARGUMENT", `kv.getEntry(${label})`);
      await rejectsWith(() => s.kv.set(k, 1), "INVALID_ARGUMENT", `kv.set(${label})`);
      await rejectsWith(() => s.kv.setMany([{ key: "fine", value: 1 }, { key: k, value: 1 }]), "INVALID_ARGUMENT", `kv.setMany(${label})`);
      await rejectsWith(() => s.kv.delete(k), "INVALID_ARGUMENT", `kv.delete(${label})`);
      await rejectsWith(() => s.kv.has(k), "INVALID_ARGUMENT", `kv.has(${label})`);
    }
    await rejectsWith(() => s.kv.getMany("abc"), "INVALID_ARGUMENT", "kv.getMany(non-array)");
    await rejectsWith(() => s.kv.setMany("abc"), "INVALID_ARGUMENT", "kv.setMany(non-array)");
    for (const [bad, label] of [[undefined, "undefined"], [null, "null"], [7, "a number"], [[{ key: "k", value: 1 }], "an array"]]) {
      await rejectsWith(() => s.kv.setMany([{ key: "fine", value: 1 }, bad]), "INVALID_ARGUMENT", `kv.setMany([…, ${label}])`);
    }
    assert.equal(await s.kv.get("fine"), undefined, "a setMany with a bad entry writes nothing");
    await assertStoreEmpty(s, "after invalid kv keys");
    await s.kv.set(MAX_NAME, "ok");
    assert.equal(await s.kv.get(MAX_NAME), "ok");
  });

  it("kv: values JSON cannot hold reject with INVALID_VALUE and write nothing", async (t) => {
    const s = await openFresh(a, t);
    const prev = await s.kv.set("existing", "before");
    for (const [label, v] of BAD_JSON) {
      await rejectsWith(() => s.kv.set("new", v), "INVALID_VALUE", `kv.set(${label})`);
      await rejectsWith(() => s.kv.set("existing", v), "INVALID_VALUE", `kv.set(existing, ${label})`);
      await rejectsWith(() => s.kv.setMany([{ key: "new2", value: 1 }, { key: "existing", value: v }]), "INVALID_VALUE", `kv.setMany(${label})`);
    }
    assert.equal(await s.kv.has("new"), false);
    assert.equal(await s.kv.has("new2"), false);
    assert.deepEqual(await s.kv.getEntry("existing"), prev);
    assert.deepEqual((await collect(s.kv.list())).map((e) => e.key), ["existing"]);
  });

  it("kv: invalid options reject with an INVALID_* code", async (t) => {
    const s = await openFresh(a, t);
    await rejectsWith(() => s.kv.set("k", 1, { ttl: "soon" }), ARG_OR_VALUE, "ttl string");
    await rejectsWith(() => s.kv.set("k", 1, { ttl: Number.NaN }), ARG_OR_VALUE, "ttl NaN");
    await iterRejectsWith(() => s.kv.list({ prefix: 42 }), ARG_OR_VALUE, "kv.list(prefix number)");
    await iterRejectsWith(() => s.kv.list({ limit: -1 }), ARG_OR_VALUE, "kv.list(limit -1)");
    assert.equal(await s.kv.has("k"), false);
  });

  it("records: invalid collection names and ids reject with INVALID_ARGUMENT and write nothing", async (t) => {
    const s = await openFresh(a, t);
    for (const [label, name] of BAD_NAMES) {
      let col;
      try { col = s.records.collection(name); }
      catch (e) { assert.fail(`records.collection(${label}) threw synchronously: ${e?.message}`); }
      await rejectsWith(() => col.insert({ a: 1 }), "INVALID_ARGUMENT", `collection(${label}).insert`);
      await rejectsWith(() => col.put("id", { a: 1 }), "INVALID_ARGUMENT", `collection(${label}).put`);
      await rejectsWith(() => col.get("id"), "INVALID_ARGUMENT", `collection(${label}).get`);
      await rejectsWith(() => col.update("id", { a: 1 }), "INVALID_ARGUMENT", `collection(${label}).update`);
      await rejectsWith(() => col.delete("id"), "INVALID_ARGUMENT", `collection(${label}).delete`);
      await rejectsWith(() => col.count(), "INVALID_ARGUMENT", `collection(${label}).count`);
      await rejectsWith(() => col.ensureIndex("a"), "INVALID_ARGUMENT", `collection(${label}).ensureIndex`);
      await iterRejectsWith(() => col.find(), "INVALID_ARGUMENT", `collection(${label}).find`);
      await rejectsWith(() => col.find().toArray(), "INVALID_ARGUMENT", `collection(${label}).find().toArray`);
    }
    const col = s.records.collection("ok");
    for (const [label, id] of BAD_NAMES) {
      if (id === undefined) continue; // insert without id generates one
      await rejectsWith(() => col.insert({ a: 1 }, { id }), "INVALID_ARGUMENT", `insert(id: ${label})`);
    }
    for (const [label, id] of BAD_NAMES) {
      await rejectsWith(() => col.put(id, { a: 1 }), "INVALID_ARGUMENT", `put(${label})`);
      await rejectsWith(() => col.get(id), "INVALID_ARGUMENT", `get(${label})`);
      await rejectsWith(() => col.update(id, { a: 1 }), "INVALID_ARGUMENT", `update(${label})`);
      await rejectsWith(() => col.delete(id), "INVALID_ARGUMENT", `delete(${label})`);
    }
    assert.equal(await col.count(), 0);
    const maxCol = s.records.collection(MAX_NAME);
    await maxCol.put(MAX_NAME, { ok: true });
    assert.deepEqual((await maxCol.get(MAX_NAME)).data, { ok: true });
  });

  it("records: data that is not a JSON object rejects with INVALID_VALUE and writes nothing", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    const existing = await col.insert({ keep: 1 }, { id: "existing" });
    for (const [label, data] of BAD_RECORD_DATA) {
      await rejectsWith(() => col.insert(data), "INVALID_VALUE", `insert(${label})`);
      await rejectsWith(() => col.insert(data, { id: "new" }), "INVALID_VALUE", `insert(${label}, id)`);
      await rejectsWith(() => col.put("new", data), "INVALID_VALUE", `put(new, ${label})`);
      await rejectsWith(() => col.put("existing", data), "INVALID_VALUE", `put(existing, ${label})`);
      await rejectsWith(() => col.update("existing", data), "INVALID_VALUE", `update(existing, ${label})`);
    }
    assert.equal(await col.count(), 1);
    assert.deepEqual(await col.get("existing"), existing);
  });

  it("records: malformed queries reject", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    await col.insert({ a: 1 });
    await iterRejectsWith(() => col.find({ where: { a: { $regex: "x" } } }), "INVALID_ARGUMENT", "unknown operator");
    await iterRejectsWith(() => col.find({ where: { a: { $in: 1 } } }), "INVALID_ARGUMENT", "$in non-array");
    await iterRejectsWith(() => col.find({ where: { $and: { a: 1 } } }), "INVALID_ARGUMENT", "$and non-array");
    await iterRejectsWith(() => col.find({ orderBy: { field: "a", direction: "sideways" } }), "INVALID_ARGUMENT", "bad direction");
    await rejectsWith(() => col.count({ a: { $bogus: 1 } }), "INVALID_ARGUMENT", "count unknown operator");
    await rejectsWith(() => col.ensureIndex(""), "INVALID_ARGUMENT", "ensureIndex('')");
    await rejectsWith(() => col.ensureIndex(42), "INVALID_ARGUMENT", "ensureIndex(42)");
  });

  it("blobs: invalid keys reject with INVALID_ARGUMENT and write nothing", async (t) => {
    const s = await openFresh(a, t);
    for (const [label, k] of BAD_NAMES) {
      await rejectsWith(() => s.blobs.put(k, "x"), "INVALID_ARGUMENT", `blobs.put(${label})`);
      await rejectsWith(() => s.blobs.get(k), "INVALID_ARGUMENT", `blobs.get(${label})`);
      await rejectsWith(() => s.blobs.stream(k), "INVALID_ARGUMENT", `blobs.stream(${label})`);
      await rejectsWith(() => s.blobs.head(k), "INVALID_ARGUMENT", `blobs.head(${label})`);
      await rejectsWith(() => s.blobs.delete(k), "INVALID_ARGUMENT", `blobs.delete(${label})`);
    }
    await assertStoreEmpty(s, "after invalid blob keys");
    await s.blobs.put(MAX_NAME, "ok");
    assert.equal((await s.blobs.get(MAX_NAME)).toString(), "ok");
  });

  it("blobs: bodies and options of the wrong type reject and write nothing", async (t) => {
    const s = await openFresh(a, t);
    for (const [label, body] of BAD_BODIES) {
      await rejectsWith(() => s.blobs.put("b", body), ARG_OR_VALUE, `blobs.put(body ${label})`);
    }
    await rejectsWith(() => s.blobs.put("b", "x", { metadata: { n: 1 } }), ARG_OR_VALUE, "metadata value not a string");
    await rejectsWith(() => s.blobs.put("b", "x", { contentType: 42 }), ARG_OR_VALUE, "contentType number");
    await assertStoreEmpty(s, "after invalid blob bodies");
  });

  it("events: invalid stream names reject with INVALID_ARGUMENT and write nothing", async (t) => {
    const s = await openFresh(a, t);
    for (const [label, name] of BAD_NAMES) {
      await rejectsWith(() => s.events.append(name, { type: "x" }), "INVALID_ARGUMENT", `append(${label})`);
      await iterRejectsWith(() => s.events.read(name), "INVALID_ARGUMENT", `read(${label})`);
      await rejectsWith(() => s.events.subscribe(name, () => {}), "INVALID_ARGUMENT", `subscribe(${label})`);
    }
    await assertStoreEmpty(s, "after invalid stream names");
    assert.deepEqual(await s.events.append(MAX_NAME, { type: "ok" }), { seq: 1 });
  });

  it("events: bad data rejects with INVALID_VALUE, bad events reject, and a bad array appends nothing", async (t) => {
    const s = await openFresh(a, t);
    await s.events.append("s", { type: "first" });
    for (const [label, data] of BAD_EVENT_DATA) {
      await rejectsWith(() => s.events.append("s", { type: "t", data }), "INVALID_VALUE", `append(data ${label})`);
      await rejectsWith(() => s.events.append("s", [{ type: "ok" }, { type: "t", data }]), "INVALID_VALUE", `append([ok, ${label}])`);
      await rejectsWith(() => s.events.append("other", { type: "t", data }), "INVALID_VALUE", `append(new stream, ${label})`);
    }
    for (const [label, ev] of [["no type", { data: 1 }], ["numeric type", { type: 5 }], ["null event", null], ["string event", "x"]]) {
      await rejectsWith(() => s.events.append("s", ev), ARG_OR_VALUE, `append(${label})`);
      await rejectsWith(() => s.events.append("s", [{ type: "ok" }, ev]), ARG_OR_VALUE, `append([ok, ${label}])`);
    }
    await rejectsWith(() => s.events.subscribe("s", "not a function"), "INVALID_ARGUMENT", "subscribe(non-function handler)");
    assert.deepEqual((await collect(s.events.read("s"))).map((e) => e.type), ["first"]);
    assert.deepEqual(await collect(s.events.streams()), ["s"]);
  });

  it("every namespace method rejects with CLOSED after close(); close is idempotent", async (t) => {
    const s = await a.open(randomName());
    const early = s.records.collection("early");
    await s.kv.set("k", 1);
    await early.insert({ a: 1 }, { id: "x" });
    await s.blobs.put("b", "x");
    await s.events.append("e", { type: "x" });
    assert.equal(await s.close(), undefined);
    await s.close();
    const col = s.records.collection("c");
    const C = "CLOSED";
    await rejectsWith(() => s.kv.get("k"), C, "kv.get");
    await rejectsWith(() => s.kv.getMany(["k"]), C, "kv.getMany");
    await rejectsWith(() => s.kv.getEntry("k"), C, "kv.getEntry");
    await rejectsWith(() => s.kv.set("k", 2), C, "kv.set");
    await rejectsWith(() => s.kv.setMany([{ key: "k", value: 2 }]), C, "kv.setMany");
    await rejectsWith(() => s.kv.delete("k"), C, "kv.delete");
    await rejectsWith(() => s.kv.has("k"), C, "kv.has");
    await iterRejectsWith(() => s.kv.list(), C, "kv.list");
    for (const [label, c] of [["new collection", col], ["collection from before close", early]]) {
      await rejectsWith(() => c.insert({ a: 1 }), C, `${label}.insert`);
      await rejectsWith(() => c.put("x", { a: 1 }), C, `${label}.put`);
      await rejectsWith(() => c.get("x"), C, `${label}.get`);
      await rejectsWith(() => c.update("x", { a: 2 }), C, `${label}.update`);
      await rejectsWith(() => c.delete("x"), C, `${label}.delete`);
      await iterRejectsWith(() => c.find(), C, `${label}.find`);
      await rejectsWith(() => c.find().toArray(), C, `${label}.find().toArray`);
      await rejectsWith(() => c.count(), C, `${label}.count`);
      await rejectsWith(() => c.ensureIndex("a"), C, `${label}.ensureIndex`);
    }
    await rejectsWith(() => s.blobs.put("b", "y"), C, "blobs.put");
    await rejectsWith(() => s.blobs.get("b"), C, "blobs.get");
    await rejectsWith(() => s.blobs.stream("b"), C, "blobs.stream");
    await rejectsWith(() => s.blobs.head("b"), C, "blobs.head");
    await rejectsWith(() => s.blobs.delete("b"), C, "blobs.delete");
    await iterRejectsWith(() => s.blobs.list(), C, "blobs.list");
    await rejectsWith(() => s.events.append("e", { type: "y" }), C, "events.append");
    await iterRejectsWith(() => s.events.read("e"), C, "events.read");
    await rejectsWith(() => s.events.subscribe("e", () => {}), C, "events.subscribe");
    await iterRejectsWith(() => s.events.streams(), C, "events.streams");
  });

  it("Symbol.asyncDispose closes the store", async () => {
    const s = await a.open(randomName());
    await s.kv.set("k", 1);
    await s[Symbol.asyncDispose]();
    await rejectsWith(() => s.kv.get("k"), "CLOSED", "kv.get after asyncDispose");
    await s.close();
  });

  if (a.caps?.persistent) {
    it("writes rejected as CLOSED leave nothing behind for the next open", async (t) => {
      const name = randomName();
      const location = randomName("loc");
      const s = await a.open(name, { location });
      await s.close();
      await rejectsWith(() => s.kv.set("k", 1), "CLOSED");
      await rejectsWith(() => s.records.collection("c").insert({ a: 1 }), "CLOSED");
      await rejectsWith(() => s.blobs.put("b", "x"), "CLOSED");
      await rejectsWith(() => s.events.append("e", { type: "x" }), "CLOSED");
      const again = await a.open(name, { location });
      t.after(() => again.close().catch(() => {}));
      await assertStoreEmpty(again, "reopened store");
      assert.equal(await again.records.collection("c").count(), 0);
    });
  }
});

describe("createStore: INVALID_CONFIG", () => {
  const SECRET = "pw-SUPER-SECRET-4711";

  async function configError(config, field, what) {
    const err = await rejectsWith(() => createStore(config), "INVALID_CONFIG", what);
    if (field) assert.match(err.message, new RegExp(field.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")), `${what}: message must name "${field}": ${err.message}`);
    return err;
  }

  it("rejects a missing or non-object config", async () => {
    await rejectsWith(() => createStore(), "INVALID_CONFIG", "createStore()");
    await rejectsWith(() => createStore(null), "INVALID_CONFIG", "createStore(null)");
    await rejectsWith(() => createStore(42), "INVALID_CONFIG", "createStore(42)");
  });

  it("names the bad field", async () => {
    await configError({}, "name", "missing name");
    await configError({ name: 42 }, "name", "numeric name");
    await configError({ name: "x", adapter: "nope" }, "adapter", "unknown adapter");
    await configError({ name: "x", adapter: "sqlite", path: 42 }, "path", "numeric path");
    await configError({ name: "x", adapter: "s3" }, "bucket", "s3 without bucket");
    await configError({ name: "x", adapter: "postgres" }, "connection", "postgres without connection");
    await configError({ name: "x", adapter: "p2p" }, "discovery", "p2p without discovery");
    await configError({ name: "x", adapter: "p2p", discovery: { method: "pigeon", topic: "t" } }, "method", "p2p bad discovery method");
  });

  it("a custom adapter missing methods names the first missing one (get, put, delete, list)", async () => {
    const fn = async () => undefined;
    await configError({ name: "x", adapter: {} }, "get", "empty adapter");
    await configError({ name: "x", adapter: { get: fn } }, "put", "adapter with get only");
    await configError({ name: "x", adapter: { get: fn, put: fn, list: fn } }, "delete", "adapter without delete");
    await configError({ name: "x", adapter: { get: fn, put: fn, delete: fn } }, "list", "adapter without list");
    await configError({ name: "x", adapter: { get: 1, put: fn, delete: fn, list: fn } }, "get", "adapter with non-function get");
  });

  it("never shows a password or secret in the error", async () => {
    const errs = [
      await configError({ name: "x", adapter: "postgres", connection: { host: "localhost", password: SECRET, port: "not-a-port" } }, "port", "postgres bad port"),
      await configError({ name: "x", adapter: "s3", credentials: { accessKeyId: "AKIAEXAMPLE", secretAccessKey: SECRET } }, "bucket", "s3 with secret, no bucket"),
      await configError({ name: "x", adapter: "postgres", connection: `postgres://user:${SECRET}@localhost:5432/db`, pool: { max: "lots" } }, "max", "postgres bad pool.max"),
    ];
    for (const err of errs) {
      for (const text of [err.message, String(err), err.stack ?? "", inspect(err, { depth: 10 })]) {
        assert.ok(!text.includes(SECRET), `secret leaked: ${text.slice(0, 300)}`);
      }
    }
  });

  it("creates nothing on disk for a bad config", async () => {
    const dir = mkdtempSync(join(tmpdir(), "persist-badcfg-"));
    try {
      await configError({ name: 42, adapter: "sqlite", path: join(dir, "a", "b", "x.db") }, "name", "bad name with path");
      await configError({ name: "x", adapter: "nope", path: join(dir, "c", "x.db") }, "adapter", "bad adapter with path");
      assert.equal(existsSync(join(dir, "a")), false);
      assert.equal(existsSync(join(dir, "c")), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
