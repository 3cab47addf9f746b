// A p2p peer in its own process, driven by the test over stdin/stdout (one JSON per line).
// argv[2]: the store config (JSON). Requests: { id, code } where code is the source of an async
// function of the store; replies: { id, ok: true, value } or { id, ok: false, error }.
// Sync events arrive unasked as { event, peerId, at } (`at`: epoch ms, sub-ms, this machine's
// clock). PERSIST_BENCH_PKG (set by bench/run.mjs) loads the package from that snapshot.
import { createInterface } from "node:readline";
import { join } from "node:path";

const { createStore } = await import(process.env.PERSIST_BENCH_PKG ? join(process.env.PERSIST_BENCH_PKG, "index.mjs") : "@cuitty/persist");
const store = await createStore(JSON.parse(process.argv[2]));
const send = (msg) => process.stdout.write(JSON.stringify(msg) + "\n");
const now = () => performance.timeOrigin + performance.now();
store.sync.on("peer", (peerId) => send({ event: "peer", peerId, at: now() }));
store.sync.on("synced", (peerId) => send({ event: "synced", peerId, at: now() }));
send({ ready: true, peerId: store.sync.peerId });
const rl = createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  const { id, code } = JSON.parse(line);
  try {
    const fn = new Function(`return (${code})`)();
    const value = await fn(store);
    send({ id, ok: true, value: value === undefined ? null : value });
  } catch (e) {
    send({ id, ok: false, error: { code: e?.code, message: e?.message } });
  }
});
rl.on("close", async () => { await store.close(); process.exit(0); });
