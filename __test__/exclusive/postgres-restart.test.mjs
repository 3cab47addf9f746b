// A Postgres server restart in the middle of a workload. In exclusive/: scripts/test.sh runs it
// after every other test file, alone, because the restart breaks the connections of any other
// test using the server at the time. With CI=true an unreachable server is a failure, never a skip.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { before, describe, it } from "node:test";
import { createStore, PersistError } from "@cuitty/persist";
import { adapters, isCI, pgConfig } from "../support/adapters.mjs";
import { randomName, sleep, waitUntil, collect } from "../support/util.mjs";

const pg = adapters.find((a) => a.name === "postgres");
const status = await pg.available();
const skip = !status.ok && !isCI && process.env.PERSIST_ADAPTERS !== "postgres" ? `postgres unavailable: ${status.reason}` : false;

describe("postgres server restart", { skip }, () => {
  before(() => { if (!status.ok) assert.fail(`postgres unavailable: ${status.reason}`); });

  it("survives a server restart mid-workload without being reopened", { timeout: 180_000 }, async () => {
    const version = execFileSync("ls", ["/etc/postgresql"], { encoding: "utf8" }).trim().split("\n").pop();
    const store = await createStore(pgConfig(randomName("restart"), "restart"));
    const seen = [];
    const sub = await store.events.subscribe("log", (e) => { seen.push(e.seq); });
    const acked = new Map();       // kv key -> value acknowledged
    const ackedSeqs = [];
    const failures = [];
    let running = true;
    const worker = async (w) => {
      for (let i = 0; running; i++) {
        try {
          await store.kv.set(`w${w}-${i}`, { w, i });
          acked.set(`w${w}-${i}`, { w, i });
          const { seq } = await store.events.append("log", { type: "t", data: { w, i } });
          ackedSeqs.push(seq);
          await store.kv.get(`w${w}-${i}`);
        } catch (e) {
          failures.push(e);
        }
        await sleep(5);
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    try {
      await sleep(500);
      execFileSync("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", "restart"], { stdio: "ignore" });
      await sleep(1500);
      running = false;
      await Promise.all(workers);
      for (const e of failures) {
        assert.ok(e instanceof PersistError, `not a PersistError: ${e}`);
        assert.ok(["CONNECTION", "TIMEOUT"].includes(e.code), `${e.code}: ${e.message}`);
      }
      // Carries on: a write and a read after the restart, on the same store object.
      await store.kv.set("after", 1);
      assert.equal(await store.kv.get("after"), 1);
      for (const [k, v] of acked) assert.deepEqual(await store.kv.get(k), v, `acknowledged write ${k} lost`);
      const events = await collect(store.events.read("log"));
      assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), "seqs not gapless");
      assert.equal(new Set(ackedSeqs).size, ackedSeqs.length, "a seq was acknowledged twice");
      for (const s of ackedSeqs) assert.ok(s <= events.length);
      // The subscription survived and catches up.
      const { seq } = await store.events.append("log", { type: "end" });
      await waitUntil(() => seen.includes(seq), 10_000, "subscription to catch up after the restart");
      assert.deepEqual(seen, seen.map((_, i) => i + 1), "subscription skipped or repeated events");
    } finally {
      running = false;
      await Promise.allSettled(workers);
      await sub.close().catch(() => {});
      await store.close();
      // Leave the server up for everything else.
      execFileSync("bash", ["scripts/ensure-postgres.sh"], { stdio: "ignore" });
    }
  });
});
