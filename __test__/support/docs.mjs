// The ts snippets of the published docs page, and how each becomes a runnable module.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { REPO_ROOT } from "./proc.mjs";

export const DOCS = resolve(REPO_ROOT, "..", "shared", "docs", "storage-adapters.md");

const IMPORTS_CREATE_STORE = /import\s*\{[^}]*\bcreateStore\b[^}]*\}\s*from\s*["']@cuitty\/persist["']/;

/** Every ```ts block of the docs page, in page order. */
export const snippets = [...readFileSync(DOCS, "utf8").matchAll(/^```ts[^\S\n]*\n([\s\S]*?)^```/gm)].map((m) => m[1]);

/** A snippet as a module: the import the page shows once at its top added when the snippet has
 * none of its own (the snippet itself is unchanged). */
export const asModule = (code) =>
  `${IMPORTS_CREATE_STORE.test(code) ? "" : 'import { createStore } from "@cuitty/persist";\n'}${code}\nexport {};\n`;
