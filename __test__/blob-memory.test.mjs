// A 1 GiB blob streams in and out with RSS growth well under 100 MiB (API.md, store.blobs).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { run, supportScript, describeRun } from "./support/proc.mjs";

const LIMIT_MIB = 100;
const dir = mkdtempSync(join(tmpdir(), "persist-blobmem-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("blob memory bound", () => {
  it(`1 GiB put from a Readable and read back through stream(): byte-exact, RSS growth < ${LIMIT_MIB} MiB`, { timeout: 900_000 }, async (t) => {
    const r = await run(process.execPath, ["--expose-gc", supportScript("blob-memory-child.mjs"), dir, "1024"], { timeoutMs: 880_000 });
    assert.equal(r.code, 0, `child failed: ${describeRun(r)}`);
    const report = JSON.parse(r.stdout.trim().split("\n").at(-1));
    const line = `1 GiB blob: peak RSS growth ${report.growthMiB} MiB (put phase ${report.putGrowthMiB} MiB; baseline ${report.baselineRssMiB} MiB, peak ${report.peakRssMiB} MiB); put ${report.putMs} ms, stream ${report.streamMs} ms`;
    console.log(`# ${line}`);
    t.diagnostic(line);
    assert.equal(report.putSize, report.expectedSize, "BlobInfo.size from put");
    assert.equal(report.headSize, report.expectedSize, "BlobInfo.size from head");
    assert.equal(report.bytesRead, report.expectedSize, "bytes read through stream()");
    assert.equal(report.outHash, report.inHash, "the blob read back differs from what was written");
    assert.ok(report.growthMiB < LIMIT_MIB, `RSS grew by ${report.growthMiB} MiB (limit ${LIMIT_MIB} MiB)`);
  });
});
