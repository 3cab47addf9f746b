// Differential check: random documents and random queries give the same ids in the same order
// on Postgres (compiled SQL, Rust fallback) and on SQLite, with and without indexes. Without
// indexes (a fresh schema per test process) Postgres compiles conditions to jsonpath and sorts
// numbers as numeric; with them, to the expression forms the indexes serve.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { createStore } from "@cuitty/persist";
import { adapters, isCI, pgConfig } from "./support/adapters.mjs";
import { randomName } from "./support/util.mjs";

const pg = adapters.find((a) => a.name === "postgres");
const status = await pg.available();
const skip = !status.ok && !isCI && process.env.PERSIST_ADAPTERS !== "postgres" ? `postgres unavailable: ${status.reason}` : false;
const dir = mkdtempSync(join(tmpdir(), "persist-pgdiff-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let seed = 12345;
const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const pick = (xs) => xs[rnd(xs.length)];
const SCALARS = [null, true, false, -3, -1, 0, 1, 2, 2.5, -1.5, 0.5, 1e-3, 1e-7, 7, 9007199254740991, "", "a", "ab", "abc", "B", "b", "é", "éa", "日本", "😀", "a b", "1", "Z", "line\n", 'q"uote', "back\\slash", "a\u0000", "a\u0000b", "\u0001", "a\u0001", "\ufffd"];
const COMPOSITES = [[], [1], [1, 2], ["a"], { x: 1 }, { y: 2, x: 1 }, { x: "a" }, {}];
const value = () => (rnd(100) < 85 ? pick(SCALARS) : pick(COMPOSITES));
const FIELDS = ["a", "b", "s", "n.x", "n.y", "we ird'k", 'q"l\\b'];

function doc() {
  const d = {};
  for (const f of FIELDS) {
    if (rnd(100) < 20) continue;
    const v = f === "b" && rnd(100) < 70 ? rnd(8) - 2 : value();
    if (f.startsWith("n.")) { d.n = typeof d.n === "object" && d.n && !Array.isArray(d.n) ? d.n : {}; d.n[f.slice(2)] = v; }
    else d[f] = v;
  }
  if (rnd(100) < 10) d.n = value();
  return d;
}

function where(depth) {
  const r = rnd(100);
  if (depth > 0 && r < 10) return { $and: [where(depth - 1), where(depth - 1)] };
  if (depth > 0 && r < 20) return { $or: [where(depth - 1), where(depth - 1)] };
  if (depth > 0 && r < 25) return { $not: where(depth - 1) };
  const f = pick(FIELDS);
  const op = pick(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$prefix", "plain"]);
  if (op === "plain") return { [f]: rnd(100) < 90 ? pick(SCALARS) : pick(COMPOSITES) };
  if (op === "$in" || op === "$nin") return { [f]: { [op]: [value(), value()] } };
  if (op === "$exists") return { [f]: { $exists: rnd(2) === 0 } };
  if (op === "$prefix") return { [f]: { $prefix: pick(["", "a", "é", "日", "1", "a\u0000", "\u0001"]) } };
  return { [f]: { [op]: value() } };
}

const order = () => Array.from({ length: 1 + rnd(2) }, () => ({ field: pick(FIELDS), direction: pick(["asc", "desc"]) }));

describe("postgres query results equal sqlite's", { skip }, () => {
  it("random where / orderBy / paging", { timeout: 300_000 }, async () => {
    const name = randomName("diff");
    const lite = await createStore({ name, adapter: "sqlite", path: join(dir, "d.db") });
    const pgs = await createStore(pgConfig(name));
    try {
      const docs = Array.from({ length: 150 }, () => doc());
      for (const [i, d] of docs.entries()) {
        const id = `${pick(["A", "a", "é", "z", "0"])}${(i * 7919) % 1000}-${i}`;
        await lite.records.collection("c").insert(d, { id });
        await pgs.records.collection("c").insert(d, { id });
      }
      for (let round = 0; round < 2; round++) {
        if (round === 1) for (const f of FIELDS) { await lite.records.collection("c").ensureIndex(f); await pgs.records.collection("c").ensureIndex(f); }
        for (let q = 0; q < 300; q++) {
          const query = { where: where(2), orderBy: rnd(3) === 0 ? undefined : order() };
          const a = (await lite.records.collection("c").find(query).toArray()).map((d) => d.id);
          const b = (await pgs.records.collection("c").find(query).toArray()).map((d) => d.id);
          assert.deepEqual(b, a, `query ${JSON.stringify(query)}`);
          assert.equal(await pgs.records.collection("c").count(query.where), a.length);
          if (a.length > 3) {
            const page = { ...query, limit: 2, after: a[1] };
            const pa = (await lite.records.collection("c").find(page).toArray()).map((d) => d.id);
            const pb = (await pgs.records.collection("c").find(page).toArray()).map((d) => d.id);
            assert.deepEqual(pb, pa, `page ${JSON.stringify(page)}`);
          }
        }
      }
    } finally { await lite.close(); await pgs.close(); }
  });
});
