// Conformance factories for custom JS adapters: a Map-backed one and the durable file adapter
// of examples/. A custom adapter is one store's key space (store names are not part of the
// keys), so each (location, name) gets its own Map or folder; opening the same pair again
// reaches the same data.
import { createStore } from "@cuitty/persist";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileAdapter } from "../../examples/file-adapter.mjs";

/** The adapter a user would write first: a Map. */
export function mapAdapter(map = new Map()) {
  return {
    async get(key) { return map.get(key); },
    async put(key, value) { map.set(key, value); },
    async delete(key) { map.delete(key); },
    async *list(prefix) {
      for (const [key, value] of map) if (key.startsWith(prefix)) yield { key, value };
    },
  };
}

const maps = new Map();
let filesDir;

export const customAdapters = [
  {
    name: "custom-map",
    caps: { kind: "custom", persistent: true },
    async available() { return { ok: true }; },
    async open(storeName, { location } = {}) {
      const id = `${location ?? ""}/${storeName}`;
      if (!maps.has(id)) maps.set(id, new Map());
      return createStore({ name: storeName, adapter: mapAdapter(maps.get(id)) });
    },
  },
  {
    name: "custom-files",
    caps: { kind: "custom", persistent: true },
    async available() { return { ok: true }; },
    async open(storeName, { location } = {}) {
      if (!filesDir) {
        filesDir = mkdtempSync(join(tmpdir(), "persist-files-"));
        process.once("exit", () => { try { rmSync(filesDir, { recursive: true, force: true }); } catch {} });
      }
      return createStore({ name: storeName, adapter: fileAdapter(join(filesDir, encodeURIComponent(`${location ?? ""}/${storeName}`))) });
    },
  },
];
