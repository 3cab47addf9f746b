import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { it } from "node:test";
import {
  conformance, openFresh, collect, rejectsWith, byteOrder, assertIsoUtc, randomName,
} from "./support/util.mjs";

const sha = (buf) => createHash("sha256").update(buf).digest("hex");

async function readAll(readable) {
  const chunks = [];
  for await (const c of readable) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks);
}

/** Splits a buffer into irregular chunks. */
function* irregularChunks(buf) {
  const sizes = [1, 7, 4096, 65536 + 3, 1 << 20, 333];
  let off = 0, i = 0;
  while (off < buf.length) {
    const n = sizes[i++ % sizes.length];
    yield new Uint8Array(buf.subarray(off, off + n));
    off += n;
  }
}

function failingReadable(goodChunks, error) {
  let i = 0;
  return new Readable({
    read() {
      if (i < goodChunks.length) this.push(goodChunks[i++]);
      else setTimeout(() => this.destroy(error), 5);
    },
  });
}

await conformance("blobs", (a) => {
  it("put from a Uint8Array returns BlobInfo; get returns an equal Buffer", async (t) => {
    const s = await openFresh(a, t);
    const bytes = new Uint8Array([0, 1, 2, 250, 255, 10, 13, 0]);
    const before = Date.now();
    const info = await s.blobs.put("bin", bytes);
    assert.equal(info.key, "bin");
    assert.equal(info.size, 8);
    assert.equal(info.contentType, "application/octet-stream");
    assert.equal(typeof info.etag, "string");
    assert.ok(info.etag.length > 0);
    assert.deepEqual(info.metadata, {});
    assertIsoUtc(info.updatedAt, "updatedAt");
    assert.ok(Math.abs(Date.parse(info.updatedAt) - before) < 60_000);
    const got = await s.blobs.get("bin");
    assert.ok(Buffer.isBuffer(got), "get() must return a Buffer");
    assert.ok(got.equals(Buffer.from(bytes)));
  });

  it("put from a string stores UTF-8", async (t) => {
    const s = await openFresh(a, t);
    const text = "héllo wörld — 日本 😀\n\0end";
    const info = await s.blobs.put("text", text);
    assert.equal(info.size, Buffer.byteLength(text, "utf8"));
    const got = await s.blobs.get("text");
    assert.ok(got.equals(Buffer.from(text, "utf8")));
    assert.equal(got.toString("utf8"), text);
  });

  it("put from a Node Readable and from an async iterable", async (t) => {
    const s = await openFresh(a, t);
    const data = randomBytes(300_000);
    const r = await s.blobs.put("readable", Readable.from(irregularChunks(data)));
    assert.equal(r.size, data.length);
    assert.ok((await s.blobs.get("readable")).equals(data));
    async function* gen() { for (const c of irregularChunks(data)) { await null; yield c; } }
    const i = await s.blobs.put("iterable", gen());
    assert.equal(i.size, data.length);
    assert.ok((await s.blobs.get("iterable")).equals(data));
    const classic = new Readable({ read() {} });
    classic.push(Buffer.from("abc"));
    classic.push(Buffer.from("def"));
    classic.push(null);
    assert.equal((await s.blobs.put("classic", classic)).size, 6);
    assert.equal((await s.blobs.get("classic")).toString(), "abcdef");
  });

  it("an empty blob is stored and read back as an empty Buffer", async (t) => {
    const s = await openFresh(a, t);
    const info = await s.blobs.put("empty", new Uint8Array(0));
    assert.equal(info.size, 0);
    const got = await s.blobs.get("empty");
    assert.ok(Buffer.isBuffer(got));
    assert.equal(got.length, 0);
    assert.equal((await s.blobs.head("empty")).size, 0);
    assert.equal((await readAll(await s.blobs.stream("empty"))).length, 0);
  });

  it("contentType and metadata are stored and returned by head, get is unaffected", async (t) => {
    const s = await openFresh(a, t);
    const info = await s.blobs.put("doc.json", '{"a":1}', {
      contentType: "application/json",
      metadata: { owner: "ada", "x-note": "héllo", empty: "" },
    });
    assert.equal(info.contentType, "application/json");
    assert.deepEqual(info.metadata, { owner: "ada", "x-note": "héllo", empty: "" });
    const head = await s.blobs.head("doc.json");
    assert.deepEqual(head, info);
    assert.equal((await s.blobs.get("doc.json")).toString(), '{"a":1}');
    const plain = await s.blobs.head((await s.blobs.put("plain", "x")).key);
    assert.equal(plain.contentType, "application/octet-stream");
    assert.deepEqual(plain.metadata, {});
  });

  it("absent blobs: get/head undefined, stream NOT_FOUND, delete false", async (t) => {
    const s = await openFresh(a, t);
    assert.equal(await s.blobs.get("none"), undefined);
    assert.equal(await s.blobs.get("none", { range: { start: 0, end: 1 } }), undefined);
    assert.equal(await s.blobs.head("none"), undefined);
    await rejectsWith(() => s.blobs.stream("none"), "NOT_FOUND");
    assert.equal(await s.blobs.delete("none"), false);
  });

  it("delete removes the blob and returns true", async (t) => {
    const s = await openFresh(a, t);
    await s.blobs.put("d", "bye");
    await s.blobs.put("keep", "stay");
    assert.equal(await s.blobs.delete("d"), true);
    assert.equal(await s.blobs.get("d"), undefined);
    assert.equal(await s.blobs.head("d"), undefined);
    assert.equal(await s.blobs.delete("d"), false);
    assert.deepEqual((await collect(s.blobs.list())).map((b) => b.key), ["keep"]);
    assert.equal((await s.blobs.get("keep")).toString(), "stay");
  });

  it("overwriting replaces body, size, contentType and metadata, and changes the etag every time", async (t) => {
    const s = await openFresh(a, t);
    const i1 = await s.blobs.put("k", "first version", { contentType: "text/plain", metadata: { v: "1" } });
    const i2 = await s.blobs.put("k", new Uint8Array([1, 2]));
    assert.equal(i2.size, 2);
    assert.equal(i2.contentType, "application/octet-stream");
    assert.deepEqual(i2.metadata, {});
    assert.notEqual(i2.etag, i1.etag);
    const i3 = await s.blobs.put("k", new Uint8Array([1, 2]));
    assert.notEqual(i3.etag, i2.etag, "etag must change on every put, even with the same body");
    assert.equal((await s.blobs.head("k")).etag, i3.etag);
    assert.ok((await s.blobs.get("k")).equals(Buffer.from([1, 2])));
  });

  it("get with a range: start inclusive, end exclusive, end omitted reads to the end", async (t) => {
    const s = await openFresh(a, t);
    const data = Buffer.from("0123456789abcdef");
    await s.blobs.put("r", data);
    const range = async (start, end) => (await s.blobs.get("r", { range: end === undefined ? { start } : { start, end } })).toString();
    assert.equal(await range(2, 5), "234");
    assert.equal(await range(0, 1), "0");
    assert.equal(await range(10), "abcdef");
    assert.equal(await range(0), data.toString());
    assert.equal(await range(0, 16), data.toString());
    assert.equal(await range(15, 16), "f");
    assert.equal(await range(4, 4), "");
  });

  it("stream returns a Readable of the whole blob, or of a range", async (t) => {
    const s = await openFresh(a, t);
    const data = randomBytes(200_003);
    await s.blobs.put("s", data);
    const r = await s.blobs.stream("s");
    assert.ok(r instanceof Readable, "stream() must resolve to a stream.Readable");
    assert.ok((await readAll(r)).equals(data));
    assert.ok((await readAll(await s.blobs.stream("s", { range: { start: 1000, end: 150_000 } }))).equals(data.subarray(1000, 150_000)));
    assert.ok((await readAll(await s.blobs.stream("s", { range: { start: 199_000 } }))).equals(data.subarray(199_000)));
  });

  it("list yields BlobInfo in ascending UTF-8 byte order, by prefix, with limit", async (t) => {
    const s = await openFresh(a, t);
    const keys = ["img/b.png", "img/a.png", "img/é.png", "img/😀.png", "img/\uFF5E.png", "img2/x", "imf", "doc/1", "img/sub/c.png", "a%b", "a_b", "axb"];
    for (const k of keys) await s.blobs.put(k, k, { contentType: "text/plain" });
    const all = await collect(s.blobs.list());
    assert.deepEqual(all.map((b) => b.key), [...keys].sort(byteOrder));
    for (const b of all) {
      assert.equal(b.size, Buffer.byteLength(b.key));
      assert.equal(b.contentType, "text/plain");
      assert.equal(typeof b.etag, "string");
      assert.deepEqual(b.metadata, {});
      assertIsoUtc(b.updatedAt);
      assert.deepEqual(b, await s.blobs.head(b.key));
    }
    const img = keys.filter((k) => k.startsWith("img/")).sort(byteOrder);
    assert.deepEqual((await collect(s.blobs.list({ prefix: "img/" }))).map((b) => b.key), img);
    assert.deepEqual((await collect(s.blobs.list({ prefix: "img/", limit: 2 }))).map((b) => b.key), img.slice(0, 2));
    assert.deepEqual((await collect(s.blobs.list({ limit: 1 }))).map((b) => b.key), [[...keys].sort(byteOrder)[0]]);
    assert.deepEqual((await collect(s.blobs.list({ prefix: "a%" }))).map((b) => b.key), ["a%b"]);
    assert.deepEqual((await collect(s.blobs.list({ prefix: "a_" }))).map((b) => b.key), ["a_b"]);
    assert.deepEqual(await collect(s.blobs.list({ prefix: "zzz" })), []);
  });

  it("a body stream that errors mid-way rejects with INVALID_ARGUMENT (cause = the stream's error) and keeps the previous blob", async (t) => {
    const s = await openFresh(a, t);
    const original = randomBytes(100_000);
    const before = await s.blobs.put("k", original, { contentType: "image/png", metadata: { v: "1" } });
    const boom = new Error("disk on fire");
    const err = await rejectsWith(
      () => s.blobs.put("k", failingReadable([randomBytes(70_000), randomBytes(70_000)], boom)), "INVALID_ARGUMENT");
    assert.equal(err.cause, boom, "cause must be the stream's error");
    assert.ok((await s.blobs.get("k")).equals(original), "the previous blob must be intact");
    assert.deepEqual(await s.blobs.head("k"), before);
    // the same with an async iterable that throws
    const boom2 = new TypeError("iterator broke");
    async function* bad() { yield new Uint8Array(50_000); yield new Uint8Array(50_000); throw boom2; }
    const err2 = await rejectsWith(() => s.blobs.put("k", bad()), "INVALID_ARGUMENT");
    assert.equal(err2.cause, boom2);
    assert.ok((await s.blobs.get("k")).equals(original));
  });

  it("a failed put of a new key leaves nothing behind", async (t) => {
    const s = await openFresh(a, t);
    const boom = new Error("network gone");
    const err = await rejectsWith(() => s.blobs.put("new", failingReadable([Buffer.alloc(10_000, 1)], boom)), "INVALID_ARGUMENT");
    assert.equal(err.cause, boom);
    assert.equal(await s.blobs.head("new"), undefined);
    assert.equal(await s.blobs.get("new"), undefined);
    assert.deepEqual(await collect(s.blobs.list()), []);
    // and the key is usable afterwards
    await s.blobs.put("new", "ok");
    assert.equal((await s.blobs.get("new")).toString(), "ok");
  });

  it("a multi-MiB blob round-trips byte-exact through put/get/stream/range", async (t) => {
    const s = await openFresh(a, t);
    const data = randomBytes(6 * 1024 * 1024 + 12_345);
    const digest = sha(data);
    const i1 = await s.blobs.put("big-buf", data);
    assert.equal(i1.size, data.length);
    assert.equal(sha(await s.blobs.get("big-buf")), digest);
    const i2 = await s.blobs.put("big-stream", Readable.from(irregularChunks(data)));
    assert.equal(i2.size, data.length);
    assert.equal(sha(await readAll(await s.blobs.stream("big-stream"))), digest);
    assert.equal(sha(await s.blobs.get("big-stream")), digest);
    const start = 1024 * 1024 - 3, end = 3 * 1024 * 1024 + 7;
    assert.ok((await s.blobs.get("big-buf", { range: { start, end } })).equals(data.subarray(start, end)));
    assert.ok((await readAll(await s.blobs.stream("big-stream", { range: { start, end } }))).equals(data.subarray(start, end)));
    const tail = data.length - 5;
    assert.ok((await s.blobs.get("big-stream", { range: { start: tail } })).equals(data.subarray(tail)));
    assert.equal((await s.blobs.head("big-stream")).size, data.length);
  });

  it("two store names never see each other's blobs", async (t) => {
    const location = randomName("loc");
    const s1 = await a.open(randomName(), { location });
    t.after(() => s1.close().catch(() => {}));
    const s2 = await a.open(randomName(), { location });
    t.after(() => s2.close().catch(() => {}));
    await s1.blobs.put("same", "one");
    assert.equal(await s2.blobs.get("same"), undefined);
    assert.equal(await s2.blobs.head("same"), undefined);
    assert.deepEqual(await collect(s2.blobs.list()), []);
    await s2.blobs.put("same", "two");
    assert.equal((await s1.blobs.get("same")).toString(), "one");
    assert.equal(await s2.blobs.delete("same"), true);
    assert.equal((await s1.blobs.get("same")).toString(), "one");
  });

  if (a.caps?.persistent) {
    it("blobs survive close and reopen", async (t) => {
      const name = randomName();
      const location = randomName("loc");
      const data = randomBytes(1_500_000);
      const s1 = await a.open(name, { location });
      const info = await s1.blobs.put("keep", data, { metadata: { m: "1" } });
      await s1.close();
      const s2 = await a.open(name, { location });
      t.after(() => s2.close().catch(() => {}));
      assert.deepEqual(await s2.blobs.head("keep"), info);
      assert.ok((await s2.blobs.get("keep")).equals(data));
    });
  }
});
