// Real peers in separate processes on 127.0.0.1, found through a local Kademlia bootstrap peer.
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPeer, freePort, until } from "./support/p2p-procs.mjs";

const dir = mkdtempSync(join(tmpdir(), "persist-p2p-dht-"));
after(() => rmSync(dir, { recursive: true, force: true }));

// Peers sync only with peers of the same topic and store name: the bootstrap peer is one of them.
async function bootstrap(topic, name = "app") {
  const port = await freePort();
  const config = { name, adapter: "p2p", path: join(dir, `${topic}-${name}-boot`), discovery: { method: "dht", topic }, listen: [`/ip4/127.0.0.1/tcp/${port}`] };
  const boot = await startPeer(config);
  // Restarted from its path and port, it is the same bootstrap address.
  return { boot, addr: `/ip4/127.0.0.1/tcp/${port}/p2p/${boot.peerId}`, restart: () => startPeer(config) };
}
/** Peer `label` of store `name` (default "app") on `topic`, its replica under `<dir>/<topic>-<label>`. */
const cfg = (topic, label, addr, name = "app") => ({ name, adapter: "p2p", path: join(dir, `${topic}-${label}`), discovery: { method: "dht", topic, bootstrap: [addr] }, listen: ["/ip4/127.0.0.1/tcp/0"] });
const state = (p) => p.run(async (s) => {
  const ev = [];
  for await (const e of s.events.read("log")) ev.push(`${e.seq}:${e.type}:${e.id}`);
  return { rec: (await s.records.collection("notes").get("n1"))?.data, k: await s.kv.get("k"), ev };
});

describe("p2p over the DHT (local bootstrap peer)", () => {
  it("two peers converge: records per field, kv one winner, events in one order; a restarted peer keeps its data and id", async () => {
    const topic = "conv";
    const { boot, addr, restart } = await bootstrap(topic);
    const a = await startPeer(cfg(topic, "a", addr));
    await a.run(async (s) => { await s.records.collection("notes").put("n1", { title: "t", body: "b" }); await s.events.append("log", { type: "a1" }); });
    let b = await startPeer(cfg(topic, "b", addr));
    await b.run(async (s) => s.sync.waitFor({ peers: 2, timeoutMs: 20000 }));
    await until(async () => (await state(b)).rec?.title === "t", 10000, "initial sync");
    await Promise.all([
      a.run(async (s) => s.records.collection("notes").update("n1", { title: "A" })),
      b.run(async (s) => s.records.collection("notes").update("n1", { body: "B" })),
      a.run(async (s) => s.kv.set("k", "from a")), b.run(async (s) => s.kv.set("k", "from b")),
      a.run(async (s) => s.events.append("log", [{ type: "a2" }, { type: "a3" }])), b.run(async (s) => s.events.append("log", { type: "b1" })),
    ]);
    await until(async () => { const [x, y] = await Promise.all([state(a), state(b)]); return JSON.stringify(x) === JSON.stringify(y) && x.ev.length === 4; }, 10000, "convergence");
    const sa = await state(a);
    assert.deepEqual(sa.rec, { title: "A", body: "B" });
    assert.ok(["from a", "from b"].includes(sa.k));
    const bId = b.peerId;
    await b.stop();
    // Restarted while every other peer is down: what it reads comes from its own replica.
    await boot.stop();
    await a.stop();
    b = await startPeer(cfg(topic, "b", addr));
    assert.equal(b.peerId, bId, "a restarted peer keeps its peer id");
    assert.deepEqual(await state(b), sa, "and its data, read from its path with no peer up");
    await b.stop();
    // With the others back, it resumes syncing: a write made while it was down reaches it.
    const again = await restart();
    const a2 = await startPeer(cfg(topic, "a", addr));
    await a2.run(async (s) => s.kv.set("after", 1));
    b = await startPeer(cfg(topic, "b", addr));
    await until(async () => (await b.run(async (s) => s.kv.get("after"))) === 1, 20000, "resync after restart");
    await Promise.all([a2.stop(), b.stop(), again.stop()]);
  });

  it("peers of another topic, or of another store name on the same topic, are dropped and never synced with", async () => {
    const { boot, addr } = await bootstrap("topic-one");
    const a = await startPeer(cfg("topic-one", "a", addr));
    const b = await startPeer(cfg("topic-one", "b", addr));
    const x = await startPeer(cfg("topic-two", "x", addr));
    const n = await startPeer(cfg("topic-one", "n", addr, "another-store"));
    await a.run(async (s) => s.kv.set("secret", 1));
    // The positive control: the same bootstrap peer does bring a and b together.
    await until(async () => (await b.run(async (s) => s.kv.get("secret"))) === 1, 20000, "sync within the topic");
    await new Promise((r) => setTimeout(r, 3000));
    for (const p of [x, n]) {
      assert.equal(await p.run(async (s) => s.kv.get("secret")), null);
      const peers = await p.run(async (s) => (await s.sync.peers()).filter((q) => q.connected));
      assert.equal(peers.length, 0, "no connection to a peer of another topic or store name");
    }
    await Promise.all([a.stop(), b.stop(), x.stop(), n.stop(), boot.stop()]);
  });
});
