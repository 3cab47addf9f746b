// Real peers in separate processes, each in its own network namespace on a private bridge
// (support/netns.mjs), finding each other by mDNS. Partitions take a peer's bridge port down.
// The namespaces hold only lo and one veth (checked before any peer starts: the test fails,
// never skips, if a namespace sees another interface). Needs root.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPeer, until } from "./support/p2p-procs.mjs";
import { Lan } from "./support/netns.mjs";
import { REPO_ROOT } from "./support/proc.mjs";
import { snippets, asModule } from "./support/docs.mjs";

const dir = mkdtempSync(join(tmpdir(), "persist-p2p-mdns-"));
const lan = new Lan("mdns", 6);
const running = new Set();

before(() => lan.create());
after(async () => {
  await Promise.all([...running].map((p) => p.kill()));
  lan.destroy();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts peer `i` (namespace i) of store `name` (default "app") on `topic`, its replica under
 * `<dir>/<topic>-<i>`. Peers sync only within one topic and store name. */
async function peer(i, topic, name = "app") {
  const config = { name, adapter: "p2p", path: join(dir, `${topic}-${i}`), discovery: { method: "mdns", topic } };
  const p = await startPeer(config, { netns: lan.ns(i) });
  running.add(p);
  p.proc.once("exit", () => running.delete(p));
  return p;
}

const state = (p) => p.run(async (s) => {
  const ev = [];
  for await (const e of s.events.read("log")) ev.push(`${e.seq}:${e.type}:${e.id}`);
  const kv = {};
  for await (const e of s.kv.list({ prefix: "" })) kv[e.key] = e.value;
  const data = (await s.records.collection("notes").get("n1"))?.data ?? null;
  // Field order is not part of convergence: the writer reads its fields in the order it wrote
  // them, other peers in the order of the merged document.
  const rec = data && Object.fromEntries(Object.entries(data).sort(([x], [y]) => (x < y ? -1 : 1)));
  return { rec, kv, ev };
});
const same = async (peers) => {
  const all = (await Promise.all(peers.map(state))).map((s) => JSON.stringify(s));
  return all.every((s) => s === all[0]);
};
const connectedTo = (p) => p.run(async (s) => (await s.sync.peers()).filter((x) => x.connected).map((x) => x.peerId).sort());

describe("p2p over mDNS in network namespaces", () => {
  it("three peers find each other and converge: records per field, kv, events in one order on every peer", async () => {
    const [a, b, c] = await Promise.all([peer(1, "three"), peer(2, "three"), peer(3, "three")]);
    await Promise.all([a, b, c].map((p) => p.run(async (s) => s.sync.waitFor({ peers: 2, timeoutMs: 30000 }))));
    for (const [p, others] of [[a, [b, c]], [b, [a, c]], [c, [a, b]]]) {
      assert.deepEqual(await connectedTo(p), others.map((o) => o.peerId).sort());
    }
    await a.run(async (s) => s.records.collection("notes").put("n1", { title: "t", body: "b", tag: "x" }));
    await until(async () => (await state(c)).rec?.tag === "x", 20000, "the record on peer 3");
    await Promise.all([
      a.run(async (s) => s.records.collection("notes").update("n1", { title: "A" })),
      b.run(async (s) => s.records.collection("notes").update("n1", { body: "B" })),
      c.run(async (s) => s.records.collection("notes").update("n1", { tag: "C" })),
      a.run(async (s) => s.kv.set("k", "from 1")), b.run(async (s) => s.kv.set("k", "from 2")), c.run(async (s) => s.kv.set("only3", 3)),
      a.run(async (s) => s.events.append("log", [{ type: "a1" }, { type: "a2" }])),
      b.run(async (s) => s.events.append("log", { type: "b1" })),
      c.run(async (s) => s.events.append("log", [{ type: "c1" }, { type: "c2" }, { type: "c3" }])),
    ]);
    await until(async () => (await state(a)).ev.length === 6 && await same([a, b, c]), 30000, "convergence of three peers");
    const s = await state(b);
    assert.deepEqual(s.rec, { title: "A", body: "B", tag: "C" });
    assert.ok(["from 1", "from 2"].includes(s.kv.k));
    assert.equal(s.kv.only3, 3);
    assert.deepEqual(s.ev.map((e) => e.split(":")[0]), ["1", "2", "3", "4", "5", "6"]);
    const traffic = await a.run(async (s) => (await s.sync.peers()).map((p) => [p.bytesSent, p.bytesReceived]));
    assert.ok(traffic.every(([sent, received]) => sent > 0 && received > 0), `sync bytes counted per peer: ${JSON.stringify(traffic)}`);

    // kv ttl holds on every peer: the expiry travels with the entry.
    await a.run(async (s) => s.kv.set("short", "lived", { ttl: 5000 }));
    await until(async () => (await c.run(async (s) => s.kv.get("short"))) === "lived", 4000, "the ttl entry on peer 3");
    await until(async () => (await c.run(async (s) => [await s.kv.get("short"), await s.kv.has("short")])).every((x) => x === null || x === false), 10000, "the entry expiring on peer 3");
    assert.equal((await state(c)).kv.short, undefined, "an expired entry is not listed");

    // A blob put on peer 1 (three 256 KiB chunks and a bit) is fetched by peer 3 from its peers.
    const body = Buffer.alloc(3 * 262144 + 1000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 11)) & 255;
    const sha = createHash("sha256").update(body).digest("hex");
    await a.run(new Function(`return async (s) => s.blobs.put("pic.bin", Buffer.from("${body.toString("base64")}", "base64"), { contentType: "image/x-test", metadata: { by: "peer 1" } })`)());
    await until(async () => (await c.run(async (s) => (await s.blobs.head("pic.bin"))?.size)) === body.length, 20000, "the blob's metadata on peer 3");
    const fetched = await c.run(async (s) => {
      const { createHash } = await import("node:crypto");
      const info = await s.blobs.head("pic.bin");
      const all = await s.blobs.get("pic.bin");
      const part = await s.blobs.get("pic.bin", { range: { start: 262000, end: 263000 } });
      return { contentType: info.contentType, metadata: info.metadata, sha: createHash("sha256").update(all).digest("hex"), part: part.toString("base64") };
    });
    assert.deepEqual(fetched, { contentType: "image/x-test", metadata: { by: "peer 1" }, sha, part: body.subarray(262000, 263000).toString("base64") });
    // Peer 3 keeps the chunks on disk: with peer 1 gone and peer 3 restarted alone, the blob is still whole.
    await Promise.all([a.stop(), b.stop(), c.stop()]);
    const c2 = await peer(3, "three");
    const kept = await c2.run(async (s) => { const { createHash } = await import("node:crypto"); return createHash("sha256").update(await s.blobs.get("pic.bin")).digest("hex"); });
    assert.equal(kept, sha);
    assert.deepEqual((await c2.run(async (s) => s.sync.peers())).filter((p) => p.connected), [], "no other peer is up");
    await c2.stop();
  });

  it("peers of another topic on the same LAN are discovered, dropped and never synced with", async () => {
    // 4 and 5 (topic "other") discover each other through the same mDNS queries and answers that
    // reach 1 and 2 (one bridge, one service name): each side sees the other topic, connects,
    // and drops it after identify.
    // 3 is on topic "mine" too, but a store of another name: as foreign as 4 and 5.
    const [a, b, n, x, y] = await Promise.all([peer(1, "mine"), peer(2, "mine"), peer(3, "mine", "another-store"), peer(4, "other"), peer(5, "other")]);
    await Promise.all([a, b, x, y].map((p) => p.run(async (s) => s.sync.waitFor({ peers: 1, timeoutMs: 30000 }))));
    await a.run(async (s) => s.kv.set("secret", "mine"));
    await x.run(async (s) => s.kv.set("theirs", "other"));
    await until(async () => (await b.run(async (s) => s.kv.get("secret"))) === "mine", 20000, "sync within topic mine");
    await until(async () => (await y.run(async (s) => s.kv.get("theirs"))) === "other", 20000, "sync within topic other");
    // A few rounds of mDNS queries (every second) and redials (every 2 s) later, still apart.
    await new Promise((r) => setTimeout(r, 4000));
    assert.deepEqual(await connectedTo(a), [b.peerId]);
    assert.deepEqual(await connectedTo(x), [y.peerId]);
    assert.deepEqual(await connectedTo(n), []);
    for (const p of [a, b]) {
      const known = await p.run(async (s) => (await s.sync.peers()).map((q) => q.peerId));
      assert.ok(![n, x, y].some((f) => known.includes(f.peerId)), "a foreign peer is never listed");
    }
    assert.deepEqual(await x.run(async (s) => [await s.kv.get("secret"), await s.kv.get("theirs")]), [null, "other"]);
    assert.deepEqual(await n.run(async (s) => [await s.kv.get("secret"), await s.kv.get("theirs")]), [null, null]);
    assert.deepEqual(await b.run(async (s) => [await s.kv.get("secret"), await s.kv.get("theirs")]), ["mine", null]);
    await Promise.all([a.stop(), b.stop(), n.stop(), x.stop(), y.stop()]);
  });

  it("a partition (peer 3's link down) with writes on both sides: the dead link is detected, then the healed mesh converges", async () => {
    const [a, b, c] = await Promise.all([peer(1, "part"), peer(2, "part"), peer(3, "part")]);
    await Promise.all([a, b, c].map((p) => p.run(async (s) => s.sync.waitFor({ peers: 2, timeoutMs: 30000 }))));
    await a.run(async (s) => { await s.records.collection("notes").put("n1", { title: "t", body: "b" }); await s.events.append("log", { type: "before" }); });
    await until(async () => await same([a, b, c]) && (await state(c)).ev.length === 1, 20000, "sync before the partition");

    lan.down(3);
    // No FIN crosses a dead link: only the ping timeout can tell the peers apart.
    await until(async () => (await connectedTo(a)).length === 1, 60000, "peer 1 dropping peer 3");
    assert.deepEqual(await connectedTo(a), [b.peerId]);
    await until(async () => (await connectedTo(c)).length === 0, 60000, "peer 3 dropping peers 1 and 2");

    await a.run(async (s) => { await s.records.collection("notes").update("n1", { title: "majority", both: "from 1" }); await s.kv.set("k", "a"); await s.events.append("log", [{ type: "a1" }, { type: "a2" }]); });
    await b.run(async (s) => s.events.append("log", { type: "b1" }));
    await c.run(async (s) => { await s.records.collection("notes").update("n1", { body: "minority", both: "from 3" }); await s.kv.set("k3", "c"); await s.events.append("log", [{ type: "c1" }, { type: "c2" }]); });
    // Last writer wins on kv, by time, whichever side wrote last (one key each way round).
    const pause = () => new Promise((r) => setTimeout(r, 30));
    await a.run(async (s) => s.kv.set("lww1", "early, from 1")); await pause();
    await c.run(async (s) => s.kv.set("lww1", "late, from 3"));
    await c.run(async (s) => s.kv.set("lww2", "early, from 3")); await pause();
    await a.run(async (s) => s.kv.set("lww2", "late, from 1"));
    await until(async () => (await state(b)).ev.length === 4 && await same([a, b]), 20000, "peers 1 and 2 converging while 3 is cut off");
    const cut = await state(c);
    assert.equal(cut.ev.length, 3, "peer 3 sees only its own writes while apart");
    assert.deepEqual(cut.rec, { title: "t", body: "minority", both: "from 3" });

    lan.up(3);
    await until(async () => (await state(a)).ev.length === 6 && await same([a, b, c]), 60000, "convergence after the partition heals");
    const s = await state(c);
    // The field both sides wrote has one winner, the same on every peer (same() above).
    assert.ok(["from 1", "from 3"].includes(s.rec.both), `one of the two writes: ${s.rec.both}`);
    assert.deepEqual({ ...s.rec, both: undefined }, { title: "majority", body: "minority", both: undefined });
    assert.deepEqual([s.kv.k, s.kv.k3], ["a", "c"]);
    assert.deepEqual([s.kv.lww1, s.kv.lww2], ["late, from 3", "late, from 1"]);
    assert.deepEqual(s.ev.map((e) => e.split(":")[1]).sort(), ["a1", "a2", "b1", "before", "c1", "c2"]);
    await until(async () => (await connectedTo(c)).length === 2, 30000, "peer 3 reconnected to both");
    await Promise.all([a.stop(), b.stop(), c.stop()]);
  });

  it("a live subscriber gets events that merge in behind its position (earlier Lamport order), each once", async () => {
    // Peer 2 appends while cut off; peer 1 appends later (later timestamps) and delivers its own
    // events first. Once they meet, 2's events sort before 1's: behind 1's subscriber.
    const [a, b] = await Promise.all([peer(1, "behind"), peer(2, "behind")]);
    await Promise.all([a, b].map((p) => p.run(async (s) => s.sync.waitFor({ peers: 1, timeoutMs: 30000 }))));
    await a.run(async (s) => {
      globalThis.got = [];
      globalThis.sub = await s.events.subscribe("s", (e) => { globalThis.got.push({ type: e.type, seq: e.seq, id: e.id }); });
    });
    lan.down(2);
    try {
      await b.run(async (s) => s.events.append("s", [{ type: "b1" }, { type: "b2" }]));
      await new Promise((r) => setTimeout(r, 20));
      await a.run(async (s) => s.events.append("s", [{ type: "a1" }, { type: "a2" }, { type: "a3" }]));
      const got = () => a.run(async () => globalThis.got);
      await until(async () => (await got()).length === 3, 10000, "peer 1's own events delivered");
      // Healed within a second: the connection lives on (no ping has failed twice yet) and TCP
      // delivers what waited.
      lan.up(2);
      await until(async () => (await a.run(async (s) => { let n = 0; for await (const _ of s.events.read("s")) n++; return n; })) === 5, 60000, "the merge");
      // A barrier: everything that arrived before "z" is delivered before it.
      await a.run(async (s) => s.events.append("s", { type: "z" }));
      await until(async () => (await got()).some((e) => e.type === "z"), 10000, "the barrier event");
      const delivered = await got();
      assert.deepEqual(delivered.map((e) => e.type), ["a1", "a2", "a3", "b1", "b2", "z"], "each event once, merged ones by arrival");
      assert.equal(new Set(delivered.map((e) => e.id)).size, 6);
      assert.deepEqual(delivered.filter((e) => e.type[0] === "b").map((e) => e.seq), [1, 2], "b1 and b2 merged in behind the subscriber");
      const order = (p) => p.run(async (s) => { const out = []; for await (const e of s.events.read("s")) out.push(`${e.seq}:${e.type}:${e.id}`); return out; });
      await until(async () => JSON.stringify(await order(a)) === JSON.stringify(await order(b)), 20000, "one order on both peers");
      assert.deepEqual((await order(b)).map((e) => e.split(":")[1]), ["b1", "b2", "a1", "a2", "a3", "z"]);
      await a.run(async () => globalThis.sub.close());
      await Promise.all([a.stop(), b.stop()]);
    } finally {
      lan.up(2);
    }
  });

  it("a SIGKILLed peer drops out of peers() (connected: false), and is connected again once restarted from its path", async () => {
    const [a, b] = await Promise.all([peer(1, "kill"), peer(2, "kill")]);
    await Promise.all([a, b].map((p) => p.run(async (s) => s.sync.waitFor({ peers: 1, timeoutMs: 30000 }))));
    assert.deepEqual(await connectedTo(a), [b.peerId]);
    const timedOut = await a.run(async (s) => { const t = Date.now(); try { await s.sync.waitFor({ peers: 2, timeoutMs: 300 }); return "resolved"; } catch (e) { return [e.code, Date.now() - t >= 250]; } });
    assert.deepEqual(timedOut, ["TIMEOUT", true], "waitFor for more peers than there are rejects with TIMEOUT after timeoutMs");
    await a.run(async (s) => {
      globalThis.seen = { peer: [], synced: [] };
      globalThis.off = ["peer", "synced"].map((ev) => s.sync.on(ev, (id) => globalThis.seen[ev].push(id)));
    });
    await b.kill();
    await until(async () => (await connectedTo(a)).length === 0, 30000, "peer 1 noticing the dead peer");
    const listed = await a.run(async (s) => (await s.sync.peers()).map((p) => [p.peerId, p.connected]));
    assert.deepEqual(listed, [[b.peerId, false]]);
    const b2 = await peer(2, "kill");
    assert.equal(b2.peerId, b.peerId);
    await until(async () => (await connectedTo(a)).length === 1, 30000, "the restarted peer reconnecting");
    // sync.on: "peer" when it connected, "synced" once caught up; the returned function unsubscribes.
    const seen = () => a.run(async () => globalThis.seen);
    await until(async () => { const x = await seen(); return x.peer.includes(b.peerId) && x.synced.includes(b.peerId); }, 20000, "peer and synced events for the restarted peer");
    const before = await seen();
    await a.run(async () => { for (const off of globalThis.off) off(); });
    await b2.stop();
    const b3 = await peer(2, "kill");
    await until(async () => (await connectedTo(a)).length === 1, 30000, "the peer reconnecting once more");
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(await seen(), before, "no event reaches a listener after its unsubscribe");
    await Promise.all([a.stop(), b3.stop()]);
  });

  it("the docs page's p2p snippet runs unchanged in a namespace: a working store with no peers, and, run again beside a peer of its topic, it syncs", async () => {
    const snippet = snippets.find((code) => /adapter:\s*"p2p"/.test(code));
    assert.ok(snippet, "p2p snippet not found on the docs page");
    // A project folder whose node_modules/@cuitty/persist is this package; the snippet's default
    // path, ./.persist/my-app.p2p/, lands in it (the second run reopens that replica).
    const project = join(dir, "snippet-project");
    mkdirSync(join(project, "node_modules", "@cuitty"), { recursive: true });
    symlinkSync(REPO_ROOT, join(project, "node_modules", "@cuitty", "persist"), "dir");
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "p2p-snippet", private: true, type: "module" }));
    // The snippet holds no TypeScript-only syntax (the pack test type-checks it with tsc
    // --strict), so it runs as it is under plain node. The second run is also the regression
    // test of `waitFor` on the side that answers the first round (it never resolved when that
    // round's last answer carried something: about half the runs before the fix in swarm.rs).
    writeFileSync(join(project, "alone.mjs"), `${asModule(snippet)}
const sync = store.sync;
await store.kv.set("own", { ok: true });
console.log("ALONE=" + JSON.stringify({ adapter: store.adapter, peerId: typeof sync.peerId, peers: (await sync.peers()).length, own: await store.kv.get("own") }));
await store.close();
`);
    writeFileSync(join(project, "met.mjs"), `${asModule(snippet)}
await store.sync.waitFor({ peers: 1, timeoutMs: 30000 });
let got;
for (let i = 0; i < 400 && (got = await store.kv.get("from-peer")) === undefined; i++) await new Promise((r) => setTimeout(r, 50));
console.log("MET=" + JSON.stringify({ got, own: await store.kv.get("own") }));
await store.close();
`);
    const runSnippet = (file) => new Promise((resolve, reject) => {
      const child = spawn("ip", ["netns", "exec", lan.ns(6), process.execPath, file], { cwd: project, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "", stderr = "";
      child.stdout.on("data", (d) => { stdout += d; });
      child.stderr.on("data", (d) => { stderr += d; });
      const timer = setTimeout(() => child.kill("SIGKILL"), 90000);
      child.once("error", reject);
      child.once("exit", (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    });
    const value = (r, prefix) => {
      assert.equal(r.code, 0, `${prefix} run failed:\n${r.stdout}\n${r.stderr}`);
      const hit = r.stdout.split("\n").find((l) => l.startsWith(prefix));
      assert.ok(hit, `no ${prefix} line: ${r.stdout}`);
      return JSON.parse(hit.slice(prefix.length));
    };
    // Alone on the LAN: a working store with no peers.
    assert.deepEqual(value(await runSnippet("alone.mjs"), "ALONE="), { adapter: "p2p", peerId: "string", peers: 0, own: { ok: true } });
    // Run again (the same replica and peer id) with a peer of its topic and store name: it syncs.
    const metRun = runSnippet("met.mjs");
    const other = await peer(5, "my-app-sync", "my-app");
    try {
      await other.run(async (s) => s.kv.set("from-peer", "hello"));
      assert.deepEqual(value(await metRun, "MET="), { got: "hello", own: { ok: true } });
    } finally {
      await other.stop();
    }
  });
});
