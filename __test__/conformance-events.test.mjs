import assert from "node:assert/strict";
import { it } from "node:test";
import {
  conformance, openFresh, collect, rejectsWith, assertIsoUtc, randomName, sleep, waitUntil, jsonClone,
} from "./support/util.mjs";

const seqs = (events) => events.map((e) => e.seq);
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const LIVE_TIMEOUT = 5000;

await conformance("events", (a) => {
  it("append a single event or an array returns the last seq; seqs are gapless from 1", async (t) => {
    const s = await openFresh(a, t);
    assert.deepEqual(await s.events.append("orders", { type: "created", data: { id: 1 } }), { seq: 1 });
    assert.deepEqual(await s.events.append("orders", { type: "paid", data: { amount: 9.5 } }), { seq: 2 });
    assert.deepEqual(await s.events.append("orders", [
      { type: "a", data: 1 }, { type: "b", data: "two" }, { type: "c", data: [3] },
    ]), { seq: 5 });
    assert.deepEqual(await s.events.append("orders", [{ type: "single-in-array" }]), { seq: 6 });
    const events = await collect(s.events.read("orders"));
    assert.deepEqual(seqs(events), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(events.map((e) => e.type), ["created", "paid", "a", "b", "c", "single-in-array"]);
    assert.deepEqual(events.map((e) => e.data), [{ id: 1 }, { amount: 9.5 }, 1, "two", [3], null]);
    const idsSeen = new Set();
    for (const e of events) {
      assert.equal(e.stream, "orders");
      assertIsoUtc(e.time, "event time");
      assert.ok(Math.abs(Date.parse(e.time) - Date.now()) < 60_000);
      assert.equal(typeof e.id, "string");
      assert.ok(e.id.length > 0);
      assert.ok(!idsSeen.has(e.id), "event ids must be unique");
      idsSeen.add(e.id);
    }
  });

  it("event data round-trips as JSON; absent data reads back as null", async (t) => {
    const s = await openFresh(a, t);
    const values = [
      { nested: { deep: [1, { x: undefined, y: 2 }] }, when: new Date(0) },
      "str", 0, false, null, [undefined, 1], { "": "empty key", "é": "ü" },
    ];
    await s.events.append("v", values.map((data) => ({ type: "t", data })));
    await s.events.append("v", { type: "no-data" });
    await s.events.append("v", { type: "undefined-data", data: undefined });
    const events = await collect(s.events.read("v"));
    assert.deepEqual(events.slice(0, values.length).map((e) => e.data), values.map(jsonClone));
    assert.equal(events[values.length].data, null);
    assert.ok("data" in events[values.length]);
    assert.equal(events[values.length + 1].data, null);
  });

  it("streams have independent sequences", async (t) => {
    const s = await openFresh(a, t);
    await s.events.append("a", { type: "x" });
    await s.events.append("a", { type: "x" });
    assert.deepEqual(await s.events.append("b", { type: "y" }), { seq: 1 });
    assert.deepEqual(await s.events.append("a", { type: "x" }), { seq: 3 });
    assert.deepEqual(seqs(await collect(s.events.read("b"))), [1]);
    assert.ok((await collect(s.events.read("b"))).every((e) => e.stream === "b"));
  });

  it("expectedSeq: 0 on an empty stream, current last seq after; a mismatch is CONFLICT writing nothing", async (t) => {
    const s = await openFresh(a, t);
    assert.deepEqual(await s.events.append("acct", { type: "opened" }, { expectedSeq: 0 }), { seq: 1 });
    await rejectsWith(() => s.events.append("acct", { type: "dup-open" }, { expectedSeq: 0 }), "CONFLICT");
    assert.deepEqual(await s.events.append("acct", [{ type: "d1" }, { type: "d2" }], { expectedSeq: 1 }), { seq: 3 });
    await rejectsWith(() => s.events.append("acct", [{ type: "x1" }, { type: "x2" }], { expectedSeq: 2 }), "CONFLICT");
    await rejectsWith(() => s.events.append("acct", { type: "future" }, { expectedSeq: 7 }), "CONFLICT");
    const events = await collect(s.events.read("acct"));
    assert.deepEqual(events.map((e) => e.type), ["opened", "d1", "d2"]);
    await rejectsWith(() => s.events.append("fresh", { type: "x" }, { expectedSeq: 1 }), "CONFLICT");
    assert.deepEqual(await collect(s.events.read("fresh")), []);
    assert.deepEqual(await s.events.append("acct", { type: "d3" }, { expectedSeq: 3 }), { seq: 4 });
  });

  it("concurrent appends with the same expectedSeq: exactly one wins", async (t) => {
    const s = await openFresh(a, t);
    await s.events.append("race", { type: "init" });
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) => s.events.append("race", { type: "try", data: i }, { expectedSeq: 1 })));
    const ok = results.filter((r) => r.status === "fulfilled");
    assert.equal(ok.length, 1);
    assert.deepEqual(ok[0].value, { seq: 2 });
    for (const r of results) if (r.status === "rejected") assert.equal(r.reason.code, "CONFLICT");
    assert.deepEqual(seqs(await collect(s.events.read("race"))), [1, 2]);
  });

  it("read with from, limit and reverse", async (t) => {
    const s = await openFresh(a, t);
    await s.events.append("r", range(1, 10).map((i) => ({ type: "n", data: i })));
    const read = async (opts) => seqs(await collect(s.events.read("r", opts)));
    assert.deepEqual(await read(), range(1, 10));
    assert.deepEqual(await read({ from: 4 }), range(4, 10));
    assert.deepEqual(await read({ from: 10 }), [10]);
    assert.deepEqual(await read({ from: 11 }), []);
    assert.deepEqual(await read({ limit: 3 }), [1, 2, 3]);
    assert.deepEqual(await read({ from: 5, limit: 2 }), [5, 6]);
    assert.deepEqual(await read({ reverse: true }), range(1, 10).reverse());
    assert.deepEqual(await read({ reverse: true, limit: 3 }), [10, 9, 8]);
    const events = await collect(s.events.read("r", { from: 3, limit: 1 }));
    assert.equal(events[0].data, 3);
    assert.deepEqual(await collect(s.events.read("nothing-here")), []);
    assert.deepEqual(await collect(s.events.read("nothing-here", { reverse: true })), []);
  });

  it("read streams more events than a page, gapless", async (t) => {
    const s = await openFresh(a, t);
    for (let i = 0; i < 5; i++) await s.events.append("long", range(1, 200).map((n) => ({ type: "e", data: { n: i * 200 + n } })));
    const all = await collect(s.events.read("long"));
    assert.deepEqual(seqs(all), range(1, 1000));
    assert.deepEqual(all.map((e) => e.data.n), range(1, 1000));
    assert.deepEqual(seqs(await collect(s.events.read("long", { reverse: true }))), range(1, 1000).reverse());
  });

  it("concurrent appends from many promises get unique gapless seqs; arrays stay contiguous", async (t) => {
    const s = await openFresh(a, t);
    const singles = await Promise.all(range(1, 60).map((i) => s.events.append("c", { type: "single", data: i })));
    assert.deepEqual(singles.map((r) => r.seq).sort((x, y) => x - y), range(1, 60));
    const batches = await Promise.all(range(1, 20).map((b) =>
      s.events.append("c", range(1, 3).map((k) => ({ type: "batch", data: { b, k } })))));
    const all = await collect(s.events.read("c"));
    assert.deepEqual(seqs(all), range(1, 120));
    assert.deepEqual(new Set(all.slice(0, 60).map((e) => e.data)).size, 60);
    for (const r of batches) {
      const last = all[r.seq - 1];
      assert.equal(last.data.k, 3);
      const b = last.data.b;
      assert.deepEqual(all.slice(r.seq - 3, r.seq).map((e) => e.data), [{ b, k: 1 }, { b, k: 2 }, { b, k: 3 }]);
    }
  });

  it("streams() lists stream names, filtered by prefix", async (t) => {
    const s = await openFresh(a, t);
    assert.deepEqual(await collect(s.events.streams()), []);
    const names = ["orders-1", "orders-2", "users/1", "orders%", "o", "é-stream"];
    for (const n of names) await s.events.append(n, { type: "x" });
    await s.events.append("orders-1", { type: "again" });
    const all = await collect(s.events.streams());
    assert.deepEqual([...all].sort(), [...names].sort());
    assert.equal(new Set(all).size, all.length);
    assert.deepEqual((await collect(s.events.streams({ prefix: "orders" }))).sort(), ["orders%", "orders-1", "orders-2"]);
    assert.deepEqual((await collect(s.events.streams({ prefix: "orders-" }))).sort(), ["orders-1", "orders-2"]);
    assert.deepEqual(await collect(s.events.streams({ prefix: "orders_" })), []);
    assert.deepEqual(await collect(s.events.streams({ prefix: "zz" })), []);
  });

  it("subscribe delivers history then live events, in order, each once", async (t) => {
    const s = await openFresh(a, t);
    await s.events.append("live", [{ type: "h1" }, { type: "h2" }, { type: "h3" }]);
    const got = [];
    const sub = await s.events.subscribe("live", (e) => { got.push(e); });
    t.after(() => sub.close().catch(() => {}));
    await waitUntil(() => got.length >= 3, LIVE_TIMEOUT, "history");
    await s.events.append("live", { type: "l4", data: { x: 4 } });
    await s.events.append("live", [{ type: "l5" }, { type: "l6" }]);
    await s.events.append("other-stream", { type: "not-for-us" });
    await waitUntil(() => got.length >= 6, LIVE_TIMEOUT, "live events");
    await sleep(300);
    assert.deepEqual(seqs(got), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(got.map((e) => e.type), ["h1", "h2", "h3", "l4", "l5", "l6"]);
    assert.ok(got.every((e) => e.stream === "live"));
    assert.deepEqual(got, await collect(s.events.read("live")), "subscribed events equal read events");
  });

  it("subscribe from a seq, and from \"end\" (live only)", async (t) => {
    const s = await openFresh(a, t);
    await s.events.append("f", range(1, 5).map((i) => ({ type: `e${i}` })));
    const fromThree = [];
    const endOnly = [];
    const sub1 = await s.events.subscribe("f", (e) => { fromThree.push(e.seq); }, { from: 3 });
    t.after(() => sub1.close().catch(() => {}));
    const sub2 = await s.events.subscribe("f", (e) => { endOnly.push(e.seq); }, { from: "end" });
    t.after(() => sub2.close().catch(() => {}));
    await s.events.append("f", { type: "e6" });
    await waitUntil(() => fromThree.length >= 4 && endOnly.length >= 1, LIVE_TIMEOUT, "deliveries");
    await sleep(300);
    assert.deepEqual(fromThree, [3, 4, 5, 6]);
    assert.deepEqual(endOnly, [6]);
  });

  it("subscribe on an empty stream receives the first appended event", async (t) => {
    const s = await openFresh(a, t);
    const got = [];
    const sub = await s.events.subscribe("empty", (e) => { got.push(e); });
    t.after(() => sub.close().catch(() => {}));
    await s.events.append("empty", { type: "first", data: { ok: true } });
    await waitUntil(() => got.length >= 1, LIVE_TIMEOUT, "first event");
    assert.equal(got[0].seq, 1);
    assert.deepEqual(got[0].data, { ok: true });
  });

  it("an async handler is awaited before the next event is delivered", async (t) => {
    const s = await openFresh(a, t);
    await s.events.append("slow", range(1, 4).map((i) => ({ type: "e", data: i })));
    const log = [];
    let active = 0, maxActive = 0;
    const sub = await s.events.subscribe("slow", async (e) => {
      active++;
      maxActive = Math.max(maxActive, active);
      log.push(`start ${e.seq}`);
      await sleep(40);
      log.push(`end ${e.seq}`);
      active--;
    });
    t.after(() => sub.close().catch(() => {}));
    await s.events.append("slow", { type: "e", data: 5 });
    await s.events.append("slow", { type: "e", data: 6 });
    await waitUntil(() => log.length >= 12, LIVE_TIMEOUT * 2, "six handled events");
    assert.equal(maxActive, 1, "handler calls overlapped");
    assert.deepEqual(log, range(1, 6).flatMap((i) => [`start ${i}`, `end ${i}`]));
  });

  it("Subscription.close stops delivery", async (t) => {
    const s = await openFresh(a, t);
    const got = [];
    const sub = await s.events.subscribe("c", (e) => { got.push(e.seq); });
    await s.events.append("c", { type: "before" });
    await waitUntil(() => got.length >= 1, LIVE_TIMEOUT, "first event");
    assert.equal(await sub.close(), undefined);
    await s.events.append("c", [{ type: "after1" }, { type: "after2" }]);
    await sleep(1500);
    assert.deepEqual(got, [1]);
    await sub.close(); // idempotent
  });

  it("a handler that throws stops its subscription, reports to onError, and leaves others running", async (t) => {
    const s = await openFresh(a, t);
    const boom = new Error("handler failed");
    const failing = [];
    const errors = [];
    const healthy = [];
    const sub1 = await s.events.subscribe("h", (e) => {
      failing.push(e.seq);
      if (e.seq === 2) throw boom;
    }, { onError: (err) => { errors.push(err); } });
    t.after(() => sub1.close().catch(() => {}));
    const sub2 = await s.events.subscribe("h", (e) => { healthy.push(e.seq); });
    t.after(() => sub2.close().catch(() => {}));
    for (let i = 1; i <= 4; i++) await s.events.append("h", { type: "e" });
    await waitUntil(() => healthy.length >= 4 && errors.length >= 1, LIVE_TIMEOUT, "deliveries and onError");
    await sleep(500);
    assert.deepEqual(failing, [1, 2], "no delivery after the handler threw");
    assert.equal(errors.length, 1);
    assert.ok(errors[0] === boom || errors[0]?.cause === boom, "onError receives the handler's error (or a PersistError caused by it)");
    assert.deepEqual(healthy, [1, 2, 3, 4]);
  });

  it("a throwing or rejecting handler without onError does not crash the process", async (t) => {
    const s = await openFresh(a, t);
    const uncaught = [];
    const onUncaught = (e) => uncaught.push(e);
    process.on("uncaughtException", onUncaught);
    process.on("unhandledRejection", onUncaught);
    t.after(() => { process.off("uncaughtException", onUncaught); process.off("unhandledRejection", onUncaught); });
    const calls = [];
    const sub1 = await s.events.subscribe("x", (e) => { calls.push(`sync ${e.seq}`); throw new Error("sync throw"); });
    t.after(() => sub1.close().catch(() => {}));
    const sub2 = await s.events.subscribe("x", async (e) => { calls.push(`async ${e.seq}`); throw new Error("async throw"); });
    t.after(() => sub2.close().catch(() => {}));
    await s.events.append("x", [{ type: "a" }, { type: "b" }]);
    await waitUntil(() => calls.length >= 2, LIVE_TIMEOUT, "handler calls");
    await sleep(500);
    assert.deepEqual(calls.sort(), ["async 1", "sync 1"]);
    assert.deepEqual(uncaught, []);
    // the store still works
    assert.deepEqual(await s.events.append("x", { type: "c" }), { seq: 3 });
  });

  it("two store names never see each other's events", async (t) => {
    const location = randomName("loc");
    const s1 = await a.open(randomName(), { location });
    t.after(() => s1.close().catch(() => {}));
    const s2 = await a.open(randomName(), { location });
    t.after(() => s2.close().catch(() => {}));
    const seen = [];
    const sub = await s2.events.subscribe("shared", (e) => { seen.push(e); });
    t.after(() => sub.close().catch(() => {}));
    await s1.events.append("shared", [{ type: "one" }, { type: "two" }]);
    assert.deepEqual(await collect(s2.events.read("shared")), []);
    assert.deepEqual(await collect(s2.events.streams()), []);
    assert.deepEqual(await s2.events.append("shared", { type: "mine" }), { seq: 1 });
    await waitUntil(() => seen.length >= 1, LIVE_TIMEOUT, "own event");
    await sleep(500);
    assert.deepEqual(seen.map((e) => e.type), ["mine"]);
    assert.deepEqual(seqs(await collect(s1.events.read("shared"))), [1, 2]);
  });

  if (a.caps?.persistent) {
    it("events survive close and reopen and continue the sequence", async (t) => {
      const name = randomName();
      const location = randomName("loc");
      const s1 = await a.open(name, { location });
      await s1.events.append("p", [{ type: "a" }, { type: "b" }]);
      await s1.close();
      const s2 = await a.open(name, { location });
      t.after(() => s2.close().catch(() => {}));
      assert.deepEqual(await s2.events.append("p", { type: "c" }), { seq: 3 });
      assert.deepEqual((await collect(s2.events.read("p"))).map((e) => e.type), ["a", "b", "c"]);
    });
  }
});
