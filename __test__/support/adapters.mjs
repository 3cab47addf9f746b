// Adapter factories for the conformance suite. Every conformance test takes its
// adapter from `adapters` (filtered by PERSIST_ADAPTERS); later adapters (custom
// JS, postgres, s3, p2p) each add one factory here.
//
// A factory is { name, caps, available?(), open(storeName, opts?) -> Promise<Store> }.
//   open(storeName)                   a store of that name in a fresh location
//   open(storeName, { location: L })  stores opened with the same L share one
//                                     underlying database/bucket/topic, so two
//                                     names in one location can be compared.
//   available()                       optional; resolves { ok, reason }.
//   caps.kind                         the value expected in `store.adapter`.
//   caps.persistent                   data survives close() + open() of the same name/location.
import { createStore } from "@cuitty/persist";
import { customAdapters } from "./custom-adapters.mjs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";

let sqliteDir;
function sqliteTempDir() {
  if (!sqliteDir) {
    sqliteDir = mkdtempSync(join(tmpdir(), "persist-conf-"));
    process.once("exit", () => {
      try { rmSync(sqliteDir, { recursive: true, force: true }); } catch {}
    });
  }
  return sqliteDir;
}

export const adapters = [
  {
    name: "sqlite",
    caps: { kind: "sqlite", persistent: true },
    async available() { return { ok: true }; },
    async open(storeName, { location } = {}) {
      const file = join(sqliteTempDir(), `${location ?? storeName}.db`);
      return createStore({ name: storeName, adapter: "sqlite", path: file });
    },
  },
  {
    // The local server that scripts/ensure-postgres.sh prepares. Each test run gets its own
    // schemas (dropped at exit), so runs never collide; stores without a location share the
    // run's schema (separated by name), a location is a schema of its own.
    name: "postgres",
    caps: { kind: "postgres", persistent: true },
    async available() {
      try {
        const s = await createStore(pgConfig("probe"));
        await s.close();
        return { ok: true };
      } catch (e) {
        return { ok: false, reason: `${e?.code}: ${e?.message} (run scripts/ensure-postgres.sh)` };
      }
    },
    async open(storeName, { location } = {}) {
      return createStore(pgConfig(storeName, location));
    },
  },
  {
    // moto on loopback (scripts/ensure-s3.sh). One bucket per test process; a location is a
    // prefix of its own, and the store name separates stores inside it.
    name: "s3",
    caps: { kind: "s3", persistent: true },
    async available() {
      try {
        await s3Bucket();
        return { ok: true };
      } catch (e) {
        return { ok: false, reason: `${e?.message} (run scripts/ensure-s3.sh)` };
      }
    },
    async open(storeName, { location } = {}) {
      return createStore(s3Config(storeName, { prefix: `${location ?? "_"}/${storeName}/`, bucket: await s3Bucket() }));
    },
  },
  {
    // One p2p store with no peers: listens on 127.0.0.1 only, DHT discovery without bootstrap
    // peers, so nothing leaves the machine. A location is a folder; the name a replica in it.
    name: "p2p",
    caps: { kind: "p2p", persistent: true },
    async available() { return { ok: true }; },
    async open(storeName, { location } = {}) {
      const path = join(p2pTempDir(), encodeURIComponent(location ?? "_"), encodeURIComponent(storeName));
      return createStore({
        name: storeName, adapter: "p2p", path,
        discovery: { method: "dht", topic: `conformance-${process.pid}` },
        listen: ["/ip4/127.0.0.1/tcp/0"],
      });
    },
  },
  ...customAdapters,
];

let p2pDir;
function p2pTempDir() {
  if (!p2pDir) {
    p2pDir = mkdtempSync(join(tmpdir(), "persist-p2p-"));
    process.once("exit", () => {
      try { rmSync(p2pDir, { recursive: true, force: true }); } catch {}
    });
  }
  return p2pDir;
}

