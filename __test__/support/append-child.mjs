// Child process for subscribe-cross-process.test.mjs.
// Usage: node append-child.mjs <path> <name> <stream> <count> <delayMs>
// Appends <count> events, printing "ack <seq> <epochMs>" after each acknowledged append.
import { createStore } from "@cuitty/persist";

const [path, name, stream, count, delayMs] = process.argv.slice(2);
const store = await createStore({ name, adapter: "sqlite", path });
for (let i = 1; i <= Number(count); i++) {
  const { seq } = await store.events.append(stream, { type: "from-child", data: { i, pid: process.pid } });
  process.stdout.write(`ack ${seq} ${Date.now()}\n`);
  await new Promise((r) => setTimeout(r, Number(delayMs)));
}
await store.close();
process.stdout.write("done\n");
