// A durable custom adapter: one file per key in a folder. Copy it and adapt it.
//
//   import { createStore } from "@cuitty/persist";
//   import { fileAdapter } from "./file-adapter.mjs";
//   const store = await createStore({ name: "my-app", adapter: fileAdapter("./data/my-app") });
//
// Each file holds { key, value } as JSON (blob chunks arrive as Buffers and are kept as
// base64). File names are the key, URI-encoded, or a hash of it when that would be too long
// for the file system. Writes go to a temporary file that is renamed into place, so a crash
// never leaves a half-written entry. `list` reads the folder; fine for thousands of keys, slow
// for millions (a real backend would keep an index).
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

export function fileAdapter(folder) {
  const ready = mkdir(folder, { recursive: true });
  const fileOf = (key) => {
    const encoded = encodeURIComponent(key);
    return join(folder, encoded.length <= 200 ? encoded : "h-" + createHash("sha256").update(key).digest("hex"));
  };
  const decode = (text) => {
    const entry = JSON.parse(text);
    return { key: entry.key, value: "bytes" in entry ? Buffer.from(entry.bytes, "base64") : entry.value };
  };
  let tmpCounter = 0;
  return {
    async get(key) {
      await ready;
      try {
        return decode(await readFile(fileOf(key), "utf8")).value;
      } catch (err) {
        if (err.code === "ENOENT") return undefined;
        throw err;
      }
    },
    async put(key, value) {
      await ready;
      const entry = Buffer.isBuffer(value) ? { key, bytes: value.toString("base64") } : { key, value };
      const file = fileOf(key);
      const tmp = `${file}.tmp-${process.pid}-${tmpCounter++}`;
      await writeFile(tmp, JSON.stringify(entry));
      await rename(tmp, file);
    },
    async delete(key) {
      await ready;
      await rm(fileOf(key), { force: true });
    },
    async *list(prefix) {
      await ready;
      for (const name of await readdir(folder)) {
        if (name.includes(".tmp-")) continue;
        // Short names are the key itself: skip non-matching files without reading them.
        if (!name.startsWith("h-") && !decodeURIComponent(name).startsWith(prefix)) continue;
        let text;
        try {
          text = await readFile(join(folder, name), "utf8");
        } catch (err) {
          if (err.code === "ENOENT") continue; // deleted while we listed
          throw err;
        }
        const entry = decode(text);
        if (entry.key.startsWith(prefix)) yield entry;
      }
    },
  };
}
