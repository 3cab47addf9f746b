import assert from "node:assert/strict";
import { it } from "node:test";
import {
  conformance, openFresh, collect, rejectsWith, iterRejectsWith, jsonClone, assertIsoUtc, randomName, sleep,
} from "./support/util.mjs";

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/i;
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ulidTime = (id) => [...id.slice(0, 10).toUpperCase()].reduce((acc, c) => acc * 32 + CROCKFORD.indexOf(c), 0);
const ids = (docs) => docs.map((d) => d.id);

/** The ids of `query` read in pages of `size`, each page after the last id of the one before. */
async function pagedIds(col, query, size) {
  const out = [];
  let after;
  for (let guard = 0; guard < 1000; guard++) {
    const page = ids(await col.find({ ...query, limit: size, ...(after ? { after } : {}) }).toArray());
    assert.ok(page.length <= size);
    out.push(...page);
    if (page.length < size) return out;
    after = page.at(-1);
  }
  assert.fail(`paging ${JSON.stringify(query)} did not end`);
}

// Fixed data set for find(); ids are chosen so that default (id) order is d01..d08.
const PEOPLE = {
  d01: { name: "alice", age: 30, status: "open", tags: ["a", "b"], address: { city: "Paris", zip: "75001" }, score: 10, flag: true },
  d02: { name: "bob", age: 25, status: "closed", address: { city: "Berlin" }, score: 2.5, flag: false },
  d03: { name: "carol", age: 35, status: "open", address: { city: "paris" }, score: -1, flag: true },
  d04: { name: "dave", age: "40", status: null, score: "10" },
  d05: { name: "eve", age: null, status: "pending", address: null, score: true },
  d06: { name: "frank", age: 28, address: { city: "Paris", geo: { lat: 48.8 } }, score: [1] },
  d07: { name: "alicia", age: 30, status: "open", score: { v: 1 } },
  d08: { name: "Álvaro", age: 45, status: "closed", flag: 1 },
};

// [where, expected ids in default (id) order]
const WHERE_CASES = [
  [{}, ["d01", "d02", "d03", "d04", "d05", "d06", "d07", "d08"]],
  [{ status: "open" }, ["d01", "d03", "d07"]],
  [{ status: null }, ["d04"]],
  [{ age: 30 }, ["d01", "d07"]],
  [{ age: "40" }, ["d04"]],
  [{ flag: true }, ["d01", "d03"]],
  [{ flag: 1 }, ["d08"]],
  [{ score: 10 }, ["d01"]],
  [{ score: "10" }, ["d04"]],
  [{ status: "open", age: 30 }, ["d01", "d07"]],
  [{ age: { $eq: 30 } }, ["d01", "d07"]],
  [{ status: { $eq: null } }, ["d04"]],
  [{ status: { $ne: "open" } }, ["d02", "d04", "d05", "d06", "d08"]],
  [{ age: { $ne: 30 } }, ["d02", "d03", "d04", "d05", "d06", "d08"]],
  [{ age: { $gt: 30 } }, ["d03", "d08"]],
  [{ age: { $gte: 30 } }, ["d01", "d03", "d07", "d08"]],
  [{ age: { $lt: 30 } }, ["d02", "d06"]],
  [{ age: { $lte: 28 } }, ["d02", "d06"]],
  [{ age: { $gte: 26, $lt: 35 } }, ["d01", "d06", "d07"]],
  [{ age: { $gt: "3" } }, ["d04"]],
  [{ score: { $gt: 0 } }, ["d01", "d02"]],
  [{ score: { $lt: 3 } }, ["d02", "d03"]],
  [{ name: { $gt: "carol" } }, ["d04", "d05", "d06", "d08"]],
  [{ name: { $lt: "b" } }, ["d01", "d07"]],
  [{ status: { $in: ["open", "pending"] } }, ["d01", "d03", "d05", "d07"]],
  [{ age: { $in: [30, "40"] } }, ["d01", "d04", "d07"]],
  [{ age: { $in: ["30", true] } }, []],
  [{ status: { $nin: ["open", "closed"] } }, ["d04", "d05", "d06"]],
  [{ status: { $exists: true } }, ["d01", "d02", "d03", "d04", "d05", "d07", "d08"]],
  [{ status: { $exists: false } }, ["d06"]],
  [{ address: { $exists: true } }, ["d01", "d02", "d03", "d05", "d06"]],
  [{ "address.city": "Paris" }, ["d01", "d06"]],
  [{ "address.city": { $exists: false } }, ["d04", "d05", "d07", "d08"]],
  [{ "address.geo.lat": { $gt: 48 } }, ["d06"]],
  [{ "address.zip": "75001" }, ["d01"]],
  [{ "address.city": { $ne: "Paris" } }, ["d02", "d03", "d04", "d05", "d07", "d08"]],
  [{ name: { $prefix: "ali" } }, ["d01", "d07"]],
  [{ name: { $prefix: "Á" } }, ["d08"]],
  [{ score: { $prefix: "1" } }, ["d04"]],
  [{ tags: { $exists: true } }, ["d01"]],
  [{ $and: [{ status: "open" }, { age: { $gt: 30 } }] }, ["d03"]],
  [{ $or: [{ status: "pending" }, { "address.city": "Berlin" }] }, ["d02", "d05"]],
  [{ $not: { status: "open" } }, ["d02", "d04", "d05", "d06", "d08"]],
  [{ $or: [{ $and: [{ status: "open" }, { flag: true }] }, { $not: { age: { $exists: true } } }] }, ["d01", "d03"]],
  [{ $and: [{ $or: [{ age: 25 }, { age: 45 }] }, { $not: { status: "open" } }] }, ["d02", "d08"]],
  [{ name: "nobody" }, []],
];

