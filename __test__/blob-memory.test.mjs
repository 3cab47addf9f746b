// A 1 GiB blob streams in and out with RSS growth well under 100 MiB (API.md, store.blobs), on
// SQLite and on S3, where a multipart upload keeps several parts in flight (about 17 s on moto).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { run, supportScript, describeRun } from "./support/proc.mjs";
import { S3_ENDPOINT, isCI } from "./support/adapters.mjs";

const LIMIT_MIB = 100;
const dir = mkdtempSync(join(tmpdir(), "persist-blobmem-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let s3Missing = false;
try {
  await fetch(S3_ENDPOINT, { signal: AbortSignal.timeout(2000) });
} catch (e) {
  if (isCI) throw new Error(`S3 server unavailable with CI=true: ${e.message} (run scripts/ensure-s3.sh)`);
  s3Missing = `no S3 server at ${S3_ENDPOINT} (run scripts/ensure-s3.sh)`;
}

async function checkBound(t, adapter, mib) {
  const r = await run(process.execPath, ["--expose-gc", supportScript("blob-memory-child.mjs"), dir, String(mib), adapter], { timeoutMs: 880_000 });
  assert.equal(r.code, 0, `child failed: ${describeRun(r)}`);
  const report = JSON.parse(r.stdout.trim().split("\n").at(-1));
  const line = `${mib} MiB blob on ${adapter}: peak RSS growth ${report.growthMiB} MiB (put phase ${report.putGrowthMiB} MiB; baseline ${report.baselineRssMiB} MiB, peak ${report.peakRssMiB} MiB); put ${report.putMs} ms, stream ${report.streamMs} ms`;
  console.log(`# ${line}`);
  t.diagnostic(line);
  assert.equal(report.putSize, report.expectedSize, "BlobInfo.size from put");
  assert.equal(report.headSize, report.expectedSize, "BlobInfo.size from head");
  assert.equal(report.bytesRead, report.expectedSize, "bytes read through stream()");
  assert.equal(report.outHash, report.inHash, "the blob read back differs from what was written");
  assert.ok(report.growthMiB < LIMIT_MIB, `RSS grew by ${report.growthMiB} MiB (limit ${LIMIT_MIB} MiB)`);
}

describe("blob memory bound", () => {
  it(`1 GiB put from a Readable and read back through stream(): byte-exact, RSS growth < ${LIMIT_MIB} MiB`, { timeout: 900_000 }, async (t) => {
    await checkBound(t, "sqlite", 1024);
  });
  it(`S3: 1 GiB put from a Readable (multipart, parts in flight) and streamed back: byte-exact, RSS growth < ${LIMIT_MIB} MiB`, { timeout: 900_000, skip: s3Missing }, async (t) => {
    await checkBound(t, "s3", 1024);
  });
});