export const S3_ENDPOINT = process.env.PERSIST_S3_ENDPOINT ?? "http://127.0.0.1:9000";
let s3BucketName;
/** This process's bucket on the local S3 server, created on first use (moto needs no signature). */
export async function s3Bucket() {
  if (s3BucketName) return s3BucketName;
  const name = `persist-${process.pid}-${randomBytes(4).toString("hex")}`;
  const res = await fetch(`${S3_ENDPOINT}/${name}`, { method: "PUT", signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`creating bucket ${name} at ${S3_ENDPOINT} failed: HTTP ${res.status}`);
  s3BucketName = name;
  return name;
}

export function s3Config(name, extra = {}) {
  return {
    name, adapter: "s3", region: "us-east-1", endpoint: S3_ENDPOINT,
    credentials: { accessKeyId: "test", secretAccessKey: "test" }, ...extra,
  };
}

export const PG_CONNECTION = {
  host: "127.0.0.1", port: 5432, database: "persist", user: "persist",
  password: process.env.PG_PASSWORD ?? "persist",
};
const pgRun = `t_${process.pid}_${randomBytes(3).toString("hex")}`;
const pgSchemas = new Set();

/** A schema of this test run (created by the store on first use, dropped when the process exits). */
export function pgSchema(location) {
  const schema = location === undefined ? pgRun : `${pgRun}_${location.replace(/[^A-Za-z0-9_]/g, "_")}`.slice(0, 63);
  if (pgSchemas.size === 0) process.once("exit", dropPgSchemas);
  pgSchemas.add(schema);
  return schema;
}

export function pgConfig(name, location, extra = {}) {
  return { name, adapter: "postgres", connection: { ...PG_CONNECTION }, schema: pgSchema(location), ...extra };
}

/** Runs SQL through psql as the test role; returns stdout (throws on failure). */
export function pgPsql(sql) {
  const r = spawnSync("psql", ["-X", "-At", "-h", PG_CONNECTION.host, "-p", String(PG_CONNECTION.port),
    "-U", PG_CONNECTION.user, "-d", PG_CONNECTION.database, "-v", "ON_ERROR_STOP=1", "-c", sql],
  { env: { ...process.env, PGPASSWORD: PG_CONNECTION.password }, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
  return r.stdout;
}

function dropPgSchemas() {
  const list = [...pgSchemas].map((s) => `DROP SCHEMA IF EXISTS "${s}" CASCADE;`).join(" ");
  try { pgPsql(list); } catch {}
}

export const isCI = /^(1|true|yes)$/i.test(process.env.CI ?? "");

/** The factories chosen by PERSIST_ADAPTERS (all when unset), plus unknown names. */
export function selectedAdapters() {
  const env = process.env.PERSIST_ADAPTERS;
  if (env === undefined || env.trim() === "") return adapters;
  const names = env.split(",").map((s) => s.trim()).filter(Boolean);
  return names.map((n) => adapters.find((a) => a.name === n) ?? { name: n, unknown: true });
}

/**
 * Resolves the adapters to run, each as { name, adapter } or { name, error }.
 * An unknown name in PERSIST_ADAPTERS, or an unavailable adapter that was named
 * explicitly or while CI=true, comes back with `error` so that the suite FAILS
 * for it (never a skip). Outside CI an unavailable adapter that was not asked
 * for by name is left out with a diagnostic line.
 */
export async function resolveAdapters() {
  const explicit = (process.env.PERSIST_ADAPTERS ?? "").trim() !== "";
  const out = [];
  for (const a of selectedAdapters()) {
    if (a.unknown) {
      out.push({ name: a.name, error: `PERSIST_ADAPTERS names an unknown adapter "${a.name}" (known: ${adapters.map((x) => x.name).join(", ")})` });
      continue;
    }
    let st;
    try { st = a.available ? await a.available() : { ok: true }; }
    catch (e) { st = { ok: false, reason: e?.stack ?? String(e) }; }
    if (st?.ok) out.push({ name: a.name, adapter: a });
    else if (isCI || explicit) out.push({ name: a.name, error: `adapter "${a.name}" is unavailable: ${st?.reason ?? "unknown reason"}` });
    else console.log(`# adapter "${a.name}" unavailable and not selected (CI=true would make this a failure): ${st?.reason}`);
  }
  if (out.length === 0) out.push({ name: "none", error: "no adapter selected: check PERSIST_ADAPTERS" });
  return out;
}
