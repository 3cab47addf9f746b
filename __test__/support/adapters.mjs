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
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
];

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
