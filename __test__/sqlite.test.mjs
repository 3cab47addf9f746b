// SQLite-specific behaviour (beside the conformance suite).
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, openSync, readSync, closeSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { createStore } from "@cuitty/persist";
import { collect, randomName } from "./support/util.mjs";
import { runNode, supportScript, describeRun } from "./support/proc.mjs";

const root = mkdtempSync(join(tmpdir(), "persist-sqlite-"));
after(() => rmSync(root, { recursive: true, force: true }));
const freshDir = () => mkdtempSync(join(root, "d-"));
const child = supportScript("sqlite-child.mjs");

async function runChild(cmd, cwd) {
  const r = await runNode(child, [JSON.stringify(cmd)], { cwd, timeoutMs: 60_000 });
  assert.equal(r.code, 0, `child failed: ${describeRun(r)}`);
  const line = r.stdout.trim().split("\n").at(-1);
  return JSON.parse(line);
}

function readHeader(file) {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(100);
    readSync(fd, buf, 0, 100, 0);
    return buf;
  } finally {
    closeSync(fd);
  }
}

describe("sqlite adapter", () => {
  it("defaults to ./.persist/<name>.db when path is omitted (adapter omitted)", async () => {
    const cwd = freshDir();
    const name = randomName("dflt");
    const out = await runChild({ op: "default-path", name }, cwd);
    assert.equal(out.adapter, "sqlite", "adapter omitted means sqlite");
    assert.equal(out.value, "default");
    const file = join(cwd, ".persist", `${name}.db`);
    assert.ok(existsSync(file), `${file} was not created; cwd has ${readdirSync(cwd)}`);
    assert.equal(readHeader(file).subarray(0, 16).toString("latin1"), "SQLite format 3\0");
  });

  it("defaults to ./.persist/<name>.db with adapter: \"sqlite\" and no path, and reopens it", async () => {
    const cwd = freshDir();
    const name = randomName("dflt");
    await runChild({ op: "default-path", name, adapter: "sqlite" }, cwd);
    assert.ok(existsSync(join(cwd, ".persist", `${name}.db`)));
    // a second process with the same name in the same cwd opens the same file
    const again = await runChild({ op: "default-path", name }, cwd);
    assert.equal(again.value, "default");
    assert.deepEqual(readdirSync(join(cwd, ".persist")).filter((f) => f.endsWith(".db")), [`${name}.db`]);
  });

  it("creates missing parent folders", async (t) => {
    const dir = freshDir();
    const file = join(dir, "a", "b", "c", "store.db");
    const s = await createStore({ name: randomName(), adapter: "sqlite", path: file });
    t.after(() => s.close().catch(() => {}));
    await s.kv.set("k", 1);
    assert.ok(existsSync(file));
    assert.ok(statSync(join(dir, "a", "b", "c")).isDirectory());
  });

  it("\":memory:\" is an in-memory store: works, private to its instance, writes no file", async () => {
    const cwd = freshDir();
    const out = await runChild({ op: "memory", name: randomName("mem") }, cwd);
    assert.equal(out.value, "v1");
    assert.deepEqual(out.record, { a: 1 });
    assert.equal(out.blob, "blob");
    assert.equal(out.otherMemoryStoreValue, null, "a second :memory: store must not share data");
    assert.equal(out.afterReopen, null, "a closed :memory: store's data is gone");
    assert.equal(out.adapter, "sqlite");
    assert.deepEqual(readdirSync(cwd), [], "nothing may be written to disk");
  });

  it("WAL mode is on (file header read/write versions are 2)", async () => {
    const file = join(freshDir(), "wal.db");
    const s = await createStore({ name: randomName(), adapter: "sqlite", path: file });
    await s.kv.set("k", "v");
    await s.close();
    const h = readHeader(file);
    assert.equal(h.subarray(0, 16).toString("latin1"), "SQLite format 3\0");
    assert.equal(h[18], 2, "file format write version is not WAL");
    assert.equal(h[19], 2, "file format read version is not WAL");
  });

  it("two store names in one file are kept apart in every namespace", async (t) => {
    const file = join(freshDir(), "shared.db");
    const a = await createStore({ name: "alpha", adapter: "sqlite", path: file });
    t.after(() => a.close().catch(() => {}));
    const b = await createStore({ name: "beta", path: file });
    t.after(() => b.close().catch(() => {}));
    await a.kv.set("k", "alpha");
    await a.records.collection("c").insert({ who: "alpha" }, { id: "doc" });
    await a.blobs.put("blob", "alpha");
    await a.events.append("s", [{ type: "alpha" }, { type: "alpha" }]);
    assert.equal(await b.kv.get("k"), undefined);
    assert.deepEqual(await collect(b.kv.list()), []);
    assert.equal(await b.records.collection("c").get("doc"), undefined);
    assert.equal(await b.records.collection("c").count(), 0);
    assert.equal(await b.blobs.head("blob"), undefined);
    assert.deepEqual(await collect(b.blobs.list()), []);
    assert.deepEqual(await collect(b.events.read("s")), []);
    assert.deepEqual(await collect(b.events.streams()), []);
    await b.kv.set("k", "beta");
    assert.deepEqual(await b.events.append("s", { type: "beta" }), { seq: 1 });
    await b.records.collection("c").insert({ who: "beta" }, { id: "doc" });
    assert.equal(await a.kv.get("k"), "alpha");
    assert.deepEqual((await a.records.collection("c").get("doc")).data, { who: "alpha" });
    assert.deepEqual((await collect(a.events.read("s"))).map((e) => e.type), ["alpha", "alpha"]);
    // a third handle with an existing name sees that name's data
    const a2 = await createStore({ name: "alpha", adapter: "sqlite", path: file });
    t.after(() => a2.close().catch(() => {}));
    assert.equal(await a2.kv.get("k"), "alpha");
    assert.equal((await a2.blobs.get("blob")).toString(), "alpha");
  });

  it("two processes on one file see each other's writes", async (t) => {
    const file = join(freshDir(), "two-proc.db");
    const name = randomName("shared");
    const s = await createStore({ name, adapter: "sqlite", path: file });
    t.after(() => s.close().catch(() => {}));
    await s.kv.set("from-parent", "hello child");
    await s.records.collection("c").insert({ by: "parent" }, { id: "parent-doc" });
    await s.events.append("shared-stream", { type: "parent" });
    const out = await runChild({ op: "write-all", name, path: file });
    assert.equal(out.seenFromParent, "hello child");
    assert.deepEqual(out.parentRecord, { by: "parent" });
    assert.equal(out.seq, 2, "the child continues the parent's stream");
    // the parent, still open, reads what the child wrote
    assert.equal(typeof (await s.kv.get("from-child")).pid, "number");
    assert.deepEqual((await s.records.collection("c").get("child-doc")).data, { by: "child" });
    assert.equal((await s.blobs.get("child-blob")).toString(), "blob from child");
    assert.equal((await s.blobs.head("child-blob")).contentType, "text/plain");
    assert.deepEqual((await collect(s.events.read("shared-stream"))).map((e) => [e.seq, e.type]), [[1, "parent"], [2, "child"]]);
    assert.deepEqual(await s.events.append("shared-stream", { type: "parent-again" }), { seq: 3 });
  });
});
