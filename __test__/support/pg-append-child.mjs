// Child process for postgres.test.mjs: appends to a stream of a Postgres store.
// Usage: node pg-append-child.mjs <schema> <name> <stream> <count> <delayMs> <batch>
// Appends <count> batches of <batch> events, printing "ack <seq>" after each acknowledged append.
import { createStore } from "@cuitty/persist";

const [schema, name, stream, count, delayMs, batch] = process.argv.slice(2);
const store = await createStore({
  name, adapter: "postgres", schema,
  connection: { host: "127.0.0.1", port: 5432, database: "persist", user: "persist", password: process.env.PG_PASSWORD ?? "persist" },
});
for (let i = 1; i <= Number(count); i++) {
  const events = Array.from({ length: Number(batch) }, (_, j) => ({ type: "from-child", data: { i, j, pid: process.pid } }));
  const { seq } = await store.events.append(stream, events);
  process.stdout.write(`ack ${seq}\n`);
  if (Number(delayMs) > 0) await new Promise((r) => setTimeout(r, Number(delayMs)));
}
await store.close();
process.stdout.write("done\n");
