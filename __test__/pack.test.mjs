// The published package: npm pack, install into a fresh project, type-check every snippet of the
// docs page and run the SQLite, Postgres (local server), S3 (moto) and custom-adapter ones
// unchanged, and load it through both require() and import. (The P2P snippet runs in
// p2p-mdns.test.mjs, inside a network namespace: mDNS never runs on a real interface.)
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { REPO_ROOT, run, describeRun } from "./support/proc.mjs";
import { DOCS, snippets, asModule } from "./support/docs.mjs";
import { adapters, isCI, PG_CONNECTION, S3_ENDPOINT } from "./support/adapters.mjs";

// Postgres and S3 are there whenever scripts/test.sh runs (and must be with CI=true); a bare
// `node --test` elsewhere skips those two runs, saying why.
const pgStatus = await adapters.find((a) => a.name === "postgres").available();
const s3Status = await adapters.find((a) => a.name === "s3").available();
const unavailable = (status, what) => (!status.ok && !isCI ? `${what} unavailable: ${status.reason}` : false);

const work = mkdtempSync(join(tmpdir(), "persist-pack-"));
const project = join(work, "project");
after(() => rmSync(work, { recursive: true, force: true }));

let setupError;

async function npm(args, cwd, timeoutMs) {
  const r = await run("npm", args, { cwd, timeoutMs });
  assert.equal(r.code, 0, `npm ${args.join(" ")} failed: ${describeRun(r)}`);
  return r;
}

function tsxCli() {
  const pkg = JSON.parse(readFileSync(join(project, "node_modules", "tsx", "package.json"), "utf8"));
  const bin = typeof pkg.bin === "string" ? pkg.bin : pkg.bin.tsx;
  return join(project, "node_modules", "tsx", bin);
}

