// Live delivery across processes sharing one SQLite file.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { createStore } from "@cuitty/persist";
import { randomName, sleep, waitUntil } from "./support/util.mjs";
import { spawnNodeLines, supportScript } from "./support/proc.mjs";

// API.md: "within about a second". Generous, to stay robust on a loaded 2-core machine.
const DELIVERY_TIMEOUT_MS = 5000;
const dir = mkdtempSync(join(tmpdir(), "persist-xproc-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs append-child.mjs; resolves with ack times per seq once it exits. */
function runAppender(path, name, stream, count, delayMs, onAck) {
  const acks = new Map();
  const proc = spawnNodeLines(supportScript("append-child.mjs"), [path, name, stream, String(count), String(delayMs)], (line) => {
    const [kind, seq, at] = line.split(" ");
    if (kind === "ack") { acks.set(Number(seq), Number(at)); onAck?.(Number(seq)); }
  });
  return proc.exited.then(({ code, signal }) => {
    assert.equal(code, 0, `appender failed (signal ${signal}):\n${proc.stderr().slice(-3000)}`);
    return acks;
  });
}

describe("subscribe across processes", () => {
  it("a subscriber sees events appended by another process on the same file", { timeout: 120_000 }, async (t) => {
    const path = join(dir, "live.db");
    const name = randomName("x");
    const store = await createStore({ name, adapter: "sqlite", path });
    t.after(() => store.close().catch(() => {}));
    const got = [];
    const arrivedAt = new Map();
    const sub = await store.events.subscribe("feed", (e) => { got.push(e); arrivedAt.set(e.seq, Date.now()); }, { from: "end" });
    t.after(() => sub.close().catch(() => {}));
    const pendingChecks = [];
    const acks = await runAppender(path, name, "feed", 5, 400, (seq) => {
      pendingChecks.push(waitUntil(() => arrivedAt.has(seq), DELIVERY_TIMEOUT_MS, `event seq ${seq} from the other process`));
    });
    await Promise.all(pendingChecks);
    await sleep(300);
    assert.deepEqual(got.map((e) => e.seq), [1, 2, 3, 4, 5], "each event once, in order");
    assert.deepEqual(got.map((e) => e.data.i), [1, 2, 3, 4, 5]);
    assert.ok(got.every((e) => e.stream === "feed" && e.type === "from-child"));
    const latencies = [...acks].map(([seq, at]) => arrivedAt.get(seq) - at);
    console.log(`# cross-process delivery latency ms (ack -> handler): ${latencies.join(", ")}; max ${Math.max(...latencies)}`);
    t.diagnostic(`cross-process delivery max latency ${Math.max(...latencies)} ms`);
  });

  it("history from one process, then live events from another, in order, each once", { timeout: 120_000 }, async (t) => {
    const path = join(dir, "history.db");
    const name = randomName("x");
    await runAppender(path, name, "h", 3, 0);
    const store = await createStore({ name, adapter: "sqlite", path });
    t.after(() => store.close().catch(() => {}));
    const got = [];
    const sub = await store.events.subscribe("h", (e) => { got.push(e.seq); });
    t.after(() => sub.close().catch(() => {}));
    await waitUntil(() => got.length >= 3, DELIVERY_TIMEOUT_MS, "history");
    await runAppender(path, name, "h", 3, 100);
    await waitUntil(() => got.length >= 6, DELIVERY_TIMEOUT_MS, "live events from the second process");
    await sleep(300);
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6]);
  });
});
