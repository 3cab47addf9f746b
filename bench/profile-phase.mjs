// node bench/profile-phase.mjs <phase> [custom-map]: one phase of the bench workload on SQLite
// (or on a custom adapter over a Map), to run under
// `perf record -e cpu-clock -g node --perf-basic-prof bench/profile-phase.mjs get-seq` (bench/PROFILE.md).
import { createRequire } from "node:module";
const { createStore } = createRequire(import.meta.url)("../index.js");
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const phase = process.argv[2];
rmSync(join(tmpdir(), "persist-profile"), { recursive: true, force: true });
const mapAdapter = (m = new Map()) => ({
  async get(k) { return m.get(k); },
  async put(k, v) { m.set(k, v); },
  async delete(k) { m.delete(k); },
  async *list(prefix) { for (const [key, value] of m) if (key.startsWith(prefix)) yield { key, value }; },
});
const s = process.argv[3] === "custom-map"
  ? await createStore({ name: "p", adapter: mapAdapter() })
  : await createStore({ name: "p", path: join(tmpdir(), "persist-profile", "p.db") });
const N = 50000;
const key = (i) => "user:" + String(i).padStart(6, "0");
const val = (i) => ({ id: i, name: "User " + i, email: `u${i}@example.com`, age: 20 + (i % 50), active: i % 2 === 0, tags: ["a", "b"], bio: "x".repeat(81) });
async function pool(n, conc, fn) { let next = 0; await Promise.all(Array.from({ length: conc }, async () => { while (next < n) { const i = next++; await fn(i); } })); }
if (phase !== "set-c64" && phase !== "set-seq") for (let i = 0; i < N; i += 1000) await s.kv.setMany(Array.from({ length: 1000 }, (_, j) => ({ key: key(i + j + 1), value: val(i + j + 1) })));
const t = process.hrtime.bigint();
if (phase === "set-c64") await pool(N, 64, (i) => s.kv.set(key(i + 1), val(i + 1)));
if (phase === "set-seq") for (let i = 0; i < 10000; i++) await s.kv.set(key(i + 1), val(i + 1));
if (phase === "get-seq") for (let i = 0; i < N; i++) await s.kv.get(key((i * 7919) % N + 1));
if (phase === "get-c64") await pool(N, 64, (i) => s.kv.get(key((i * 7919) % N + 1)));
if (phase === "set-batch") for (let i = 0; i < N; i += 1000) await s.kv.setMany(Array.from({ length: 1000 }, (_, j) => ({ key: "b" + key(i + j + 1), value: val(i + j + 1) })));
if (phase === "list") for (let r = 0; r < 20; r++) { let n = 0; for await (const e of s.kv.list({ prefix: "user:00" })) n++; if (n !== 9999) throw new Error("n " + n); }
const ms = Number(process.hrtime.bigint() - t) / 1e6;
const ops = { "set-c64": N, "set-seq": 10000, "get-seq": N, "get-c64": N, "set-batch": N, list: 20 * 9999 }[phase];
console.log(phase, Math.round(ops / (ms / 1000)), "ops/s");
await s.close();
