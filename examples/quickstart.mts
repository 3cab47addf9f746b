// The quick start: the SQLite snippet of the docs page, then one call into each namespace.
import { createStore, PersistError } from "@cuitty/persist";

const store = await createStore({
  name: "my-app",
  adapter: "sqlite",
  path: "./data/my-app.db",
});

await store.kv.set("greeting", { text: "hello" }, { ttl: 60_000 });
console.log("kv:", await store.kv.get("greeting"));

type Todo = { title: string; done: boolean; priority: number };
const todos = store.records.collection<Todo>("todos");
await todos.insert({ title: "write docs", done: false, priority: 8 });
await todos.insert({ title: "ship it", done: false, priority: 9 });
await todos.ensureIndex("priority");
const urgent = await todos
  .find({ where: { done: false, priority: { $gte: 7 } }, orderBy: { field: "priority", direction: "desc" }, limit: 10 })
  .toArray();
console.log("records:", urgent.map((d) => `${d.data.title} (p${d.data.priority})`));

const info = await store.blobs.put("notes/hello.txt", "Hello, blobs!", { contentType: "text/plain" });
console.log("blobs:", info.key, info.size, "bytes:", (await store.blobs.get(info.key))?.toString());

const sub = await store.events.subscribe("orders", (e) => console.log("event:", e.seq, e.type, e.data), { from: "end" });
await store.events.append("orders", [{ type: "created", data: { id: 1 } }, { type: "paid", data: { id: 1 } }]);
await new Promise((resolve) => setTimeout(resolve, 300));
await sub.close();

try {
  await store.kv.set("", 1);
} catch (err) {
  if (err instanceof PersistError) console.log("errors:", err.code, "-", err.message);
}
await store.close();