describe("npm package", { timeout: 2_400_000 }, () => {
  before(async () => {
    try {
      const packed = await npm(["pack", "--json", "--pack-destination", work], REPO_ROOT, 1_200_000);
      const tarballs = readdirSync(work).filter((f) => f.endsWith(".tgz"));
      assert.equal(tarballs.length, 1, `expected one tarball, got ${tarballs}: ${packed.stdout.slice(-2000)}`);
      const tarball = join(work, tarballs[0]);
      mkdirSync(project, { recursive: true });
      writeFileSync(join(project, "package.json"), JSON.stringify({ name: "persist-pack-check", version: "1.0.0", private: true, type: "module" }, null, 2));
      await npm(["install", "--no-audit", "--no-fund", "--loglevel=error", tarball, "typescript", "tsx", "@types/node@20"], project, 900_000);
    } catch (e) {
      setupError = e;
    }
  }, { timeout: 2_200_000 });

  const ready = () => { if (setupError) throw setupError; };

  it("the docs page has ts snippets, including the SQLite one", () => {
    assert.ok(snippets.length >= 5, `found ${snippets.length} ts blocks in ${DOCS}`);
    assert.ok(snippets.some((s) => /adapter:\s*"sqlite"/.test(s)));
  });

  it("every ts snippet of the docs type-checks with tsc --strict (nodenext)", { timeout: 300_000 }, async () => {
    ready();
    const files = snippets.map((code, i) => {
      const file = `snippet-${i + 1}.ts`;
      writeFileSync(join(project, file), asModule(code));
      return file;
    });
    const tsc = join(project, "node_modules", "typescript", "bin", "tsc");
    const r = await run(process.execPath, [tsc, "--strict", "--noEmit", "--module", "nodenext", "--moduleResolution", "nodenext",
      "--target", "es2022", "--types", "node", ...files], { cwd: project, timeoutMs: 280_000 });
    assert.equal(r.code, 0, `tsc reported errors:\n${r.stdout}\n${r.stderr}`);
  });

  it("the SQLite snippet runs unchanged with tsx and creates ./data/my-app.db", { timeout: 120_000 }, async () => {
    ready();
    const sqlite = snippets.find((s) => /adapter:\s*"sqlite"/.test(s));
    const code = `${asModule(sqlite)}
await store.kv.set("pack-check", { ok: true, n: 1 });
console.log("KV=" + JSON.stringify(await store.kv.get("pack-check")));
await store.close();
`;
    writeFileSync(join(project, "run-sqlite.ts"), code);
    rmSync(join(project, "data"), { recursive: true, force: true });
    const r = await run(process.execPath, [tsxCli(), "run-sqlite.ts"], { cwd: project, timeoutMs: 110_000 });
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /KV=\{"ok":true,"n":1\}/);
    assert.ok(existsSync(join(project, "data", "my-app.db")), "./data/my-app.db was not created");
  });

  it("the Postgres snippet runs unchanged with PG_PASSWORD set (store my-app, schema public)", { timeout: 120_000, skip: unavailable(pgStatus, "postgres") }, async () => {
    ready();
    const pg = snippets.find((s) => /adapter:\s*"postgres"/.test(s));
    const key = `pack-check-${process.pid}`;
    writeFileSync(join(project, "run-postgres.ts"), `${asModule(pg)}
await store.kv.set(${JSON.stringify(key)}, { ok: true });
console.log("PG=" + JSON.stringify({ adapter: store.adapter, value: await store.kv.get(${JSON.stringify(key)}), deleted: await store.kv.delete(${JSON.stringify(key)}) }));
await store.close();
`);
    const r = await run(process.execPath, [tsxCli(), "run-postgres.ts"], { cwd: project, timeoutMs: 110_000, env: { ...process.env, PG_PASSWORD: PG_CONNECTION.password } });
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /PG=\{"adapter":"postgres","value":\{"ok":true\},"deleted":true\}/);
  });

  it("the S3 snippet runs unchanged against the local server (AWS_ENDPOINT_URL_S3, bucket my-persist-bucket)", { timeout: 120_000, skip: unavailable(s3Status, "S3 server") }, async () => {
    ready();
    const s3 = snippets.find((s) => /adapter:\s*"s3"/.test(s));
    const res = await fetch(`${S3_ENDPOINT}/my-persist-bucket`, { method: "PUT", signal: AbortSignal.timeout(5000) });
    assert.ok(res.ok || res.status === 409, `creating my-persist-bucket: HTTP ${res.status}`);
    const key = `pack-check-${process.pid}.txt`;
    writeFileSync(join(project, "run-s3.ts"), `${asModule(s3)}
await store.blobs.put(${JSON.stringify(key)}, "hello", { contentType: "text/plain" });
const body = await store.blobs.get(${JSON.stringify(key)});
console.log("S3=" + JSON.stringify({ adapter: store.adapter, body: body?.toString(), deleted: await store.blobs.delete(${JSON.stringify(key)}) }));
await store.close();
`);
    const env = { ...process.env, AWS_ENDPOINT_URL_S3: S3_ENDPOINT, AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test" };
    const r = await run(process.execPath, [tsxCli(), "run-s3.ts"], { cwd: project, timeoutMs: 110_000, env });
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /S3=\{"adapter":"s3","body":"hello","deleted":true\}/);
  });

  it("the custom adapter snippet runs with tsx and gives a working, empty store", { timeout: 120_000 }, async () => {
    ready();
    const custom = snippets.find((s) => /PersistAdapter/.test(s));
    assert.ok(custom, "custom adapter snippet not found");
    const code = `${asModule(custom)}
console.log("CUSTOM=" + JSON.stringify({ adapter: store.adapter, value: (await store.kv.get("nothing")) ?? null }));
await store.close();
`;
    writeFileSync(join(project, "run-custom.ts"), code);
    const r = await run(process.execPath, [tsxCli(), "run-custom.ts"], { cwd: project, timeoutMs: 110_000 });
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /CUSTOM=\{"adapter":"custom","value":null\}/);
  });

  it("loads through require() and import, exporting createStore and PersistError", { timeout: 120_000 }, async () => {
    ready();
    const body = (m) => `
const ok = typeof ${m}.createStore === "function" && typeof ${m}.PersistError === "function";
const s = await ${m}.createStore({ name: "load-check", path: ":memory:" });
await s.kv.set("a", [1]);
const v = await s.kv.get("a");
await s.close();
let persistError = false;
try { await ${m}.createStore({}); } catch (e) { persistError = e instanceof ${m}.PersistError && e.code === "INVALID_CONFIG"; }
console.log("LOAD=" + JSON.stringify({ ok, v, adapter: s.adapter, persistError }));
`;
    writeFileSync(join(project, "check.cjs"), `const m = require("@cuitty/persist");\n(async () => {${body("m")}})().catch((e) => { console.error(e); process.exit(1); });\n`);
    writeFileSync(join(project, "check.mjs"), `import * as m from "@cuitty/persist";\nimport { createStore, PersistError } from "@cuitty/persist";\nif (createStore !== m.createStore || PersistError !== m.PersistError) throw new Error("named exports differ");\n${body("m")}`);
    const expected = 'LOAD={"ok":true,"v":[1],"adapter":"sqlite","persistError":true}';
    for (const file of ["check.cjs", "check.mjs"]) {
      const r = await run(process.execPath, [file], { cwd: project, timeoutMs: 60_000 });
      assert.equal(r.code, 0, `${file}: ${describeRun(r)}`);
      assert.ok(r.stdout.includes(expected), `${file}: ${r.stdout}`);
    }
  });
});
