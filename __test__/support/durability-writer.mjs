// Child process for durability.test.mjs: writes forever, printing one line per
// ACKNOWLEDGED (awaited) write. Usage: node durability-writer.mjs <path> <name> <run>
// Lines: "kv <key> <i>", "rec <id> <i>", "ev <seq> <i>".
// On Linux, stdout writes to a pipe are synchronous, so a printed line was acknowledged first.
import { createStore } from "@cuitty/persist";

const [path, name, run] = process.argv.slice(2);
const store = await createStore({ name, adapter: "sqlite", path });
const col = store.records.collection("durable");
process.stdout.write("ready\n");
for (let i = 0; ; i++) {
  const key = `r${run}-k${i}`;
  await store.kv.set(key, { run: Number(run), i, pad: "x".repeat(i % 200) });
  process.stdout.write(`kv ${key} ${i}\n`);
  const doc = await col.insert({ run: Number(run), i });
  process.stdout.write(`rec ${doc.id} ${i}\n`);
  const { seq } = await store.events.append("log", { type: "tick", data: { run: Number(run), i } });
  process.stdout.write(`ev ${seq} ${i}\n`);
}
