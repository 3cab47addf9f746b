import assert from "node:assert/strict";
import { it } from "node:test";
import {
  conformance, openFresh, collect, rejectsWith, jsonClone, sleep, byteOrder, assertIsoUtc, randomName,
} from "./support/util.mjs";

const keysOf = (entries) => entries.map((e) => e.key);

await conformance("kv", (a) => {
  it("get of an absent key is undefined; set then get returns the value", async (t) => {
    const s = await openFresh(a, t);
    assert.equal(await s.kv.get("nope"), undefined);
    const entry = await s.kv.set("greeting", { hello: "world" });
    assert.equal(entry.key, "greeting");
    assert.deepEqual(entry.value, { hello: "world" });
    assert.equal(typeof entry.version, "string");
    assert.ok(entry.version.length > 0);
    assert.deepEqual(await s.kv.get("greeting"), { hello: "world" });
  });

  it("values round-trip as JSON.parse(JSON.stringify(v))", async (t) => {
    const s = await openFresh(a, t);
    const date = new Date("2024-02-29T12:34:56.789Z");
    const values = {
      str: "plain",
      unicode: "héllo wörld 日本語 😀 \u2028 \"quotes\" \\ back",
      empty: "",
      int: 42,
      neg: -17,
      float: 3.14159,
      tiny: 1e-7,
      huge: 1.5e300,
      zero: 0,
      t: true,
      f: false,
      nul: null,
      arr: [1, "two", null, false, [3, [4]], { five: 5 }],
      emptyArr: [],
      emptyObj: {},
      nested: { a: { b: { c: { d: [1, 2, { e: "deep" }] } } } },
      nestedUndefined: { keep: 1, drop: undefined, fn() {}, sym: Symbol("x"), inner: { gone: undefined, stay: 2 } },
      arrayHoles: [undefined, () => 1, Symbol("y"), 3],
      date,
      dateNested: { when: date, list: [date] },
      nan: Number.NaN,
      inf: { x: Number.POSITIVE_INFINITY },
      keyOrder: { z: 1, a: 2, m: 3 },
      withToJSON: { toJSON() { return { replaced: true }; } },
    };
    for (const [k, v] of Object.entries(values)) await s.kv.set(`v:${k}`, v);
    for (const [k, v] of Object.entries(values)) {
      assert.deepEqual(await s.kv.get(`v:${k}`), jsonClone(v), `value ${k}`);
    }
    assert.equal(await s.kv.get("v:date"), "2024-02-29T12:34:56.789Z");
    assert.deepEqual(Object.keys(await s.kv.get("v:keyOrder")), ["z", "a", "m"]);
  });

  it("gets issued together each get their own answer; a bad key rejects alone", async (t) => {
    const s = await openFresh(a, t);
    await s.kv.setMany([{ key: "a", value: 1 }, { key: "b", value: null }, { key: "c", value: [3] }]);
    const gets = [s.kv.get("a"), s.kv.get(""), s.kv.get("b"), s.kv.get("absent"), s.kv.get("c"), s.kv.get(42)];
    const settled = await Promise.allSettled(gets);
    assert.deepEqual(settled.map((r) => r.status), ["fulfilled", "rejected", "fulfilled", "fulfilled", "fulfilled", "rejected"]);
    assert.deepEqual([settled[0].value, settled[2].value, settled[3].value, settled[4].value], [1, null, undefined, [3]]);
    assert.equal(settled[1].reason.code, "INVALID_ARGUMENT");
    assert.equal(settled[5].reason.code, "INVALID_ARGUMENT");
  });

  it("getMany returns values in key order with undefined for absent keys", async (t) => {
    const s = await openFresh(a, t);
    await s.kv.set("a", 1);
    await s.kv.set("c", { three: 3 });
    assert.deepEqual(await s.kv.getMany(["c", "missing", "a", "c"]), [{ three: 3 }, undefined, 1, { three: 3 }]);
    assert.deepEqual(await s.kv.getMany([]), []);
  });

  it("getEntry returns key, value, version; undefined when absent; no expiresAt without ttl", async (t) => {
    const s = await openFresh(a, t);
    assert.equal(await s.kv.getEntry("x"), undefined);
    const set = await s.kv.set("x", [1, 2]);
    const e = await s.kv.getEntry("x");
    assert.equal(e.key, "x");
    assert.deepEqual(e.value, [1, 2]);
    assert.equal(e.version, set.version);
    assert.equal(e.expiresAt, undefined);
  });

  it("version is a string that changes on every write, even with the same value", async (t) => {
    const s = await openFresh(a, t);
    const seen = new Set();
    for (let i = 0; i < 5; i++) {
      const e = await s.kv.set("k", "same");
      assert.equal(typeof e.version, "string");
      assert.ok(!seen.has(e.version), `version ${e.version} repeated`);
      seen.add(e.version);
      assert.equal((await s.kv.getEntry("k")).version, e.version);
    }
    await s.kv.setMany([{ key: "k", value: "same" }]);
    assert.ok(!seen.has((await s.kv.getEntry("k")).version), "setMany did not change the version");
  });

  it("ifVersion: null writes only if absent; otherwise CONFLICT writing nothing", async (t) => {
    const s = await openFresh(a, t);
    const first = await s.kv.set("lock", { owner: "a" }, { ifVersion: null });
    assert.deepEqual(first.value, { owner: "a" });
    await rejectsWith(() => s.kv.set("lock", { owner: "b" }, { ifVersion: null }), "CONFLICT");
    const e = await s.kv.getEntry("lock");
    assert.deepEqual(e.value, { owner: "a" });
    assert.equal(e.version, first.version);
  });

  it("ifVersion match writes; mismatch rejects with CONFLICT and writes nothing", async (t) => {
    const s = await openFresh(a, t);
    const v1 = await s.kv.set("n", 1);
    const v2 = await s.kv.set("n", 2, { ifVersion: v1.version });
    assert.notEqual(v2.version, v1.version);
    assert.equal(await s.kv.get("n"), 2);
    await rejectsWith(() => s.kv.set("n", 3, { ifVersion: v1.version }), "CONFLICT");
    const e = await s.kv.getEntry("n");
    assert.equal(e.value, 2);
    assert.equal(e.version, v2.version);
    // a version on an absent key is a mismatch, and nothing is created
    await rejectsWith(() => s.kv.set("absent", 1, { ifVersion: v2.version }), "CONFLICT");
    assert.equal(await s.kv.has("absent"), false);
  });

  it("sets of one key issued together land in the order they were made, plain and compare-and-set alike", async (t) => {
    const s = await openFresh(a, t);
    const first = await s.kv.set("k", 1);
    // One tick: a compare-and-set on what is there now, then a plain set, then another plain set.
    const [cas, plain, last] = await Promise.allSettled([
      s.kv.set("k", 2, { ifVersion: first.version }), s.kv.set("k", 3), s.kv.set("k", 4),
    ]);
    assert.equal(cas.status, "fulfilled", cas.reason?.message);
    assert.equal(plain.status, "fulfilled", plain.reason?.message);
    assert.equal(last.status, "fulfilled", last.reason?.message);
    assert.equal(await s.kv.get("k"), 4);
    assert.equal((await s.kv.getEntry("k")).version, last.value.version);
    // And the other way round: a plain set, then a compare-and-set on the version it replaced.
    const [plain2, stale] = await Promise.allSettled([s.kv.set("k", 5), s.kv.set("k", 6, { ifVersion: last.value.version })]);
    assert.equal(plain2.status, "fulfilled", plain2.reason?.message);
    assert.equal(stale.reason?.code, "CONFLICT", "the compare-and-set made after the plain set sees its version");
    assert.equal(await s.kv.get("k"), 5);
  });

  it("concurrent ifVersion: null writers: exactly one wins", async (t) => {
    const s = await openFresh(a, t);
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => s.kv.set("once", i, { ifVersion: null })));
    const ok = results.filter((r) => r.status === "fulfilled");
    assert.equal(ok.length, 1, "exactly one compare-and-set should win");
    for (const r of results.filter((r) => r.status === "rejected")) assert.equal(r.reason.code, "CONFLICT");
    assert.equal(await s.kv.get("once"), ok[0].value.value);
  });

  it("delete returns true if the key existed, false otherwise", async (t) => {
    const s = await openFresh(a, t);
    await s.kv.set("d", 1);
    assert.equal(await s.kv.delete("d"), true);
    assert.equal(await s.kv.get("d"), undefined);
    assert.equal(await s.kv.has("d"), false);
    assert.equal(await s.kv.delete("d"), false);
    assert.equal(await s.kv.delete("never"), false);
  });

  it("delete with ifVersion: mismatch is CONFLICT and keeps the key; match deletes", async (t) => {
    const s = await openFresh(a, t);
    const v1 = await s.kv.set("d", 1);
    const v2 = await s.kv.set("d", 2);
    await rejectsWith(() => s.kv.delete("d", { ifVersion: v1.version }), "CONFLICT");
    assert.equal(await s.kv.get("d"), 2);
    assert.equal(await s.kv.delete("d", { ifVersion: v2.version }), true);
    assert.equal(await s.kv.has("d"), false);
  });

  it("has reflects presence, including falsy values", async (t) => {
    const s = await openFresh(a, t);
    assert.equal(await s.kv.has("k"), false);
    for (const v of [null, 0, false, ""]) {
      await s.kv.set("k", v);
      assert.equal(await s.kv.has("k"), true, `has() with value ${JSON.stringify(v)}`);
      assert.equal(await s.kv.get("k"), v);
    }
  });

  it("setMany writes every entry", async (t) => {
    const s = await openFresh(a, t);
    await s.kv.set("old", "before");
    const r = await s.kv.setMany([
      { key: "m1", value: { a: 1 } },
      { key: "m2", value: [2] },
      { key: "old", value: "after" },
    ]);
    assert.equal(r, undefined);
    assert.deepEqual(await s.kv.getMany(["m1", "m2", "old"]), [{ a: 1 }, [2], "after"]);
  });

  it("setMany is all or nothing: one bad value writes nothing", async (t) => {
    const s = await openFresh(a, t);
    await s.kv.set("keep", "original");
    await rejectsWith(() => s.kv.setMany([
      { key: "n1", value: 1 },
      { key: "keep", value: "changed" },
      { key: "bad", value: { big: 10n } },
      { key: "n2", value: 2 },
    ]), "INVALID_VALUE");
    assert.deepEqual(await s.kv.getMany(["n1", "keep", "bad", "n2"]), [undefined, "original", undefined, undefined]);
    await rejectsWith(() => s.kv.setMany([
      { key: "n3", value: 3 },
      { key: "", value: 4 },
    ]), "INVALID_ARGUMENT");
    assert.equal(await s.kv.has("n3"), false);
    assert.deepEqual(keysOf(await collect(s.kv.list())), ["keep"]);
  });

  it("ttl: an expired key is absent from get, getMany, getEntry, has and list", async (t) => {
    const s = await openFresh(a, t);
    const before = Date.now();
    const e = await s.kv.set("temp", "soon gone", { ttl: 400 });
    await s.kv.setMany([{ key: "temp2", value: 2, ttl: 400 }, { key: "stay2", value: 3 }]);
    await s.kv.set("stay", "here");
    assertIsoUtc(e.expiresAt, "expiresAt");
    const exp = Date.parse(e.expiresAt);
    assert.ok(exp >= before + 300 && exp <= Date.now() + 2000, `expiresAt ${e.expiresAt} not about now+400ms`);
    const entry = await s.kv.getEntry("temp");
    assertIsoUtc(entry.expiresAt, "getEntry().expiresAt");
    assert.equal(await s.kv.get("temp"), "soon gone");
    assert.equal(await s.kv.get("temp2"), 2);
    await sleep(900);
    assert.equal(await s.kv.get("temp"), undefined);
    assert.equal(await s.kv.get("temp2"), undefined);
    assert.equal(await s.kv.getEntry("temp"), undefined);
    assert.equal(await s.kv.has("temp"), false);
    assert.deepEqual(await s.kv.getMany(["temp", "stay", "temp2"]), [undefined, "here", undefined]);
    assert.deepEqual(keysOf(await collect(s.kv.list())), ["stay", "stay2"]);
    assert.deepEqual(keysOf(await collect(s.kv.list({ prefix: "te" }))), []);
    assert.deepEqual(keysOf(await collect(s.kv.list({ reverse: true }))), ["stay2", "stay"]);
  });

  it("list yields every entry in ascending UTF-8 byte order, including non-ASCII keys", async (t) => {
    const s = await openFresh(a, t);
    // "\uFF5E" (EF BD 9E) sorts before "😀" (F0 9F 98 80) in UTF-8 bytes but after it in UTF-16 units
    const keys = ["b", "a", "B", "é", "z", "ä", "日本", "😀", "\uFF5E", "a b", "a/b", "a\u0001", "Z", "0", "~", "\u007f"];
    for (const [i, k] of keys.entries()) await s.kv.set(k, { i });
    const expected = [...keys].sort(byteOrder);
    const entries = await collect(s.kv.list());
    assert.deepEqual(keysOf(entries), expected);
    for (const e of entries) {
      assert.deepEqual(e.value, { i: keys.indexOf(e.key) });
      assert.equal(typeof e.version, "string");
      assert.equal(e.version, (await s.kv.getEntry(e.key)).version);
    }
    assert.deepEqual(keysOf(await collect(s.kv.list({ reverse: true }))), [...expected].reverse());
  });

  it("list across several pages: every key once, in order, with limits and keys that need escaping", async (t) => {
    const s = await openFresh(a, t);
    // 2,600 keys: more than two native pages; a few need escaping in JSON (quote, backslash,
    // newline, control character), one of them the last key of a page.
    const keys = Array.from({ length: 2600 }, (_, i) => `p:${String(i).padStart(5, "0")}`);
    for (const i of [0, 255, 256, 999, 1000, 1255, 2599]) keys[i] += ['"q', "\\b", "\nn", "\u0001c"][i % 4];
    for (let i = 0; i < keys.length; i += 500) {
      await s.kv.setMany(keys.slice(i, i + 500).map((key, j) => ({ key, value: { n: i + j } })));
    }
    const expected = [...keys].sort(byteOrder);
    const all = await collect(s.kv.list({ prefix: "p:" }));
    assert.deepEqual(keysOf(all), expected);
    assert.ok(all.every((e) => e.value.n === keys.indexOf(e.key)));
    assert.deepEqual(keysOf(await collect(s.kv.list({ prefix: "p:", reverse: true }))), [...expected].reverse());
    for (const limit of [255, 256, 1000, 1001, 2599, 2600, 5000]) {
      assert.deepEqual(keysOf(await collect(s.kv.list({ prefix: "p:", limit }))), expected.slice(0, limit), `limit ${limit}`);
    }
    // Stopping early (break) leaves nothing pending: a later list still sees every key.
    let seen = 0;
    for await (const _ of s.kv.list({ prefix: "p:" })) if (++seen === 1300) break;
    assert.equal(seen, 1300);
    assert.equal((await collect(s.kv.list({ prefix: "p:", start: expected[2000] }))).length, 600);
  });

  it("list on an empty store yields nothing", async (t) => {
    const s = await openFresh(a, t);
    assert.deepEqual(await collect(s.kv.list()), []);
    assert.deepEqual(await collect(s.kv.list({ prefix: "x", reverse: true, limit: 3 })), []);
  });

  it("list prefix matches literally (no wildcards) and never escapes the prefix", async (t) => {
    const s = await openFresh(a, t);
    const keys = ["user:1", "user:2", "user:10", "users", "use", "user", "usfr:1",
      "a%b", "a%c", "axb", "a_1", "ab1", "a*", "a\\b", "a\\c", "é:1", "é:2", "e:1", "user:\u00ff", "user;"];
    await s.kv.setMany(keys.map((k) => ({ key: k, value: k })));
    const list = async (opts) => keysOf(await collect(s.kv.list(opts)));
    assert.deepEqual(await list({ prefix: "user:" }), ["user:1", "user:10", "user:2", "user:\u00ff"]);
    assert.deepEqual(await list({ prefix: "user" }), ["user", "user:1", "user:10", "user:2", "user:\u00ff", "user;", "users"]);
    assert.deepEqual(await list({ prefix: "a%" }), ["a%b", "a%c"]);
    assert.deepEqual(await list({ prefix: "a_" }), ["a_1"]);
    assert.deepEqual(await list({ prefix: "a*" }), ["a*"]);
    assert.deepEqual(await list({ prefix: "a\\" }), ["a\\b", "a\\c"]);
    assert.deepEqual(await list({ prefix: "é:" }), ["é:1", "é:2"]);
    assert.deepEqual(await list({ prefix: "user:", reverse: true }), ["user:\u00ff", "user:2", "user:10", "user:1"]);
    assert.deepEqual(await list({ prefix: "user:", limit: 2 }), ["user:1", "user:10"]);
    assert.deepEqual(await list({ prefix: "nomatch" }), []);
  });

  it("list start is inclusive and end exclusive, alone and together, forward and reverse", async (t) => {
    const s = await openFresh(a, t);
    const keys = ["a", "b", "c", "d", "e", "é"];
    await s.kv.setMany(keys.map((k) => ({ key: k, value: k })));
    const list = async (opts) => keysOf(await collect(s.kv.list(opts)));
    assert.deepEqual(await list({ start: "b" }), ["b", "c", "d", "e", "é"]);
    assert.deepEqual(await list({ end: "c" }), ["a", "b"]);
    assert.deepEqual(await list({ start: "b", end: "e" }), ["b", "c", "d"]);
    assert.deepEqual(await list({ start: "bb", end: "dd" }), ["c", "d"]);
    assert.deepEqual(await list({ start: "f" }), ["é"]);
    assert.deepEqual(await list({ start: "b", end: "e", reverse: true }), ["d", "c", "b"]);
    assert.deepEqual(await list({ start: "c", limit: 2 }), ["c", "d"]);
    assert.deepEqual(await list({ end: "d", reverse: true, limit: 2 }), ["c", "b"]);
  });

  it("list limit takes the first entries; with reverse the last ones", async (t) => {
    const s = await openFresh(a, t);
    await s.kv.setMany(["k1", "k2", "k3", "k4"].map((k) => ({ key: k, value: 0 })));
    assert.deepEqual(keysOf(await collect(s.kv.list({ limit: 2 }))), ["k1", "k2"]);
    assert.deepEqual(keysOf(await collect(s.kv.list({ limit: 2, reverse: true }))), ["k4", "k3"]);
    assert.deepEqual(keysOf(await collect(s.kv.list({ limit: 10 }))), ["k1", "k2", "k3", "k4"]);
  });

  it("paging through list with limit and start/end equals the unpaged list (many keys)", async (t) => {
    const s = await openFresh(a, t);
    const keys = Array.from({ length: 537 }, (_, i) => `key-${String(i * 7919 % 1000).padStart(4, "0")}-${i % 3 ? "x" : "é"}`);
    for (let i = 0; i < keys.length; i += 100) {
      await s.kv.setMany(keys.slice(i, i + 100).map((k) => ({ key: k, value: { k } })));
    }
    const all = keysOf(await collect(s.kv.list()));
    assert.deepEqual(all, [...keys].sort(byteOrder));
    // forward: start is inclusive, so re-request from the last key and drop it
    const forward = [];
    let start;
    for (;;) {
      const page = keysOf(await collect(s.kv.list({ start, limit: 50 })));
      const fresh = start === undefined ? page : page.slice(1);
      if (start !== undefined) assert.equal(page[0], start);
      forward.push(...fresh);
      if (page.length < 50) break;
      start = page.at(-1);
    }
    assert.deepEqual(forward, all);
    // reverse: end is exclusive, so the last key seen is the next end
    const backward = [];
    let end;
    for (;;) {
      const page = keysOf(await collect(s.kv.list({ end, limit: 64, reverse: true })));
      backward.push(...page);
      if (page.length < 64) break;
      end = page.at(-1);
    }
    assert.deepEqual(backward, [...all].reverse());
  });

  it("keys that look like paths, SQL or other namespaces are plain keys", async (t) => {
    const s = await openFresh(a, t);
    const keys = ["'; DROP TABLE kv; --", "../../etc/passwd", "kv/x", "records/c/1", "a/../b", "%", "_", "\\", "*", " ", "é".repeat(512)];
    for (const k of keys) await s.kv.set(k, k);
    for (const k of keys) assert.equal(await s.kv.get(k), k, `key ${JSON.stringify(k).slice(0, 40)}`);
    assert.deepEqual(keysOf(await collect(s.kv.list())), [...keys].sort(byteOrder));
    assert.equal(await s.kv.get("b"), undefined);
    assert.equal(await s.kv.get("x"), undefined);
  });

  it("two store names never see each other's kv data", async (t) => {
    const location = randomName("loc");
    const s1 = await a.open(randomName(), { location });
    t.after(() => s1.close().catch(() => {}));
    const s2 = await a.open(randomName(), { location });
    t.after(() => s2.close().catch(() => {}));
    await s1.kv.set("shared-key", "one");
    await s1.kv.set("only-one", 1);
    assert.equal(await s2.kv.get("shared-key"), undefined);
    assert.equal(await s2.kv.has("only-one"), false);
    await s2.kv.set("shared-key", "two");
    assert.equal(await s1.kv.get("shared-key"), "one");
    assert.equal(await s2.kv.get("shared-key"), "two");
    assert.deepEqual(keysOf(await collect(s2.kv.list())), ["shared-key"]);
    assert.equal(await s2.kv.delete("only-one"), false);
    assert.equal(await s1.kv.get("only-one"), 1);
  });

  if (a.caps?.persistent) {
    it("kv data survives close and reopen of the same store name", async (t) => {
      const name = randomName();
      const location = randomName("loc");
      const s1 = await a.open(name, { location });
      const e = await s1.kv.set("durable", { x: 1 });
      await s1.close();
      const s2 = await a.open(name, { location });
      t.after(() => s2.close().catch(() => {}));
      const got = await s2.kv.getEntry("durable");
      assert.deepEqual(got.value, { x: 1 });
      assert.equal(got.version, e.version);
    });
  }
});
