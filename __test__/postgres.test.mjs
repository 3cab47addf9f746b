// Postgres-specific behaviour: pool size, several processes on one stream, live delivery across
// processes, authentication errors without the password, and the config shape of docs/storage-adapters.md. Needs scripts/ensure-postgres.sh (scripts/test.sh
// runs it; the server restart test is in exclusive/, run alone); with CI=true an unreachable server is a failure, never a skip.
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { before, describe, it } from "node:test";
import { createStore, PersistError } from "@cuitty/persist";
import { adapters, isCI, pgConfig, pgPsql, pgSchema, PG_CONNECTION } from "./support/adapters.mjs";
import { randomName, sleep, waitUntil, collect } from "./support/util.mjs";
import { spawnNodeLines, supportScript } from "./support/proc.mjs";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";

const pg = adapters.find((a) => a.name === "postgres");
const status = await pg.available();
const skip = !status.ok && !isCI && process.env.PERSIST_ADAPTERS !== "postgres" ? `postgres unavailable: ${status.reason}` : false;

function runAppender(schema, name, stream, count, delayMs, batch) {
  const acks = [];
  const proc = spawnNodeLines(supportScript("pg-append-child.mjs"),
    [schema, name, stream, String(count), String(delayMs), String(batch)], (line) => {
      const [kind, seq] = line.split(" ");
      if (kind === "ack") acks.push(Number(seq));
    });
  return proc.exited.then(({ code, signal }) => {
    assert.equal(code, 0, `appender failed (signal ${signal}):\n${proc.stderr().slice(-3000)}`);
    return acks;
  });
}

/** Connections of this schema's pool (the application_name the adapter sets). */
function poolConnections(schema) {
  return Number(pgPsql(`SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cuitty-persist/${schema}'`).trim());
}

