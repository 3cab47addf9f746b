// Child process for blob-memory.test.mjs. Usage: node --expose-gc blob-memory-child.mjs <dir> [MiB] [sqlite|s3]
// (s3: the local server of scripts/ensure-s3.sh, a multipart upload with its parts in flight).
// Puts a generated blob (default 1 GiB) from a Readable stream, reads it back through stream(),
// hashes both sides and prints one JSON line with sizes, hashes and RSS figures.
// The generator allocates a fresh 1 MiB chunk each time (never reused: the store may still hold it)
// and forces a GC every 32 MiB, so garbage left by this harness does not count against the store.
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { Readable } from "node:stream";
import { createStore } from "@cuitty/persist";
import { s3Bucket, s3Config } from "./adapters.mjs";

const [dir, mibArg, adapter = "sqlite"] = process.argv.slice(2);
const MiB = 1024 * 1024;
const CHUNKS = Number(mibArg ?? 1024);
const gc = globalThis.gc ?? (() => {});

const store = adapter === "s3"
  ? await createStore(s3Config("mem", { bucket: await s3Bucket(), prefix: `mem-${process.pid}/` }))
  : await createStore({ name: "mem", adapter: "sqlite", path: join(dir, "blob-memory.db") });
// Warm up the code paths before the baseline, so one-time set-up (on S3: the multipart machinery,
// its connections and worker threads) does not count as growth caused by streaming the blob: on
// S3 a 24 MiB body, which goes up in several parts at once; elsewhere 64 KiB.
const warmBytes = adapter === "s3" ? 24 * 1024 * 1024 : 64 * 1024;
await store.blobs.put("warm", Readable.from([randomBytes(warmBytes)]));
for await (const _ of await store.blobs.stream("warm")) { /* drain */ }
await store.blobs.delete("warm");

const base = randomBytes(MiB);
gc(); gc();
const baseline = process.memoryUsage().rss;
let peak = baseline;
const sample = () => { const r = process.memoryUsage().rss; if (r > peak) peak = r; };
const timer = setInterval(sample, 10);

const inHash = createHash("sha256");
let produced = 0;
const body = new Readable({
  highWaterMark: MiB,
  read() {
    sample();
    if (produced >= CHUNKS) { this.push(null); return; }
    const chunk = Buffer.allocUnsafe(MiB);
    base.copy(chunk);
    chunk.writeUInt32LE(produced, 0);
    chunk.writeUInt32LE((produced * 2654435761) >>> 0, MiB / 2);
    produced++;
    inHash.update(chunk);
    if (produced % 32 === 0) gc();
    this.push(chunk);
  },
});

const t0 = Date.now();
const info = await store.blobs.put("big", body, { contentType: "application/x-test" });
const putMs = Date.now() - t0;
gc();
sample();
const peakAfterPut = peak;

const outHash = createHash("sha256");
let read = 0, sinceGc = 0;
const t1 = Date.now();
for await (const chunk of await store.blobs.stream("big")) {
  outHash.update(chunk);
  read += chunk.length;
  sinceGc += chunk.length;
  if (sinceGc >= 32 * MiB) { sinceGc = 0; gc(); }
  sample();
}
const streamMs = Date.now() - t1;
clearInterval(timer);
sample();
const head = await store.blobs.head("big");
await store.blobs.delete("big");
await store.close();

process.stdout.write(JSON.stringify({
  expectedSize: CHUNKS * MiB,
  putSize: info.size,
  headSize: head?.size,
  bytesRead: read,
  inHash: inHash.digest("hex"),
  outHash: outHash.digest("hex"),
  baselineRssMiB: +(baseline / MiB).toFixed(1),
  peakRssMiB: +(peak / MiB).toFixed(1),
  growthMiB: +((peak - baseline) / MiB).toFixed(1),
  putGrowthMiB: +((peakAfterPut - baseline) / MiB).toFixed(1),
  putMs,
  streamMs,
}) + "\n");