async function seedPeople(col) {
  // insert in a scrambled order so insertion order is not id order
  for (const id of ["d05", "d02", "d08", "d01", "d07", "d04", "d06", "d03"]) await col.insert(PEOPLE[id], { id });
}

// Mixed-type ordering: missing < null < boolean < number < string < array < object; ties break by
// id in the direction of the last sort key.
const MIXED = {
  m01: {}, m02: { v: null }, m03: { v: false }, m04: { v: true }, m05: { v: -5 }, m06: { v: 2 },
  m07: { v: 10 }, m08: { v: "10" }, m09: { v: "abc" }, m10: { v: [1] }, m11: { v: { a: 1 } },
  m12: { v: 2 }, m13: { v: "B" }, m14: { other: 1 },
};
const MIXED_ASC = ["m01", "m14", "m02", "m03", "m04", "m05", "m06", "m12", "m07", "m08", "m13", "m09", "m10", "m11"];
const MIXED_DESC = ["m11", "m10", "m09", "m13", "m08", "m07", "m12", "m06", "m05", "m04", "m03", "m02", "m14", "m01"];

await conformance("records", (a) => {
  it("insert generates a 26-char ULID id, version 1, ISO timestamps and returns the data", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("users");
    const before = Date.now();
    const doc = await col.insert({ name: "Ada", tags: ["x"], nested: { a: 1, gone: undefined } });
    assert.match(doc.id, ULID);
    const ts = ulidTime(doc.id);
    assert.ok(ts >= before - 60_000 && ts <= Date.now() + 60_000, `ULID time ${ts} is not about now`);
    assert.equal(doc.version, 1);
    assertIsoUtc(doc.createdAt, "createdAt");
    assertIsoUtc(doc.updatedAt, "updatedAt");
    assert.equal(doc.createdAt, doc.updatedAt);
    assert.ok(Math.abs(Date.parse(doc.createdAt) - Date.now()) < 60_000);
    assert.deepEqual(doc.data, { name: "Ada", tags: ["x"], nested: { a: 1 } });
    assert.deepEqual(await col.get(doc.id), doc);
  });

  it("generated ids are strictly increasing within a process; concurrent inserts get unique ids", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("seq");
    let prev = "";
    for (let i = 0; i < 150; i++) {
      const { id } = await col.insert({ i });
      assert.match(id, ULID);
      assert.ok(id > prev, `id ${id} is not greater than ${prev}`);
      prev = id;
    }
    const docs = await Promise.all(Array.from({ length: 60 }, (_, i) => col.insert({ c: i })));
    assert.equal(new Set(ids(docs)).size, 60);
    assert.equal(await col.count(), 210);
  });

  it("insert with an explicit id; CONFLICT when the id is taken, leaving the original", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    const doc = await col.insert({ v: 1 }, { id: "my-id" });
    assert.equal(doc.id, "my-id");
    assert.equal(doc.version, 1);
    await rejectsWith(() => col.insert({ v: 2 }, { id: "my-id" }), "CONFLICT");
    const got = await col.get("my-id");
    assert.deepEqual(got, doc);
    assert.equal(await col.count(), 1);
  });

  it("get of an absent id is undefined", async (t) => {
    const s = await openFresh(a, t);
    assert.equal(await s.records.collection("c").get("absent"), undefined);
  });

  it("put upserts: creates at version 1, replaces data (no merge) at version 2, keeps createdAt", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    const d1 = await col.put("p", { a: 1, b: { x: 1 } });
    assert.equal(d1.id, "p");
    assert.equal(d1.version, 1);
    assert.equal(d1.createdAt, d1.updatedAt);
    await sleep(15);
    const d2 = await col.put("p", { c: 3 });
    assert.equal(d2.version, 2);
    assert.deepEqual(d2.data, { c: 3 });
    assert.equal(d2.createdAt, d1.createdAt);
    assertIsoUtc(d2.updatedAt);
    assert.ok(Date.parse(d2.updatedAt) > Date.parse(d1.updatedAt), "updatedAt did not move forward");
    assert.deepEqual(await col.get("p"), d2);
  });

  it("put ifVersion: null only if absent; number must match; mismatch is CONFLICT writing nothing", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    const d1 = await col.put("p", { v: 1 }, { ifVersion: null });
    assert.equal(d1.version, 1);
    await rejectsWith(() => col.put("p", { v: "x" }, { ifVersion: null }), "CONFLICT");
    const d2 = await col.put("p", { v: 2 }, { ifVersion: 1 });
    assert.equal(d2.version, 2);
    await rejectsWith(() => col.put("p", { v: "y" }, { ifVersion: 1 }), "CONFLICT");
    await rejectsWith(() => col.put("p", { v: "z" }, { ifVersion: 3 }), "CONFLICT");
    assert.deepEqual(await col.get("p"), d2);
    await rejectsWith(() => col.put("q", { v: 1 }, { ifVersion: 1 }), "CONFLICT");
    assert.equal(await col.get("q"), undefined);
  });

  it("puts issued together: each settles alone, with its own version; other collections", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("many");
    const other = s.records.collection("other");
    await col.put("cond", { v: 0 });
    // 64 distinct ids in one tick, in shuffled order, plus a repeat, a failing and a passing
    // condition, an invalid id and document, and another collection.
    const n = 64;
    const order = Array.from({ length: n }, (_, i) => (i * 37) % n);
    const calls = order.map((i) => col.put(`p${String(i).padStart(2, "0")}`, { i, text: `doc ${i}` }));
    calls.push(col.put("p07", { i: 7, again: true }));
    calls.push(col.put("cond", { v: 1 }, { ifVersion: 5 }));
    calls.push(col.put("cond", { v: 2 }, { ifVersion: 1 }));
    calls.push(col.put("", { bad: "id" }));
    calls.push(col.put("p99", [1, 2]));
    calls.push(col.put("p98", { v: 1 }, { ifVersion: 1.5 }));
    calls.push(other.put("p01", { other: true }));
    const settled = await Promise.allSettled(calls);
    for (let k = 0; k < n; k++) {
      const i = order[k];
      assert.equal(settled[k].status, "fulfilled", `put ${i}: ${settled[k].reason}`);
      const d = settled[k].value;
      assert.equal(d.id, `p${String(i).padStart(2, "0")}`);
      assert.deepEqual(d.data, { i, text: `doc ${i}` });
      if (i !== 7) assert.equal(d.version, 1);
      assertIsoUtc(d.createdAt);
    }
    const [again, failed, passed, badId, badDoc, badVersion, inOther] = settled.slice(n);
    // Two puts of p07 in one tick: one applies after the other (which one first is not promised
    // where puts run concurrently); the record is the one at version 2.
    assert.equal(again.status, "fulfilled");
    const first7 = settled[order.indexOf(7)].value;
    assert.deepEqual([first7.version, again.value.version].sort(), [1, 2]);
    assert.equal(again.value.createdAt, first7.createdAt);
    const last7 = first7.version === 2 ? first7 : again.value;
    assert.equal(failed.status, "rejected");
    assert.equal(failed.reason.code, "CONFLICT");
    assert.equal(passed.status, "fulfilled");
    assert.equal(passed.value.version, 2);
    assert.equal(badId.reason?.code, "INVALID_ARGUMENT");
    assert.equal(badDoc.reason?.code, "INVALID_VALUE");
    assert.equal(badVersion.reason?.code, "INVALID_ARGUMENT");
    assert.equal(inOther.value?.version, 1);
    assert.equal(await col.count(), n + 1);
    assert.deepEqual(await col.get("p07"), last7);
    assert.deepEqual((await col.get("cond")).data, { v: 2 });
    assert.equal(await col.get("p99"), undefined);
    assert.equal(await col.get("p98"), undefined);
    assert.deepEqual((await other.get("p01")).data, { other: true });
    assert.deepEqual((await col.get("p01")).data, { i: 1, text: "doc 1" });
    // And again, all at once: every one moves to version 2 (p07 to 3), createdAt kept.
    const second = await Promise.all(order.map((i) => col.put(`p${String(i).padStart(2, "0")}`, { i, round: 2 })));
    for (const [k, d] of second.entries()) {
      assert.equal(d.version, order[k] === 7 ? 3 : 2);
      assert.equal(d.createdAt, settled[k].value.createdAt);
      assert.deepEqual(await col.get(d.id), d);
    }
  });

  it("documents holding U+0000 and surrogate pairs round-trip exactly and are queried", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("odd");
    const docs = {
      nul: { s: "a\u0000b", n: 1, ["k\u0000"]: true },
      pair: { s: "\ud83d\ude00", n: 2, nested: { t: ["x\udbff\udfff"] } },
      slash: { s: "\\ud800", n: 3 },
    };
    // One at a time, then all together (a batch on backends that batch puts).
    await col.put("first", docs.pair);
    const put = await Promise.all(Object.entries(docs).map(([id, d]) => col.put(id, d)));
    for (const d of put) assert.deepEqual(d.data, docs[d.id]);
    for (const [id, d] of Object.entries(docs)) assert.deepEqual((await col.get(id)).data, d);
    const found = await col.find({ where: { n: { $gte: 2 } }, orderBy: { field: "n", direction: "desc" } }).toArray();
    assert.deepEqual(ids(found), ["slash", "pair", "first"]);
    assert.deepEqual(found[1].data, docs.pair);
    assert.deepEqual(ids(await col.find({ where: { s: "\ud83d\ude00" } }).toArray()), ["first", "pair"]);
    assert.deepEqual(ids(await col.find({ where: { s: "a\u0000b" } }).toArray()), ["nul"]);
    assert.deepEqual(ids(await col.find({ where: { s: "\\ud800" } }).toArray()), ["slash"]);
    assert.equal(await col.count({ n: 1 }), 1);
  });

  it("documents read back with their keys in the order written (one put, puts together, get and find)", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("order");
    // Orders a sorting store would change (jsonb sorts members by length, then bytes), nested
    // ones, many keys, and values a store might print differently (exponents, U+0000).
    const docs = {
      flat: { title: "Task 1", done: false, priority: 7, tags: ["work", "home"] },
      sorted: { a: 1, bb: 2, ccc: 3 },
      nested: { z: { bb: 1, a: [0.5, "x", null, true] }, a: "é\n\"" },
      inArray: { v: [{ bb: 1, a: 2 }] },
      exponent: { n: 1e21, m: 1e-7 },
      nul: { s: "a\u0000b" },
      many: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`k${199 - i}`, i])),
    };
    for (const [id, d] of Object.entries(docs)) await col.put(id, d);
    await Promise.all(Object.entries(docs).map(([id, d]) => col.put(`${id}-together`, d)));
    for (const [id, d] of Object.entries(docs)) {
      for (const key of [id, `${id}-together`]) {
        assert.equal(JSON.stringify((await col.get(key)).data), JSON.stringify(d), `${key} reads back in its key order`);
      }
    }
    const [found] = await col.find({ where: { priority: { $gte: 7 } } }).toArray();
    assert.equal(JSON.stringify(found.data), JSON.stringify(docs.flat));
  });

  it("arrays and objects holding numbers sort by the text JSON.stringify gives them (1e+21, 0.000005), in pages too", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("numtext");
    const docs = { e1: [1e21], e2: [1e-7], e3: [0.000005], e4: [18446744073709552000], e5: [2], e6: { n: 1e21 }, e7: { n: 5e-7 } };
    await Promise.all(Object.entries(docs).map(([id, v]) => col.put(id, { v })));
    const text = (id) => JSON.stringify(docs[id]);
    const byText = (ids) => [...ids].sort((x, y) => (text(x) < text(y) ? -1 : text(x) > text(y) ? 1 : 0));
    const arrays = byText(["e1", "e2", "e3", "e4", "e5"]);
    const objects = byText(["e6", "e7"]);
    assert.deepEqual(arrays, ["e3", "e4", "e1", "e2", "e5"]); // the rule, spelled out
    const check = async (label) => {
      for (const [direction, expected] of [["asc", [...arrays, ...objects]], ["desc", [...objects].reverse().concat([...arrays].reverse())]]) {
        const orderBy = { field: "v", direction };
        assert.deepEqual(ids(await col.find({ orderBy }).toArray()), expected, `${label}: ${direction}`);
        assert.deepEqual(await pagedIds(col, { orderBy }, 1), expected, `${label}: ${direction} in pages of 1`);
      }
    };
    await check("as put");
    // An update that does not touch v keeps its text as JSON.stringify writes it.
    for (const id of ["e3", "e4", "e6"]) await col.update(id, { touched: 1 });
    await check("after update");
  });

  it("arrays sort before objects, each by its minified JSON text with keys in the order written; paged the same", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("composite");
    const values = [[1, 2], [1, 10], [1, "x", null], [], {}, { a: 1, bb: 2 }, { bb: 1, a: 2 }, { a: 1 }, [{ bb: 1, a: 2 }], [{ a: 2, bb: 1 }], ["b"], [0.5], [1e-7], [1, 3], [1, 2, { bb: 1, a: 2 }]];
    const idOf = (i) => `c${String(i).padStart(2, "0")}`;
    await Promise.all(values.map((v, i) => col.put(idOf(i), { v, w: i % 3 })));
    const text = (i) => `${Array.isArray(values[i]) ? 0 : 1}${JSON.stringify(values[i])}`;
    const byV = values.map((_, i) => i).sort((x, y) => (text(x) < text(y) ? -1 : text(x) > text(y) ? 1 : 0));
    const cases = [
      [[{ field: "v", direction: "asc" }], byV.map(idOf)],
      [[{ field: "v", direction: "desc" }], [...byV].reverse().map(idOf)],
      [[{ field: "w", direction: "asc" }, { field: "v", direction: "desc" }], [0, 1, 2].flatMap((w) => [...byV].reverse().filter((i) => i % 3 === w)).map(idOf)],
    ];
    for (const [orderBy, want] of cases) {
      assert.deepEqual(ids(await col.find({ orderBy }).toArray()), want, JSON.stringify(orderBy));
      assert.deepEqual(await pagedIds(col, { orderBy }, 4), want, `paged ${JSON.stringify(orderBy)}`);
    }
  });

  it("update shallow-merges the patch and bumps the version", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    const d1 = await col.insert({ a: 1, b: { x: 1, y: 2 }, c: 3 }, { id: "u" });
    await sleep(15);
    const d2 = await col.update("u", { b: { x: 9 }, d: 4 });
    assert.deepEqual(d2.data, { a: 1, b: { x: 9 }, c: 3, d: 4 });
    assert.equal(d2.version, 2);
    assert.equal(d2.createdAt, d1.createdAt);
    assert.ok(Date.parse(d2.updatedAt) > Date.parse(d1.updatedAt));
    const d3 = await col.update("u", { a: null });
    assert.deepEqual(d3.data, { a: null, b: { x: 9 }, c: 3, d: 4 });
    assert.equal(d3.version, 3);
    assert.deepEqual(await col.get("u"), d3);
  });

  it("update of an absent id is NOT_FOUND and creates nothing", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    await rejectsWith(() => col.update("ghost", { a: 1 }), "NOT_FOUND");
    assert.equal(await col.get("ghost"), undefined);
    assert.equal(await col.count(), 0);
  });

  it("update ifVersion: match writes; mismatch is CONFLICT writing nothing", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    await col.insert({ a: 1 }, { id: "u" });
    const d2 = await col.update("u", { a: 2 }, { ifVersion: 1 });
    assert.equal(d2.version, 2);
    await rejectsWith(() => col.update("u", { a: 3 }, { ifVersion: 1 }), "CONFLICT");
    assert.deepEqual(await col.get("u"), d2);
  });

  it("versions go up by exactly one on every write", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    let doc = await col.insert({ n: 0 });
    assert.equal(doc.version, 1);
    for (let i = 1; i <= 6; i++) {
      doc = i % 2 ? await col.update(doc.id, { n: i }) : await col.put(doc.id, { n: i });
      assert.equal(doc.version, i + 1);
      assert.equal((await col.get(doc.id)).version, i + 1);
    }
  });

  it("delete returns true if it existed; ifVersion mismatch is CONFLICT and keeps the doc", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    await col.insert({ a: 1 }, { id: "x" });
    await col.update("x", { a: 2 });
    await rejectsWith(() => col.delete("x", { ifVersion: 1 }), "CONFLICT");
    assert.equal((await col.get("x")).version, 2);
    assert.equal(await col.delete("x", { ifVersion: 2 }), true);
    assert.equal(await col.get("x"), undefined);
    assert.equal(await col.delete("x"), false);
    assert.equal(await col.delete("never"), false);
    // the id is free again
    const again = await col.insert({ a: 3 }, { id: "x" });
    assert.deepEqual(again.data, { a: 3 });
    assert.equal(await col.count(), 1);
  });

  it("find with no query returns every document in id order; toArray equals iteration", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("people");
    assert.deepEqual(await col.find().toArray(), []);
    await seedPeople(col);
    const iterated = await collect(col.find());
    assert.deepEqual(ids(iterated), Object.keys(PEOPLE));
    assert.deepEqual(await col.find().toArray(), iterated);
    assert.deepEqual(await col.find({}).toArray(), iterated);
    for (const d of iterated) {
      assert.deepEqual(d.data, jsonClone(PEOPLE[d.id]));
      assert.equal(d.version, 1);
      assertIsoUtc(d.createdAt);
    }
  });

  it("find: every operator, dot paths, $and/$or/$not, type strictness", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("people");
    await seedPeople(col);
    for (const [where, expected] of WHERE_CASES) {
      const found = await col.find({ where }).toArray();
      assert.deepEqual(ids(found), expected, `where ${JSON.stringify(where)}`);
      assert.equal(await col.count(where), expected.length, `count ${JSON.stringify(where)}`);
    }
  });

  it("where fields are paths into data only, never the record's id or metadata", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    await col.insert({ id: "inner", version: 7 }, { id: "outer" });
    await col.insert({ other: 1 }, { id: "inner" });
    assert.deepEqual(ids(await col.find({ where: { id: "inner" } }).toArray()), ["outer"]);
    assert.deepEqual(ids(await col.find({ where: { id: "outer" } }).toArray()), []);
    assert.deepEqual(ids(await col.find({ where: { version: 7 } }).toArray()), ["outer"]);
    assert.deepEqual(ids(await col.find({ where: { version: 1 } }).toArray()), []);
    assert.deepEqual(ids(await col.find({ where: { "data.other": 1 } }).toArray()), []);
  });

  it("count with and without a where", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("people");
    assert.equal(await col.count(), 0);
    await seedPeople(col);
    assert.equal(await col.count(), 8);
    assert.equal(await col.count({}), 8);
    assert.equal(await col.count({ status: "open" }), 3);
    await col.delete("d01");
    assert.equal(await col.count({ status: "open" }), 2);
  });

  it("orderBy over mixed types: missing < null < boolean < number < string < array < object, ties by id", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("mixed");
    for (const id of [...Object.keys(MIXED)].reverse()) await col.put(id, MIXED[id]);
    assert.deepEqual(ids(await col.find({ orderBy: { field: "v" } }).toArray()), MIXED_ASC);
    assert.deepEqual(ids(await col.find({ orderBy: { field: "v", direction: "asc" } }).toArray()), MIXED_ASC);
    assert.deepEqual(ids(await col.find({ orderBy: [{ field: "v", direction: "desc" }] }).toArray()), MIXED_DESC);
    assert.deepEqual(ids(await col.find({ orderBy: { field: "v", direction: "desc" }, limit: 4 }).toArray()), MIXED_DESC.slice(0, 4));
  });

  it("orderBy numbers numerically, strings by code point, dot paths", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("people");
    await seedPeople(col);
    const byCity = ids(await col.find({ orderBy: { field: "address.city" } }).toArray());
    assert.deepEqual(byCity, ["d04", "d05", "d07", "d08", "d02", "d01", "d06", "d03"]);
    const byAge = ids(await col.find({ where: { age: { $gt: 0 } }, orderBy: { field: "age", direction: "desc" } }).toArray());
    assert.deepEqual(byAge, ["d08", "d03", "d07", "d01", "d06", "d02"]);
    const nums = s.records.collection("nums");
    for (const [id, n] of [["a", 10], ["b", 9], ["c", -2.5], ["d", 100], ["e", 0.5], ["f", -10]]) await nums.put(id, { n });
    assert.deepEqual(ids(await nums.find({ orderBy: { field: "n" } }).toArray()), ["f", "c", "e", "b", "a", "d"]);
  });

  it("multi-key orderBy with ties broken by id in the last key's direction; limit", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("groups");
    const rows = { p1: { g: "b", n: 1 }, p2: { g: "a", n: 5 }, p3: { g: "b", n: 3 }, p4: { g: "a", n: 5 }, p5: { g: "a", n: 7 }, p6: { g: "c", n: 0 } };
    for (const id of ["p4", "p6", "p1", "p5", "p3", "p2"]) await col.put(id, rows[id]);
    const q = (query) => col.find(query).toArray().then(ids);
    assert.deepEqual(await q({ orderBy: [{ field: "g" }, { field: "n", direction: "desc" }] }), ["p5", "p4", "p2", "p3", "p1", "p6"]);
    assert.deepEqual(await q({ orderBy: [{ field: "g", direction: "desc" }, { field: "n" }] }), ["p6", "p1", "p3", "p2", "p4", "p5"]);
    assert.deepEqual(await q({ orderBy: { field: "n" } }), ["p6", "p1", "p3", "p2", "p4", "p5"]);
    assert.deepEqual(await q({ orderBy: { field: "n", direction: "desc" } }), ["p5", "p4", "p2", "p3", "p1", "p6"]);
    assert.deepEqual(await q({ orderBy: { field: "n" }, limit: 3 }), ["p6", "p1", "p3"]);
    assert.deepEqual(await q({ limit: 2 }), ["p1", "p2"]);
    assert.deepEqual(await q({ where: { g: "a" }, orderBy: { field: "n", direction: "desc" }, limit: 2 }), ["p5", "p4"]);
  });

  it("after: paging through a whole result equals the unpaged result (id order and field orders)", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("paging");
    for (let i = 0; i < 120; i += 30) {
      await Promise.all(Array.from({ length: 30 }, (_, j) => col.insert({ n: (i + j) % 7, g: (i + j) % 3 === 0 ? "x" : "y", k: `s${(i + j) % 11}` })));
    }
    const queries = [
      {},
      { orderBy: { field: "n" } },
      { orderBy: { field: "n", direction: "desc" } },
      { orderBy: [{ field: "g" }, { field: "k", direction: "desc" }] },
      { where: { g: "y" }, orderBy: { field: "k" } },
      { where: { n: { $gte: 3 } } },
      // `$in` with an array operand is evaluated in Rust on the SQL stores: more matches than
      // a page keeps in memory while the rows stream in.
      { where: { $or: [{ g: "y" }, { k: { $in: [["x"]] } }] }, orderBy: { field: "k", direction: "desc" } },
    ];
    // The same documents as the last query, by a filter SQL can express.
    assert.deepEqual(ids(await col.find(queries.at(-1)).toArray()),
      ids(await col.find({ where: { g: "y" }, orderBy: { field: "k", direction: "desc" } }).toArray()));
    for (const query of queries) {
      const whole = ids(await col.find(query).toArray());
      assert.ok(whole.length > 20);
      for (const pageSize of [1, 9, 50]) {
        assert.deepEqual(await pagedIds(col, query, pageSize), whole, `paging ${JSON.stringify(query)} by ${pageSize}`);
      }
    }
  });

  it("after in id order need not exist; in a field order a missing doc is NOT_FOUND", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("c");
    for (const id of ["a", "b", "c", "d"]) await col.put(id, { n: 1 });
    assert.deepEqual(ids(await col.find({ after: "bb" }).toArray()), ["c", "d"]);
    assert.deepEqual(ids(await col.find({ after: "b" }).toArray()), ["c", "d"]);
    assert.deepEqual(ids(await col.find({ after: "d" }).toArray()), []);
    assert.deepEqual(ids(await col.find({ orderBy: { field: "n" }, after: "b" }).toArray()), ["c", "d"]);
    await iterRejectsWith(() => col.find({ orderBy: { field: "n" }, after: "bb" }), "NOT_FOUND", "find(after missing)");
    await rejectsWith(() => col.find({ orderBy: { field: "n" }, after: "zz" }).toArray(), "NOT_FOUND", "toArray(after missing)");
  });

  it("strings holding U+0000 and U+0001 match, compare and sort by their characters, with and without an index", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("nul");
    const values = { s01: "a", s02: "a\u0000", s03: "a\u0000b", s04: "a\u0001", s05: "a\u0001\u0000", s06: "a\ufffd", s07: "ab", s08: "\u0000", s09: "\u0001" };
    await Promise.all(Object.entries(values).map(([id, n]) => col.put(id, { n })));
    // Byte (code point) order of the values.
    const ascending = ["s08", "s09", "s01", "s02", "s03", "s04", "s05", "s07", "s06"];
    const cases = [
      [{ n: "a\u0000" }, ["s02"]],
      [{ n: "a\ufffd" }, ["s06"]],
      [{ n: "\u0000" }, ["s08"]],
      [{ n: { $lt: "a\u0001" } }, ["s01", "s02", "s03", "s08", "s09"]],
      [{ n: { $gt: "a\u0000" } }, ["s03", "s04", "s05", "s06", "s07"]],
      [{ n: { $gte: "a\u0000", $lt: "a\u0001" } }, ["s02", "s03"]],
      [{ n: { $lte: "\u0001" } }, ["s08", "s09"]],
      [{ n: { $prefix: "a\u0000" } }, ["s02", "s03"]],
      [{ n: { $prefix: "a\u0001" } }, ["s04", "s05"]],
      [{ n: { $prefix: "\u0000" } }, ["s08"]],
      [{ n: { $in: ["\u0000", "a\u0001\u0000"] } }, ["s05", "s08"]],
      [{ n: { $ne: "a\u0000" } }, ["s01", "s03", "s04", "s05", "s06", "s07", "s08", "s09"]],
      [{ n: { $nin: ["a", "a\u0001"] } }, ["s02", "s03", "s05", "s06", "s07", "s08", "s09"]],
    ];
    const check = async (label) => {
      for (const [where, expected] of cases) {
        assert.deepEqual(ids(await col.find({ where }).toArray()), expected, `${label}: ${JSON.stringify(where)}`);
        assert.equal(await col.count(where), expected.length, `${label}: count ${JSON.stringify(where)}`);
      }
      for (const [direction, expected] of [["asc", ascending], ["desc", [...ascending].reverse()]]) {
        const orderBy = { field: "n", direction };
        assert.deepEqual(ids(await col.find({ orderBy }).toArray()), expected, `${label}: ${direction}`);
        assert.deepEqual(await pagedIds(col, { orderBy }, 2), expected, `${label}: ${direction} in pages of 2`);
        const matching = ascending.filter((id) => values[id] > "a");
        assert.deepEqual(ids(await col.find({ where: { n: { $gt: "a" } }, orderBy, limit: 3 }).toArray()),
          (direction === "asc" ? matching : [...matching].reverse()).slice(0, 3), `${label}: ${direction}, filtered, limit 3`);
      }
      for (const [id, n] of Object.entries(values)) assert.equal((await col.get(id)).data.n, n);
    };
    await check("no index");
    await col.ensureIndex("n");
    await check("indexed");
    // Arrays sort by their JSON text, in documents holding U+0000 anywhere.
    const arrays = s.records.collection("nul-arrays");
    await arrays.put("t1", { arr: ["a"], x: "\u0000" });
    await arrays.put("t2", { arr: ["\u0001"] });
    await arrays.put("t3", { arr: ["\u0000", "\\u0000"] });
    assert.deepEqual(ids(await arrays.find({ orderBy: { field: "arr" } }).toArray()), ["t3", "t2", "t1"]);
    assert.deepEqual(ids(await arrays.find({ orderBy: { field: "arr", direction: "desc" }, limit: 2 }).toArray()), ["t1", "t2"]);
  });

  it("ensureIndex (plain and dot path) keeps every query's results and order", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("people");
    await seedPeople(col);
    const queries = [
      ...WHERE_CASES.map(([where]) => ({ where })),
      { orderBy: { field: "age" } },
      { orderBy: { field: "address.city", direction: "desc" } },
      { where: { age: { $gte: 25 } }, orderBy: { field: "name" }, limit: 3 },
    ];
    const before = [];
    for (const q of queries) before.push(await col.find(q).toArray());
    assert.equal(await col.ensureIndex("age"), undefined);
    await col.ensureIndex("address.city");
    await col.ensureIndex("status");
    await col.ensureIndex("name");
    await col.ensureIndex("age"); // idempotent
    for (const [i, q] of queries.entries()) {
      assert.deepEqual(await col.find(q).toArray(), before[i], `after ensureIndex: ${JSON.stringify(q)}`);
    }
    // writes after the index exists are found too
    await col.insert({ name: "zed", age: 30, address: { city: "Paris" } }, { id: "d09" });
    assert.deepEqual(ids(await col.find({ where: { age: 30 } }).toArray()), ["d01", "d07", "d09"]);
    assert.deepEqual(ids(await col.find({ where: { "address.city": "Paris" } }).toArray()), ["d01", "d06", "d09"]);
    await col.update("d09", { age: 31 });
    assert.deepEqual(ids(await col.find({ where: { age: 30 } }).toArray()), ["d01", "d07"]);
  });

  it("find streams a collection larger than a page completely and in order", async (t) => {
    const s = await openFresh(a, t);
    const col = s.records.collection("big");
    const made = [];
    for (let i = 0; i < 450; i += 50) {
      made.push(...await Promise.all(Array.from({ length: 50 }, (_, j) => col.put(`id-${String(i + j).padStart(4, "0")}`, { i: i + j, pad: "x".repeat(200) }))));
    }
    const all = await collect(col.find());
    assert.equal(all.length, 450);
    assert.deepEqual(ids(all), [...ids(made)].sort());
    assert.deepEqual(all.map((d) => d.data.i), Array.from({ length: 450 }, (_, i) => i));
    assert.equal(await col.count({ i: { $gte: 400 } }), 50);
  });

  it("two collections are kept apart, including names and ids that look like paths", async (t) => {
    const s = await openFresh(a, t);
    const a1 = s.records.collection("a");
    const ab = s.records.collection("a/b");
    const other = s.records.collection("b");
    await a1.insert({ from: "a" }, { id: "b/c" });
    await ab.insert({ from: "a/b" }, { id: "c" });
    await a1.insert({ from: "a" }, { id: "same" });
    await other.insert({ from: "b" }, { id: "same" });
    assert.deepEqual((await a1.get("b/c")).data, { from: "a" });
    assert.deepEqual((await ab.get("c")).data, { from: "a/b" });
    assert.equal(await ab.get("b/c"), undefined);
    assert.equal(await a1.get("c"), undefined);
    assert.deepEqual((await other.get("same")).data, { from: "b" });
    assert.equal(await a1.count(), 2);
    assert.equal(await ab.count(), 1);
    assert.deepEqual(ids(await other.find().toArray()), ["same"]);
    assert.equal(await other.delete("same"), true);
    assert.deepEqual((await a1.get("same")).data, { from: "a" });
    assert.equal(await s.records.collection("never-used").count(), 0);
  });

  it("two store names never see each other's records", async (t) => {
    const location = randomName("loc");
    const s1 = await a.open(randomName(), { location });
    t.after(() => s1.close().catch(() => {}));
    const s2 = await a.open(randomName(), { location });
    t.after(() => s2.close().catch(() => {}));
    await s1.records.collection("c").insert({ v: 1 }, { id: "x" });
    assert.equal(await s2.records.collection("c").get("x"), undefined);
    assert.equal(await s2.records.collection("c").count(), 0);
    assert.deepEqual(await s2.records.collection("c").find().toArray(), []);
    const d = await s2.records.collection("c").insert({ v: 2 }, { id: "x" });
    assert.equal(d.version, 1);
    assert.deepEqual((await s1.records.collection("c").get("x")).data, { v: 1 });
  });

  if (a.caps?.persistent) {
    it("records survive close and reopen of the same store name", async (t) => {
      const name = randomName();
      const location = randomName("loc");
      const s1 = await a.open(name, { location });
      const d = await s1.records.collection("c").insert({ keep: true });
      await s1.close();
      const s2 = await a.open(name, { location });
      t.after(() => s2.close().catch(() => {}));
      assert.deepEqual(await s2.records.collection("c").get(d.id), d);
      const next = await s2.records.collection("c").insert({ later: true });
      assert.ok(next.id > d.id, "ids keep increasing after reopen");
    });
  }
});
