// Child process for sqlite.test.mjs. Usage: node sqlite-child.mjs '<json command>'
// Prints one JSON line with the result on stdout.
import { createStore } from "@cuitty/persist";

const cmd = JSON.parse(process.argv[2]);
const out = {};

switch (cmd.op) {
  case "default-path": {
    // adapter omitted (cmd.adapter undefined) or "sqlite", path omitted
    const config = cmd.adapter ? { name: cmd.name, adapter: cmd.adapter } : { name: cmd.name };
    const store = await createStore(config);
    out.adapter = store.adapter;
    await store.kv.set("where", "default");
    out.value = await store.kv.get("where");
    await store.close();
    break;
  }
  case "memory": {
    const s1 = await createStore({ name: cmd.name, adapter: "sqlite", path: ":memory:" });
    await s1.kv.set("k", "v1");
    await s1.records.collection("c").insert({ a: 1 }, { id: "x" });
    await s1.events.append("e", { type: "t" });
    await s1.blobs.put("b", "blob");
    out.value = await s1.kv.get("k");
    out.record = (await s1.records.collection("c").get("x"))?.data;
    out.blob = (await s1.blobs.get("b"))?.toString();
    const s2 = await createStore({ name: cmd.name, adapter: "sqlite", path: ":memory:" });
    out.otherMemoryStoreValue = (await s2.kv.get("k")) ?? null;
    await s2.close();
    await s1.close();
    const s3 = await createStore({ name: cmd.name, path: ":memory:" });
    out.afterReopen = (await s3.kv.get("k")) ?? null;
    out.adapter = s3.adapter;
    await s3.close();
    break;
  }
  case "write-all": {
    const store = await createStore({ name: cmd.name, adapter: "sqlite", path: cmd.path });
    out.seenFromParent = (await store.kv.get("from-parent")) ?? null;
    out.parentRecord = (await store.records.collection("c").get("parent-doc"))?.data ?? null;
    await store.kv.set("from-child", { pid: process.pid });
    await store.records.collection("c").insert({ by: "child" }, { id: "child-doc" });
    await store.blobs.put("child-blob", "blob from child", { contentType: "text/plain" });
    out.seq = (await store.events.append("shared-stream", { type: "child", data: { pid: process.pid } })).seq;
    await store.close();
    break;
  }
  default:
    throw new Error(`unknown op ${cmd.op}`);
}
process.stdout.write(JSON.stringify(out) + "\n");
