// SIGKILL durability: every acknowledged write survives, and the file opens cleanly.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { createStore } from "@cuitty/persist";
import { collect, randomName } from "./support/util.mjs";
import { spawnNodeLines, supportScript } from "./support/proc.mjs";

const RUNS = 5;
const dir = mkdtempSync(join(tmpdir(), "persist-durability-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the writer until `ackTarget` acknowledged lines, then SIGKILLs it. Returns the acked writes. */
async function writeThenKill(path, name, run, ackTarget) {
  const acked = { kv: [], rec: [], ev: [] };
  let count = 0;
  let resolveTarget;
  const reached = new Promise((r) => { resolveTarget = r; });
  const proc = spawnNodeLines(supportScript("durability-writer.mjs"), [path, name, String(run)], (line) => {
    const [kind, id, i] = line.split(" ");
    if (kind === "ready") return;
    if (!(kind in acked)) return;
    acked[kind].push({ id, i: Number(i) });
    if (++count >= ackTarget) resolveTarget();
  });
  const outcome = await Promise.race([
    reached.then(() => "target"),
    proc.exited.then(() => "exited"),
    new Promise((r) => setTimeout(() => r("timeout"), 60_000)),
  ]);
  if (outcome !== "target") {
    proc.child.kill("SIGKILL");
    await proc.exited;
    assert.fail(`writer ${outcome} after ${count} acks before reaching ${ackTarget}\nstderr:\n${proc.stderr().slice(-3000)}`);
  }
  proc.child.kill("SIGKILL");
  const { signal } = await proc.exited;
  assert.equal(signal, "SIGKILL", "the writer must die from SIGKILL, mid-writing");
  return acked;
}

describe("durability under SIGKILL", () => {
  it(`every acknowledged kv.set / records.insert / events.append survives ${RUNS} kills; the file reopens cleanly`, { timeout: 300_000 }, async () => {
    const path = join(dir, "durable.db");
    const name = randomName("dur");
    const all = { kv: [], rec: [], ev: [] };
    for (let run = 1; run <= RUNS; run++) {
      const target = 30 + Math.floor(Math.random() * 300);
      const acked = await writeThenKill(path, name, run, target);
      for (const k of Object.keys(all)) all[k].push(...acked[k].map((x) => ({ ...x, run })));
      assert.ok(acked.kv.length > 0 && acked.rec.length > 0, "the writer acknowledged writes");

      const store = await createStore({ name, adapter: "sqlite", path });
      try {
        for (const { id, i, run: r } of all.kv) {
          const v = await store.kv.get(id);
          assert.ok(v !== undefined, `run ${run}: acknowledged kv ${id} lost`);
          assert.equal(v.i, i);
          assert.equal(v.run, r);
        }
        const col = store.records.collection("durable");
        for (const { id, i, run: r } of all.rec) {
          const doc = await col.get(id);
          assert.ok(doc, `run ${run}: acknowledged record ${id} lost`);
          assert.deepEqual(doc.data, { run: r, i });
        }
        const events = await collect(store.events.read("log"));
        const seqs = events.map((e) => e.seq);
        assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, k) => k + 1), "event seqs must stay gapless after a crash");
        const bySeq = new Map(events.map((e) => [e.seq, e.data]));
        for (const { id, i, run: r } of all.ev) {
          assert.ok(bySeq.has(Number(id)), `run ${run}: acknowledged event seq ${id} lost`);
          assert.deepEqual(bySeq.get(Number(id)), { run: r, i });
        }
        // opens cleanly: readable and writable again
        await store.kv.set(`after-run-${run}`, run);
        assert.equal(await store.kv.get(`after-run-${run}`), run);
        const next = await store.events.append("log", { type: "checkpoint", data: { run } });
        assert.equal(next.seq, seqs.length + 1);
        assert.ok(await col.count({ run }) >= acked.rec.length);
      } finally {
        await store.close();
      }
      console.log(`# run ${run}: killed after ${acked.kv.length + acked.rec.length + acked.ev.length} acks; all ${all.kv.length + all.rec.length + all.ev.length} acknowledged writes present`);
    }
  });
});
