import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { PersistError } from "@cuitty/persist";
import { resolveAdapters } from "./adapters.mjs";

export const randomName = (prefix = "t") => `${prefix}-${randomBytes(6).toString("hex")}`;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const jsonClone = (v) => JSON.parse(JSON.stringify(v));
export const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|\+00:00)$/;

export function assertIsoUtc(s, what = "timestamp") {
  assert.equal(typeof s, "string", `${what} is not a string: ${s}`);
  assert.match(s, ISO_UTC, `${what} is not ISO-8601 UTC: ${s}`);
  assert.ok(!Number.isNaN(Date.parse(s)), `${what} does not parse: ${s}`);
}

/** UTF-8 byte order comparator. */
export const byteOrder = (a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

export async function collect(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}

export function assertPersistError(err, codes) {
  codes = [].concat(codes);
  assert.ok(err instanceof PersistError,
    `expected a PersistError, got ${err?.constructor?.name ?? typeof err}: ${err?.message ?? err}`);
  assert.ok(err instanceof Error, "PersistError is not an Error");
  assert.ok(codes.includes(err.code), `expected code ${codes.join("|")}, got ${err.code}: ${err.message}`);
  assert.equal(typeof err.message, "string");
  assert.ok(err.message.length > 0, "empty error message");
  return err;
}

/** fn() must return a promise (no synchronous throw) that rejects with a PersistError of one of `codes`. */
export async function rejectsWith(fn, codes, what = "") {
  codes = [].concat(codes);
  let p;
  try { p = fn(); }
  catch (e) { assert.fail(`${what} threw synchronously instead of returning a rejected promise: ${e?.code} ${e?.message}`); }
  assert.ok(p && typeof p.then === "function", `${what} did not return a promise`);
  let rejected = false, err, value;
  try { value = await p; } catch (e) { rejected = true; err = e; }
  assert.ok(rejected, `${what} expected a rejection with ${codes.join("|")}, but it resolved to ${safe(value)}`);
  return assertPersistError(err, codes);
}

/** fn() must return an async iterable (no synchronous throw) whose first next() rejects with one of `codes`. */
export async function iterRejectsWith(fn, codes, what = "") {
  codes = [].concat(codes);
  let iterable, iterator;
  try { iterable = fn(); }
  catch (e) { assert.fail(`${what} threw synchronously instead of returning an iterable that rejects: ${e?.code} ${e?.message}`); }
  assert.ok(iterable && typeof iterable[Symbol.asyncIterator] === "function", `${what} did not return an async iterable`);
  try { iterator = iterable[Symbol.asyncIterator](); }
  catch (e) { assert.fail(`${what}[Symbol.asyncIterator]() threw synchronously: ${e?.code} ${e?.message}`); }
  let rejected = false, err, value;
  try { value = await iterator.next(); } catch (e) { rejected = true; err = e; }
  assert.ok(rejected, `${what} expected first next() to reject with ${codes.join("|")}, got ${safe(value)}`);
  return assertPersistError(err, codes);
}

function safe(v) {
  try { return JSON.stringify(v)?.slice(0, 200); } catch { return String(v); }
}

/** Opens a fresh store (random name) on adapter `a`; closed after the test. */
export async function openFresh(a, t, opts) {
  const store = await a.open(randomName(), opts);
  t.after(() => store.close().catch(() => {}));
  return store;
}

/** Defines one describe block per selected adapter; unavailable ones become failing tests. */
export async function conformance(namespace, define) {
  for (const target of await resolveAdapters()) {
    describe(`${namespace} on ${target.name}`, () => {
      if (target.error) {
        it("adapter is available", () => assert.fail(target.error));
        return;
      }
      define(target.adapter);
    });
  }
}

/** Waits until predicate() is truthy, polling; fails after timeoutMs. */
export async function waitUntil(predicate, timeoutMs, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}