describe("postgres adapter", { skip }, () => {
  before(() => { if (!status.ok) assert.fail(`postgres unavailable: ${status.reason}`); });

  it("the docs snippet's config shape works (password from the environment)", async () => {
    const store = await createStore({
      name: randomName("docs"),
      adapter: "postgres",
      connection: {
        host: "localhost",
        port: 5432,
        database: "persist",
        user: "persist",
        password: process.env.PG_PASSWORD ?? "persist",
      },
      schema: pgSchema("docs"),
      pool: { max: 20 },
    });
    try {
      assert.equal(store.adapter, "postgres");
      await store.kv.set("k", { v: 1 });
      assert.deepEqual(await store.kv.get("k"), { v: 1 });
    } finally { await store.close(); }
    // The connection-string form too.
    const url = `postgres://persist:${encodeURIComponent(PG_CONNECTION.password)}@127.0.0.1:5432/persist`;
    const s2 = await createStore({ name: randomName("url"), adapter: "postgres", connection: url, schema: pgSchema("docs") });
    await s2.kv.set("x", 1);
    assert.equal(await s2.kv.get("x"), 1);
    await s2.close();
  });

  it("ssl: \"require\" is rejected with INVALID_CONFIG (no TLS built in)", async () => {
    await assert.rejects(createStore({ ...pgConfig("ssl"), connection: { ...PG_CONNECTION, ssl: "require" } }),
      (e) => e instanceof PersistError && e.code === "INVALID_CONFIG" && /TLS/.test(e.message));
  });

  it("a wrong password gives CONNECTION quickly, without the password anywhere", async () => {
    const secret = "Wr0ng-Secret-" + randomName("pw");
    const started = Date.now();
    let err;
    try {
      await createStore({ ...pgConfig("auth"), connection: { ...PG_CONNECTION, password: secret } });
    } catch (e) { err = e; }
    assert.ok(err instanceof PersistError, `expected a PersistError, got ${err}`);
    assert.equal(err.code, "CONNECTION", err.message);
    assert.ok(Date.now() - started < 10_000, "took too long");
    for (const text of [err.message, String(err.stack), inspect(err, { depth: 5 }), JSON.stringify(err)]) {
      assert.ok(!text.includes(secret), `password leaked: ${text}`);
    }
    // Unreachable server: CONNECTION or TIMEOUT, bounded.
    const t0 = Date.now();
    await assert.rejects(createStore({ ...pgConfig("down"), connection: { ...PG_CONNECTION, port: 1, password: secret } }),
      (e) => e instanceof PersistError && ["CONNECTION", "TIMEOUT"].includes(e.code) && !e.message.includes(secret));
    assert.ok(Date.now() - t0 < 10_000);
  });

  it("the pool never exceeds pool.max and reaches it under load", { timeout: 60_000 }, async () => {
    const schema = pgSchema(randomName("pool").replace(/-/g, "_"));
    const store = await createStore({ ...pgConfig(randomName("pool"), undefined, { pool: { max: 4 } }), schema });
    try {
      let peak = 0, running = true;
      const sampler = (async () => {
        while (running) { peak = Math.max(peak, poolConnections(schema)); await sleep(20); }
      })();
      // Slow-ish queries keep connections busy: 64 in flight.
      const work = [];
      for (let i = 0; i < 64; i++) work.push(store.records.collection("c").insert({ i, pad: "x".repeat(2000) }));
      for (let round = 0; round < 5; round++) {
        await Promise.all(Array.from({ length: 64 }, (_, i) => store.kv.set(`k${round}-${i}`, { i })));
      }
      await Promise.all(work);
      running = false;
      await sampler;
      peak = Math.max(peak, poolConnections(schema));
      assert.ok(peak <= 4, `pool opened ${peak} connections, max is 4`);
      assert.equal(peak, 4, `pool reached only ${peak} of 4 connections under load`);
    } finally { await store.close(); }
  });

  it("two processes appending to one stream get gapless seqs without duplicates", { timeout: 120_000 }, async () => {
    const schema = pgSchema("multi");
    const name = randomName("multi");
    const [a, b] = await Promise.all([
      runAppender(schema, name, "s", 40, 0, 3),
      runAppender(schema, name, "s", 40, 0, 2),
    ]);
    const store = await createStore({ ...pgConfig(name, "multi") });
    try {
      const events = await collect(store.events.read("s"));
      assert.equal(events.length, 40 * 3 + 40 * 2);
      assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1));
      const acked = new Set([...a, ...b]);
      assert.equal(acked.size, 80, "two appends acknowledged the same seq");
      // Each batch is contiguous.
      for (let i = 0; i < events.length;) {
        const { pid, i: n } = events[i].data;
        const size = events.filter((e) => e.data.pid === pid && e.data.i === n).length;
        for (let j = 0; j < size; j++) assert.equal(events[i + j].data.pid, pid);
        i += size;
      }
    } finally { await store.close(); }
  });

  it("subscribe sees another process's appends within about a second", { timeout: 120_000 }, async () => {
    const schema = pgSchema("live");
    const name = randomName("live");
    const store = await createStore(pgConfig(name, "live"));
    try {
      const got = [];
      const sub = await store.events.subscribe("feed", (e) => { got.push({ seq: e.seq, at: Date.now() }); }, { from: "end" });
      const started = Date.now();
      await runAppender(schema, name, "feed", 5, 300, 1);
      await waitUntil(() => got.length >= 5, 5000, "5 events");
      assert.deepEqual(got.map((g) => g.seq), [1, 2, 3, 4, 5]);
      assert.ok(got[4].at - started < 15_000);
      await sub.close();
    } finally { await store.close(); }
  });

  it("a bulk load is vacuumed and analyzed without waiting for autovacuum, and the indexed query then reads its index", { timeout: 180_000 }, async () => {
    const schema = pgSchema("stats");
    const store = await createStore(pgConfig(randomName("stats"), "stats"));
    const analyzed = () => Number(pgPsql(`SELECT COALESCE(analyze_count, 0) FROM pg_stat_user_tables WHERE schemaname = '${schema}' AND relname = 'persist_records'`).trim() || 0);
    const vacuumed = () => Number(pgPsql(`SELECT COALESCE(vacuum_count, 0) FROM pg_stat_user_tables WHERE schemaname = '${schema}' AND relname = 'persist_records'`).trim() || 0);
    // The query filters and sorts on a number: the numeric index serves it.
    const indexScans = () => Number(pgPsql(`SELECT COALESCE(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE schemaname = '${schema}' AND indexrelname LIKE 'persist_rixn_%'`).trim() || 0);
    try {
      const tasks = store.records.collection("tasks");
      // 20,000 records: planned without statistics, the sorted, limited query below was a
      // scan of the whole collection and a sort (47 queries/s), never the index.
      const ids = Array.from({ length: 20_000 }, (_, i) => `t${String(i).padStart(5, "0")}`);
      for (let i = 0; i < ids.length; i += 500) {
        await Promise.all(ids.slice(i, i + 500).map((id, j) => tasks.put(id, { done: (i + j) % 2 === 0, priority: (i + j) % 10 })));
      }
      // analyze_count and vacuum_count count explicit runs only (autovacuum's are auto*_count);
      // statistics views lag (a backend flushes them up to 10 s after going idle).
      await waitUntil(() => analyzed() > 0, 30_000, "an ANALYZE of persist_records after the bulk load");
      await waitUntil(() => vacuumed() > 0, 30_000, "a VACUUM of persist_records after the bulk load");
      await tasks.ensureIndex("priority");
      const scansBefore = indexScans();
      const page = await tasks.find({ where: { done: false, priority: { $gte: 7 } }, orderBy: { field: "priority", direction: "desc" }, limit: 100 }).toArray();
      assert.equal(page.length, 100);
      assert.ok(page.every((r) => r.data.done === false && r.data.priority === 9), "the 100 highest-priority open tasks");
      // Statistics views lag (a backend flushes them up to 10 s after going idle).
      await waitUntil(() => indexScans() > scansBefore, 30_000, "the query to scan the priority index");
    } finally { await store.close(); }
  });

  it("a schema that version 1 left (record times as text, U+0000 indexed as U+FFFD) is migrated once, by several opening at once, and reads back as written", { timeout: 60_000 }, async () => {
    const location = randomName("v1").replace(/-/g, "_");
    const schema = pgSchema(location);
    // Migration 1 as it shipped (mod.rs MIGRATIONS[0]), then one record and store as it wrote them.
    pgPsql(`CREATE SCHEMA "${schema}"; SET search_path = "${schema}";
      CREATE TABLE persist_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
      CREATE TABLE persist_stores (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE);
      CREATE TABLE persist_kv (store_id INTEGER NOT NULL, key TEXT COLLATE "C" NOT NULL, value TEXT NOT NULL,
        version TEXT NOT NULL, expires_at BIGINT, PRIMARY KEY (store_id, key));
      CREATE TABLE persist_records (store_id INTEGER NOT NULL, coll TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
        doc JSONB NOT NULL, raw TEXT NOT NULL, version BIGINT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (store_id, coll, id));
      CREATE TABLE persist_blobs (store_id INTEGER NOT NULL, key TEXT COLLATE "C" NOT NULL, body_id BIGINT NOT NULL,
        size BIGINT NOT NULL, content_type TEXT NOT NULL, etag TEXT NOT NULL, metadata TEXT NOT NULL,
        updated_at TEXT NOT NULL, PRIMARY KEY (store_id, key));
      CREATE TABLE persist_blob_bodies (id BIGSERIAL PRIMARY KEY, committed BOOLEAN NOT NULL DEFAULT FALSE, started_at BIGINT NOT NULL);
      CREATE TABLE persist_blob_chunks (body_id BIGINT NOT NULL, idx INTEGER NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (body_id, idx));
      CREATE TABLE persist_event_streams (store_id INTEGER NOT NULL, stream TEXT COLLATE "C" NOT NULL, last_seq BIGINT NOT NULL,
        PRIMARY KEY (store_id, stream));
      CREATE TABLE persist_events (store_id INTEGER NOT NULL, stream TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL,
        type TEXT NOT NULL, data TEXT NOT NULL, time TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (store_id, stream, seq));
      INSERT INTO persist_migrations (version) VALUES (1);
      INSERT INTO persist_stores (name) VALUES ('old');
      INSERT INTO persist_records SELECT id, 'tasks', 'r1', '{"b":1,"a":2}', '{"b":1,"a":2}', 3,
        '2025-01-02T03:04:05.678Z', '2026-02-03T04:05:06.789Z' FROM persist_stores;
      INSERT INTO persist_records SELECT id, 'tasks', 'r2', '{"n":"a\\ufffd","m":"\\u0001"}', '{"n":"a\\u0000","m":"\\u0001"}', 1,
        '2025-01-02T03:04:05.678Z', '2025-01-02T03:04:05.678Z' FROM persist_stores;`);
    const stores = await Promise.all([1, 2, 3].map(() => createStore(pgConfig("old", location))));
    try {
      assert.equal(pgPsql(`SELECT string_agg(version::text, ',' ORDER BY version) FROM "${schema}".persist_migrations`).trim(), "1,2,3");
      const tasks = stores[0].records.collection("tasks");
      const doc = await tasks.get("r1");
      assert.deepEqual(doc, { id: "r1", version: 3, createdAt: "2025-01-02T03:04:05.678Z", updatedAt: "2026-02-03T04:05:06.789Z", data: { b: 1, a: 2 } });
      assert.equal(JSON.stringify(doc.data), '{"b":1,"a":2}', "key order as written");
      const updated = await stores[1].records.collection("tasks").update("r1", { a: 3 });
      assert.equal(JSON.stringify((await tasks.get("r1")).data), '{"b":1,"a":3}');
      assert.equal(updated.version, 4);
      assert.equal(updated.createdAt, "2025-01-02T03:04:05.678Z");
      assert.ok(updated.updatedAt > "2026-12-01", updated.updatedAt);
      const [found] = await stores[2].records.collection("tasks").find({ where: { a: { $gte: 3 } } }).toArray();
      assert.deepEqual(found, updated);
      // Migration 3 stored the strings of r2 in the encoding queries compare.
      assert.deepEqual((await tasks.get("r2")).data, { n: "a\u0000", m: "\u0001" });
      const where = async (w) => (await tasks.find({ where: w }).toArray()).map((d) => d.id);
      assert.deepEqual(await where({ n: "a\u0000" }), ["r2"]);
      assert.deepEqual(await where({ n: "a\ufffd" }), []);
      assert.deepEqual(await where({ n: { $lt: "a\u0001" } }), ["r2"]);
      assert.deepEqual(await where({ m: "\u0001" }), ["r2"]);
      assert.deepEqual(await where({ m: { $gt: "\u0000" } }), ["r2"]);
    } finally { await Promise.all(stores.map((s) => s.close())); }
  });

  it("an index another store made is used once this store reads the catalog again (at most 2 s later)", { timeout: 60_000 }, async () => {
    const location = randomName("ix").replace(/-/g, "_");
    const schema = pgSchema(location);
    const [mine, other] = await Promise.all([createStore(pgConfig("mine", location)), createStore(pgConfig("other", location))]);
    const indexScans = () => Number(pgPsql(`SELECT COALESCE(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE schemaname = '${schema}' AND indexrelname LIKE 'persist_rixn_%'`).trim() || 0);
    try {
      const tasks = mine.records.collection("tasks");
      for (let i = 0; i < 4000; i += 500) {
        await Promise.all(Array.from({ length: 500 }, (_, j) => tasks.put(`t${String(i + j).padStart(5, "0")}`, { done: (i + j) % 2 === 0, priority: (i + j) % 10 })));
      }
      const query = () => tasks.find({ where: { done: false, priority: { $gte: 7 } }, orderBy: { field: "priority", direction: "desc" }, limit: 10 }).toArray();
      const expected = (await query()).map((d) => d.id); // planned without any index: a scan
      assert.equal(expected.length, 10);
      await other.records.collection("elsewhere").ensureIndex("priority"); // indexes are per schema
      await sleep(2_100);
      const scansBefore = indexScans();
      assert.deepEqual((await query()).map((d) => d.id), expected);
      // Statistics views lag (a backend flushes them up to 10 s after going idle).
      await waitUntil(() => indexScans() > scansBefore, 30_000, "the query to scan the index the other store made");
    } finally { await mine.close(); await other.close(); }
  });

  it("a field indexed before the numeric index existed (value and text indexes only) is still queried through its value index", { timeout: 60_000 }, async () => {
    const location = randomName("oldix").replace(/-/g, "_");
    const schema = pgSchema(location);
    const first = await createStore(pgConfig("s", location));
    const scans = (prefix) => Number(pgPsql(`SELECT COALESCE(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE schemaname = '${schema}' AND indexrelname LIKE '${prefix}%'`).trim() || 0);
    try {
      const tasks = first.records.collection("tasks");
      for (let i = 0; i < 4000; i += 500) {
        await Promise.all(Array.from({ length: 500 }, (_, j) => tasks.put(`t${String(i + j).padStart(5, "0")}`, { done: (i + j) % 2 === 0, priority: (i + j) % 10 })));
      }
      await tasks.ensureIndex("priority");
      const numeric = pgPsql(`SELECT indexname FROM pg_indexes WHERE schemaname = '${schema}' AND indexname LIKE 'persist_rixn_%'`).trim();
      assert.match(numeric, /^persist_rixn_[0-9a-f]{16}$/, "ensureIndex makes the numeric index");
      pgPsql(`DROP INDEX "${schema}".${numeric}`); // as a schema indexed by an earlier version
    } finally { await first.close(); }
    const store = await createStore(pgConfig("s", location));
    try {
      const tasks = store.records.collection("tasks");
      const before = scans("persist_rixv_");
      const page = await tasks.find({ where: { done: false, priority: { $gte: 7 } }, orderBy: { field: "priority", direction: "desc" }, limit: 10 }).toArray();
      assert.deepEqual(page.map((d) => d.data.priority), Array(10).fill(9));
      assert.deepEqual(page.map((d) => d.id), page.map((d) => d.id).sort().reverse(), "ties by id, descending");
      await waitUntil(() => scans("persist_rixv_") > before, 30_000, "the query to scan the value index");
    } finally { await store.close(); }
  });

  it("the puts of one tick are one statement: rows in id order on the heap; a row the server refuses fails alone", { timeout: 60_000 }, async () => {
    const location = randomName("puts").replace(/-/g, "_");
    const schema = pgSchema(location);
    const store = await createStore(pgConfig("puts", location));
    try {
      const col = store.records.collection("tasks");
      await col.put("warm", { w: 1 }); // the schema exists before the trigger goes in
      // 200 puts in one tick, in reverse id order (as single puts over the pool they would
      // land one heap page per connection, in arrival order).
      const n = 200;
      const idOf = (i) => `t${String(i).padStart(4, "0")}`;
      const docs = await Promise.all(Array.from({ length: n }, (_, k) => col.put(idOf(n - 1 - k), { i: n - 1 - k })));
      assert.ok(docs.every((d, k) => d.id === idOf(n - 1 - k) && d.version === 1 && d.data.i === n - 1 - k));
      const ctids = pgPsql(`SELECT ctid FROM "${schema}".persist_records WHERE id LIKE 't%' ORDER BY id`).trim().split("\n")
        .map((c) => c.slice(1, -1).split(",").map(Number));
      assert.equal(ctids.length, n);
      for (let i = 1; i < n; i++) {
        const [pa, ia] = ctids[i - 1];
        const [pb, ib] = ctids[i];
        assert.ok(pb > pa || (pb === pa && ib > ia), `row ${idOf(i)} at ${ctids[i]} is not after ${idOf(i - 1)} at ${ctids[i - 1]}`);
      }
      // A trigger that refuses one document makes the statement fail; every put is then tried
      // alone: only that one fails, the others are written (at version 2).
      pgPsql(`CREATE FUNCTION "${schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN IF NEW.doc @> '{"refuse":true}' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON "${schema}".persist_records FOR EACH ROW EXECUTE FUNCTION "${schema}".refuse();`);
      const settled = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => col.put(idOf(i), i === 5 ? { refuse: true } : { i, again: true })));
      settled.forEach((r, i) => {
        if (i === 5) {
          assert.equal(r.status, "rejected");
          assert.ok(r.reason instanceof PersistError);
          assert.match(r.reason.message, /refused by the test/);
        } else {
          assert.equal(r.status, "fulfilled", String(r.reason));
          assert.equal(r.value.version, 2);
        }
      });
      assert.deepEqual((await col.get(idOf(5))).data, { i: 5 });
      assert.deepEqual((await col.get(idOf(6))).data, { i: 6, again: true });
    } finally { await store.close(); }
  });

  it("a list page reflects every write acknowledged before it was asked for, never a page read ahead before that", { timeout: 60_000 }, async () => {
    const location = randomName("ahead").replace(/-/g, "_");
    const [store, other] = await Promise.all([createStore(pgConfig("ahead", location)), createStore(pgConfig("ahead", location))]);
    try {
      // Pages of 256, 1000, 1000, 744 keys: a full page starts the query of the next one.
      const key = (i) => `p:${String(i).padStart(5, "0")}`;
      const n = 3000;
      await store.kv.setMany(Array.from({ length: n }, (_, i) => ({ key: key(i), value: i })));
      const listed = async (onEach = async () => {}) => {
        const keys = [];
        for await (const e of store.kv.list({ prefix: "p:" })) {
          keys.push(e.key);
          await onEach(keys.length);
        }
        return keys;
      };
      const abandon = async () => {
        let seen = 0;
        for await (const _ of store.kv.list({ prefix: "p:" })) if (++seen === 10) break;
        await sleep(100); // the pages read ahead for it have come back and wait
      };
      let expected = Array.from({ length: n }, (_, i) => key(i));
      const check = (got, what) => {
        assert.equal(got.length, expected.length, `${what}: ${got.length} keys, expected ${expected.length}`);
        assert.deepEqual(got, expected, what);
      };
      // A listing left after its first page, then writes by this store and by another client
      // in the third page's range, then a new listing: it must not take the page read for the
      // first one.
      for (const [writer, who] of [[store, "this store"], [other, "another client"]]) {
        await abandon();
        await writer.kv.set(`${key(1300)}${who}`, 1);
        await writer.kv.delete(key(1400));
        expected = [...expected, `${key(1300)}${who}`].filter((k) => k !== key(1400)).sort();
        check(await listed(), `a new listing after a write by ${who}`);
      }
      // A write made while a listing is on its second page, in the fourth page's range: the
      // fourth page is asked for after the write is acknowledged.
      const got = await listed(async (count) => {
        if (count !== 300) return;
        await sleep(100); // the third page has come back, the fourth is read ahead
        await store.kv.set(`${key(2600)}x`, 1);
        await store.kv.delete(key(2700));
      });
      expected = [...expected, `${key(2600)}x`].filter((k) => k !== key(2700)).sort();
      check(got, "a write during the listing");
      // With a limit: pages smaller than the one read ahead take its first entries.
      for (const limit of [300, 1300, 2256, 2999]) {
        const keys = [];
        for await (const e of store.kv.list({ prefix: "p:", limit })) keys.push(e.key);
        assert.deepEqual(keys, expected.slice(0, limit), `limit ${limit}`);
      }
    } finally {
      await Promise.all([store.close(), other.close()]);
    }
  });

  it("kv sets batched together (setMany, the sets of one tick) over the same keys in opposite orders never deadlock", { timeout: 60_000 }, async () => {
    const location = randomName("order").replace(/-/g, "_");
    const [a, b] = await Promise.all([createStore(pgConfig("order", location)), createStore(pgConfig("order", location))]);
    try {
      const keys = Array.from({ length: 2000 }, (_, i) => `k${String(i).padStart(5, "0")}`);
      const reversed = [...keys].reverse();
      for (let round = 1; round <= 3; round++) {
        await Promise.all([
          a.kv.setMany(keys.map((key) => ({ key, value: round }))),
          b.kv.setMany(reversed.map((key) => ({ key, value: -round }))),
        ]);
        const v = await a.kv.get(keys[0]);
        assert.ok(v === round || v === -round);
      }
      const few = keys.slice(0, 300);
      for (let round = 1; round <= 3; round++) {
        await Promise.all([
          ...few.map((key) => a.kv.set(key, round)),
          ...[...few].reverse().map((key) => b.kv.set(key, -round)),
        ]);
      }
      // A repeated key in one batch: the last set of it is stored.
      await a.kv.setMany([{ key: "r", value: 1 }, { key: "q", value: 0 }, { key: "r", value: 2 }]);
      assert.equal(await b.kv.get("r"), 2);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("a value too large for the index of an indexed field is INVALID_VALUE, nothing written; the other puts of its tick land", { timeout: 60_000 }, async () => {
    const location = randomName("big").replace(/-/g, "_");
    const store = await createStore(pgConfig("big", location));
    try {
      const col = store.records.collection("notes");
      await col.ensureIndex("body");
      const big = randomBytes(4000).toString("hex"); // 8,000 characters that do not compress
      await assert.rejects(col.put("big", { body: big }),
        (e) => e instanceof PersistError && e.code === "INVALID_VALUE" && /ensureIndex/.test(e.message));
      assert.equal(await col.get("big"), undefined);
      const settled = await Promise.allSettled([col.put("a", { body: "small" }), col.put("b", { body: big }), col.put("c", { other: big })]);
      assert.deepEqual(settled.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
      assert.equal(settled[1].reason.code, "INVALID_VALUE");
      assert.deepEqual((await col.find({ where: { body: "small" } }).toArray()).map((d) => d.id), ["a"]);
      assert.equal((await col.get("c")).data.other, big);
      assert.equal(await col.get("b"), undefined);
      // A field that already holds such a value cannot be indexed; the store goes on.
      await assert.rejects(col.ensureIndex("other"), (e) => e instanceof PersistError && e.code === "INVALID_VALUE");
      await col.put("d", { other: "fine" });
      assert.deepEqual((await col.find({ where: { other: "fine" } }).toArray()).map((d) => d.id), ["d"]);
    } finally { await store.close(); }
  });

  it("blob bodies: an upload whose chunks were collected fails instead of committing a blob with chunks missing; no replaced body stays behind", { timeout: 60_000 }, async () => {
    const location = randomName("bodies").replace(/-/g, "_");
    const schema = pgSchema(location);
    const store = await createStore(pgConfig("bodies", location));
    const bodies = () => pgPsql(`SELECT count(*) FILTER (WHERE committed), count(*) FILTER (WHERE NOT committed) FROM "${schema}".persist_blob_bodies`).trim();
    try {
      const before = Buffer.alloc(1000, 1);
      await store.blobs.put("b", before);
      // A streamed put of 1.5 MiB pieces (index.js hands them over in 1 MiB slices, which
      // make 256 KiB chunks) that waits before each piece after the first until `next()`.
      const PIECE = 1536 * 1024;
      const gated = (fills) => {
        let open = () => {};
        async function* body() {
          for (const [i, fill] of fills.entries()) {
            if (i > 0) await new Promise((r) => { open = r; });
            yield Buffer.alloc(PIECE, fill);
          }
        }
        return { body: body(), next: () => open() };
      };
      const pending = () => Number(pgPsql(`SELECT count(*) FROM "${schema}".persist_blob_chunks c JOIN "${schema}".persist_blob_bodies b ON b.id = c.body_id WHERE NOT b.committed`).trim());
      const age = (hours) => pgPsql(`UPDATE "${schema}".persist_blob_bodies SET started_at = started_at - ${hours} * 3600 * 1000 WHERE NOT committed`);

      const CHUNKS = PIECE / (256 * 1024); // a piece is whole chunks
      const stale = gated([2, 3]);
      const putting = store.blobs.put("b", stale.body);
      putting.catch(() => {});
      await waitUntil(() => pending() === CHUNKS, 20_000);
      // A day passes without a chunk; the next put collects the body.
      age(25);
      await store.blobs.put("c", "x");
      assert.equal(pending(), 0);
      stale.next();
      await assert.rejects(putting, (e) => e instanceof PersistError && e.code === "CONFLICT" && /collected/.test(e.message));
      assert.ok((await store.blobs.get("b")).equals(before), "the previous blob is whole");

      // An upload that is slow but alive is not collected: each chunk moves its time on. It
      // started 46 hours before the collection, its last chunk 23 hours before.
      const alive = gated([4, 5, 6]);
      const putAlive = store.blobs.put("d", alive.body);
      await waitUntil(() => pending() === CHUNKS, 20_000);
      age(23);
      alive.next();
      await waitUntil(() => pending() === 2 * CHUNKS, 20_000);
      age(23);
      await store.blobs.put("e", "y");
      alive.next();
      assert.equal((await putAlive).size, 3 * PIECE);
      const d = await store.blobs.get("d");
      assert.equal(d.length, 3 * PIECE);
      [4, 5, 6].forEach((fill, i) => assert.ok(d.subarray(i * PIECE, (i + 1) * PIECE).every((x) => x === fill), `piece ${i}`));
      assert.equal(bodies(), "4|0", "b, c, d and e: one committed body each, none waiting");

      // Puts of one new key at once, and puts replacing and deleting a key: the bodies left are
      // exactly those of the blobs (each replaced one dropped or marked for the next collection).
      await Promise.all(Array.from({ length: 8 }, (_, i) => store.blobs.put("new", Buffer.alloc(10, i))));
      await Promise.all(Array.from({ length: 8 }, (_, i) => store.blobs.put("b", Buffer.alloc(10, i))));
      await store.blobs.delete("c");
      await store.blobs.put("f", "z"); // collects what a failed drop would have left
      const [committed, waiting] = bodies().split("|").map(Number);
      const blobs = Number(pgPsql(`SELECT count(*) FROM "${schema}".persist_blobs`).trim());
      assert.equal(waiting, 0);
      assert.equal(committed, blobs, "one committed body per blob");
      const orphans = pgPsql(`SELECT count(*) FROM "${schema}".persist_blob_bodies b WHERE NOT EXISTS (SELECT 1 FROM "${schema}".persist_blobs WHERE body_id = b.id)`).trim();
      assert.equal(orphans, "0");
    } finally { await store.close(); }
  });

  it("an idle store's calls on its lane: a slow server holds up neither the event loop nor runs anything twice, and writes land", { timeout: 60_000 }, async () => {
    const schema = pgSchema(randomName("lane").replace(/-/g, "_"));
    const store = await createStore({ ...pgConfig(randomName("lane")), schema });
    // Holds an exclusive lock on a table for `ms` from another session; resolves once held,
    // with `released` (settles when the lock is gone).
    const lockFor = (table, ms) => new Promise((resolve, reject) => {
      const psql = spawn("psql", ["-X", "-At", "-h", PG_CONNECTION.host, "-p", String(PG_CONNECTION.port), "-U", PG_CONNECTION.user,
        "-d", PG_CONNECTION.database, "-v", "ON_ERROR_STOP=1", "-f", "-"], { env: { ...process.env, PGPASSWORD: PG_CONNECTION.password } });
      let out = "";
      const done = new Promise((r) => psql.on("close", r));
      psql.stdout.on("data", (d) => { out += d; if (out.includes("locked")) resolve({ released: done }); });
      psql.on("error", reject);
      psql.stdin.end(`BEGIN; LOCK TABLE "${schema}".${table} IN ACCESS EXCLUSIVE MODE;\n\\echo locked\nSELECT pg_sleep(${ms / 1000}); COMMIT;\n`);
    });
    // Statements of this store waiting for a lock (each query sent once: one waiter per call).
    const waiting = () => Number(pgPsql(`SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cuitty-persist/${schema}' AND wait_event_type = 'Lock'`).trim());
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 5);
    try {
      await store.kv.set("k", { v: 1 });
      const docs = store.records.collection("docs");
      await docs.put("a", { n: 1 });
      assert.deepEqual(await store.kv.get("k"), { v: 1 });

      // A write past the caller's-thread budget finishes off the thread and resolves later.
      let { released } = await lockFor("persist_kv", 1500);
      const set = store.kv.set("k", { v: 2 });
      const before = ticks;
      await sleep(400);
      assert.ok(ticks - before >= 20, `the event loop ran only ${ticks - before} timer ticks in 400 ms while a set waited`);
      assert.equal(waiting(), 1, "the set is sent once");
      const entry = await set;
      assert.deepEqual(entry.value, { v: 2 });
      await released;
      assert.deepEqual(await store.kv.get("k"), { v: 2 });

      // A read past the budget: the async path joins it instead of sending it again.
      ({ released } = await lockFor("persist_kv", 1500));
      const get = store.kv.get("k");
      await sleep(400);
      assert.equal(waiting(), 1, "the get is sent once");
      assert.deepEqual(await get, { v: 2 });
      await released;

      // A query the same way.
      ({ released } = await lockFor("persist_records", 1500));
      const tick0 = ticks;
      const found = docs.find({ where: { n: { $gte: 1 } } }).toArray();
      await sleep(400);
      assert.ok(ticks - tick0 >= 20, "the event loop runs while a query waits");
      assert.equal(waiting(), 1, "the query is sent once");
      assert.deepEqual((await found).map((d) => d.id), ["a"]);
      await released;
    } finally {
      clearInterval(timer);
      await store.close();
    }
  });
});
