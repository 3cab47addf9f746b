// S3-specific tests against moto on loopback (scripts/ensure-s3.sh): the layout other S3 tools
// see, the docs config shape, multipart and ranged reads, conditional writes between two store
// objects, retries (a fault injector in front of moto), and errors (wrong secret on the
// signature-checking instance, missing bucket).
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { describe, it, before } from "node:test";
import { inspect } from "node:util";
import { join } from "node:path";
import { createStore } from "@cuitty/persist";
import { S3_ENDPOINT, s3Bucket, s3Config, isCI } from "./support/adapters.mjs";
import { randomName, collect } from "./support/util.mjs";

const AUTH_ENDPOINT = process.env.PERSIST_S3_AUTH_ENDPOINT ?? "http://127.0.0.1:9001";
const authFile = join(process.env.PERSIST_S3_VENV ?? "/var/tmp/cuitty-persist-s3venv", "auth-9001.json");
const sha = (b) => createHash("sha256").update(b).digest("hex");
// moto (without signature checks) picks the service from the Authorization header; a path ending
// in .json is otherwise not routed to S3. Plain HTTP, as any S3 tool sends it.
const S3_AUTH = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
const s3fetch = (path, init = {}) => fetch(`${S3_ENDPOINT}/${path}`, { ...init, headers: { authorization: S3_AUTH, ...init.headers } });

let bucket;
let available = true;
try { bucket = await s3Bucket(); } catch (e) {
  available = false;
  if (isCI) throw new Error(`S3 server unavailable with CI=true: ${e.message} (run scripts/ensure-s3.sh)`);
  console.log(`# S3 server unavailable, skipping: ${e.message} (run scripts/ensure-s3.sh)`);
}

async function listKeys(prefix) {
  const res = await s3fetch(`${bucket}?list-type=2&prefix=${encodeURIComponent(prefix)}`);
  assert.equal(res.status, 200);
  const xml = await res.text();
  return [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]);
}

const prefixes = new WeakMap();
async function open(name, prefix, extra = {}) {
  const s = await createStore(s3Config(name, { bucket, prefix, ...extra }));
  prefixes.set(s, prefix);
  return s;
}
/** The prefix a test store was opened with. */
const s3Prefix = (s) => prefixes.get(s);

describe("s3", { skip: !available && "no S3 server" }, () => {
  it("lays out objects other S3 tools understand", async () => {
    const prefix = `${randomName("layout")}/`;
    const s = await open("layout", prefix);
    try {
      await s.records.collection("users").insert({ name: "Ada" }, { id: "u1" });
      await s.kv.set("settings/theme", { dark: true });
      await s.events.append("orders", [{ type: "created", data: { n: 1 } }, { type: "paid" }]);
      await s.blobs.put("docs/a.txt", "hello", { contentType: "text/plain", metadata: { owner: "ada", note: "héllo" } });
      const keys = await listKeys(prefix);
      for (const k of ["records/users/u1.json", "kv/settings.~theme", "events/orders/0000000000000001",
        "events/orders/0000000000000002", "streams/orders", "blobs/docs/a.txt"]) {
        assert.ok(keys.includes(prefix + k), `${k} in ${keys.join(", ")}`);
      }
      const rec = await (await s3fetch(`${bucket}/${prefix}records/users/u1.json`)).json();
      assert.equal(rec.id, "u1");
      assert.equal(rec.version, 1);
      assert.deepEqual(rec.data, { name: "Ada" });
      const head = await s3fetch(`${bucket}/${prefix}blobs/docs/a.txt`);
      assert.equal(head.headers.get("content-type"), "text/plain");
      assert.equal(head.headers.get("x-amz-meta-owner"), "ada");
      assert.equal(await head.text(), "hello");
      const info = await s.blobs.head("docs/a.txt");
      assert.deepEqual(info.metadata, { owner: "ada", note: "héllo" });
      assert.equal(info.contentType, "text/plain");
      // An object written by another tool reads as a blob too.
      await s3fetch(`${bucket}/${prefix}blobs/foreign.bin`, {
        method: "PUT", body: "xyz", headers: { "content-type": "image/png", "x-amz-meta-from": "curl" },
      });
      const foreign = await s.blobs.head("foreign.bin");
      assert.equal(foreign.size, 3);
      assert.equal(foreign.contentType, "image/png");
      assert.deepEqual(foreign.metadata, { from: "curl" });
      assert.deepEqual((await collect(s.blobs.list({ prefix: "" }))).map((b) => b.key), ["docs/a.txt", "foreign.bin"]);
    } finally { await s.close(); }
  });

  it("runs the docs snippet (bucket, region, credentials) with AWS_ENDPOINT_URL_S3 set", async () => {
    const name = randomName("docs");
    process.env.AWS_ENDPOINT_URL_S3 = S3_ENDPOINT;
    let s;
    try {
      s = await createStore({
        name, adapter: "s3", bucket, region: "us-east-1",
        credentials: { accessKeyId: "test", secretAccessKey: "test" },
      });
    } finally { delete process.env.AWS_ENDPOINT_URL_S3; }
    try {
      assert.equal(s.adapter, "s3");
      await s.blobs.put("x", "1");
      assert.deepEqual(await listKeys(`${name}/`), [`${name}/blobs/x`]);
    } finally { await s.close(); }
  });

  it("streams a ~20 MiB blob up as a multipart upload and reads ranges across parts", async () => {
    const s = await open("mp", `${randomName("mp")}/`);
    try {
      const MiB = 1 << 20;
      const data = randomBytes(20 * MiB + 12345);
      async function* body() { for (let o = 0; o < data.length; o += 700_000) yield data.subarray(o, o + 700_000); }
      const info = await s.blobs.put("big", Readable.from(body()), { contentType: "application/x-test" });
      assert.equal(info.size, data.length);
      const raw = await s3fetch(`${bucket}/${s3Prefix(s)}blobs/big`, { method: "HEAD" });
      assert.match(raw.headers.get("etag") ?? "", /-3"?$/, "a 3-part multipart upload");
      assert.equal(sha(await s.blobs.get("big")), sha(data));
      const P = 8 * MiB;
      for (const [start, end] of [[P - 5, P + 5], [0, 1], [2 * P, undefined], [data.length - 1, data.length + 10], [data.length + 5, undefined]]) {
        const got = await s.blobs.get("big", { range: { start, end } });
        assert.ok(got.equals(data.subarray(start, end)), `range ${start}-${end}`);
      }
      const chunks = [];
      for await (const c of await s.blobs.stream("big", { range: { start: P - 3 } })) chunks.push(c);
      assert.equal(sha(Buffer.concat(chunks)), sha(data.subarray(P - 3)));
    } finally { await s.close(); }
  });

  it("a failed streamed put aborts the multipart upload: nothing partial appears", async () => {
    const s = await open("abort", `${randomName("abort")}/`);
    try {
      async function* body() { yield randomBytes(9 << 20); throw new Error("boom"); }
      await assert.rejects(s.blobs.put("half", Readable.from(body())), (e) => e.code === "INVALID_ARGUMENT");
      assert.equal(await s.blobs.head("half"), undefined);
      // The abort runs as the put fails; give it a moment, then no multipart upload remains.
      const uploads = async () => (await s3fetch(`${bucket}?uploads&prefix=${encodeURIComponent(s3Prefix(s))}`)).text();
      let xml = await uploads();
      for (let i = 0; i < 50 && /<Upload>/.test(xml); i++) { await new Promise((r) => setTimeout(r, 100)); xml = await uploads(); }
      assert.doesNotMatch(xml, /<Upload>/);
      assert.match(xml, /ListMultipartUploadsResult/);
    } finally { await s.close(); }
  });

  it("two store objects racing: create-only and compare-and-set have exactly one winner", async () => {
    const prefix = `${randomName("race")}/`;
    const a = await open("race", prefix), b = await open("race", prefix);
    try {
      for (let round = 0; round < 5; round++) {
        const id = `r${round}`;
        const res = await Promise.allSettled([a, b, a, b].map((s, i) => s.records.collection("c").insert({ by: i }, { id })));
        assert.equal(res.filter((r) => r.status === "fulfilled").length, 1, `insert ${id}`);
        for (const r of res) if (r.status === "rejected") assert.equal(r.reason.code, "CONFLICT");

        const kres = await Promise.allSettled([a, b, a, b].map((s, i) => s.kv.set(`k${round}`, i, { ifVersion: null })));
        assert.equal(kres.filter((r) => r.status === "fulfilled").length, 1, `kv create ${round}`);

        const { version } = await a.kv.getEntry(`k${round}`);
        const cas = await Promise.allSettled([a, b, a, b].map((s, i) => s.kv.set(`k${round}`, 10 + i, { ifVersion: version })));
        assert.equal(cas.filter((r) => r.status === "fulfilled").length, 1, `kv cas ${round}`);
        for (const r of cas) if (r.status === "rejected") assert.equal(r.reason.code, "CONFLICT");

        const doc = await a.records.collection("c").get(id);
        const upd = await Promise.allSettled([a, b].map((s, i) => s.records.collection("c").update(id, { n: i }, { ifVersion: doc.version })));
        assert.equal(upd.filter((r) => r.status === "fulfilled").length, 1, `record cas ${round}`);
      }
      // Unconditional updates from both never lose a version.
      await a.records.collection("c").insert({ n: 0 }, { id: "cnt" });
      await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).records.collection("c").update("cnt", { [`f${i}`]: i })));
      const end = await b.records.collection("c").get("cnt");
      assert.equal(end.version, 11);
      assert.equal(Object.keys(end.data).filter((k) => k.startsWith("f")).length, 10);
    } finally { await a.close(); await b.close(); }
  });

  it("event appends from two store objects interleave gapless, batches contiguous", async () => {
    const prefix = `${randomName("ev")}/`;
    const a = await open("ev", prefix), b = await open("ev", prefix);
    try {
      const appends = [];
      for (let i = 0; i < 12; i++) {
        const s = i % 2 ? a : b;
        const batch = i % 3 === 0 ? [{ type: "x", data: { i, j: 0 } }, { type: "x", data: { i, j: 1 } }] : [{ type: "x", data: { i, j: 0 } }];
        appends.push(s.events.append("st", batch));
      }
      const seqs = (await Promise.all(appends)).map((r) => r.seq);
      assert.equal(new Set(seqs).size, 12);
      const events = await collect(b.events.read("st"));
      assert.deepEqual(events.map((e) => e.seq), Array.from({ length: 16 }, (_, i) => i + 1));
      for (const e of events) if (e.data.j === 1) {
        const prev = events[e.seq - 2];
        assert.deepEqual([prev.data.i, prev.data.j], [e.data.i, 0], "a batch stays contiguous");
      }
      const rev = await collect(a.events.read("st", { reverse: true, limit: 3 }));
      assert.deepEqual(rev.map((e) => e.seq), [16, 15, 14]);
      await assert.rejects(a.events.append("st", { type: "late" }, { expectedSeq: 15 }), (e) => e.code === "CONFLICT");
      assert.equal((await b.events.append("st", { type: "ok" }, { expectedSeq: 16 })).seq, 17);
    } finally { await a.close(); await b.close(); }
  });

  it("a wrong secret on the signature-checking server is PERMISSION, with no secret anywhere", async (t) => {
    let auth;
    try { auth = JSON.parse(readFileSync(authFile, "utf8")); } catch (e) {
      if (isCI) throw e;
      t.skip(`no ${authFile}: run scripts/ensure-s3.sh`);
      return;
    }
    const wrong = `wrong-${randomBytes(12).toString("hex")}`;
    const cfg = { name: "auth", adapter: "s3", bucket: "no-such-bucket-here", region: "us-east-1", endpoint: AUTH_ENDPOINT };
    const err = await createStore({ ...cfg, credentials: { accessKeyId: auth.accessKeyId, secretAccessKey: wrong } })
      .then(() => assert.fail("opened with a wrong secret"), (e) => e);
    assert.equal(err.code, "PERMISSION", err.message);
    assert.match(err.message, /credentials|access/i);
    for (const text of [err.message, err.stack, inspect(err, { depth: 10 })]) assert.ok(!text.includes(wrong), text);
    // The right secret gets past the signature check and meets the missing bucket.
    const ok = await createStore({ ...cfg, credentials: { accessKeyId: auth.accessKeyId, secretAccessKey: auth.secretAccessKey } })
      .then(() => assert.fail("opened a missing bucket"), (e) => e);
    assert.equal(ok.code, "INVALID_CONFIG", ok.message);
    // An open store does not show its secret either.
    const secret = `s3cr3t-${randomBytes(8).toString("hex")}`;
    const s = await open("insp", `${randomName("insp")}/`, { credentials: { accessKeyId: "test", secretAccessKey: secret } });
    try { assert.ok(!inspect(s, { depth: 10, showHidden: true }).includes(secret)); } finally { await s.close(); }
  });

  it("a missing bucket is INVALID_CONFIG naming the bucket; an unreachable server is CONNECTION", async () => {
    const missing = `missing-${randomBytes(4).toString("hex")}`;
    const err = await createStore(s3Config("m", { bucket: missing })).then(() => assert.fail("opened"), (e) => e);
    assert.ok(["INVALID_CONFIG", "NOT_FOUND"].includes(err.code), err.message);
    assert.match(err.message, new RegExp(`${missing}.*does not exist.*create it`));
    const down = await createStore(s3Config("m", { bucket, endpoint: "http://127.0.0.1:9" })).then(() => assert.fail("opened"), (e) => e);
    assert.equal(down.code, "CONNECTION", down.message);
    assert.match(down.message, /127\.0\.0\.1:9/);
  });

  it("without credentials: the standard AWS chain (the environment) signs, and AWS_ENDPOINT_URL is honoured", async () => {
    const vars = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
    const saved = Object.fromEntries(vars.map((v) => [v, process.env[v]]));
    delete process.env.AWS_ENDPOINT_URL_S3;
    process.env.AWS_ENDPOINT_URL = S3_ENDPOINT;
    process.env.AWS_ACCESS_KEY_ID = "test";
    process.env.AWS_SECRET_ACCESS_KEY = "test";
    const name = randomName("chain");
    let s;
    try {
      s = await createStore({ name, adapter: "s3", bucket, region: "us-east-1" });
      await s.kv.set("k", { from: "env" });
      assert.deepEqual(await s.kv.get("k"), { from: "env" });
      // The default prefix is `${name}/`, on the server the environment named.
      assert.deepEqual(await listKeys(`${name}/`), [`${name}/kv/k`]);
    } finally {
      await s?.close();
      for (const v of vars) {
        if (saved[v] === undefined) delete process.env[v];
        else process.env[v] = saved[v];
      }
    }
  });

  it("503 SlowDown is retried (kv and blobs); a server that keeps answering 500 is ADAPTER after at most 5 attempts", { timeout: 120_000 }, async () => {
    // A fault injector in front of the real server: it answers the next `failNext` requests
    // (or every one, with `failAll`) itself with an S3 error, and forwards the rest to moto.
    const target = new URL(S3_ENDPOINT);
    const plan = { failNext: 0, failAll: null, failed: [] };
    const proxy = http.createServer((req, res) => {
      const fault = plan.failAll ?? (plan.failNext > 0 ? (plan.failNext--, { status: 503, code: "SlowDown" }) : null);
      if (fault) {
        plan.failed.push(`${req.method} ${fault.status}`);
        req.resume();
        res.writeHead(fault.status, { "content-type": "application/xml" });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code}</Code><Message>injected</Message></Error>`);
        return;
      }
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    });
    await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const endpoint = `http://127.0.0.1:${proxy.address().port}`;
    const s = await open("retry", `${randomName("retry")}/`, { endpoint });
    try {
      plan.failNext = 2;
      await s.kv.set("k", { v: 1 });
      assert.equal(plan.failed.length, 2, "both injected faults were answered, and the set still succeeded");
      assert.deepEqual(await s.kv.get("k"), { v: 1 });
      plan.failed = [];
      plan.failNext = 3;
      await s.blobs.put("b", Buffer.from("retried body"), { contentType: "text/plain" });
      assert.equal(plan.failed.length, 3);
      assert.equal((await s.blobs.get("b")).toString(), "retried body");
      // What went through is on the real server: a store without the proxy sees it.
      const direct = await open("retry-direct", s3Prefix(s));
      try {
        assert.deepEqual(await direct.kv.get("k"), { v: 1 });
        assert.equal((await direct.blobs.head("b")).contentType, "text/plain");
      } finally { await direct.close(); }
      // A server that keeps failing: the retries run out and the call fails saying so.
      plan.failed = [];
      plan.failAll = { status: 500, code: "InternalError" };
      const err = await s.kv.get("k").then(() => assert.fail("a get through a failing server succeeded"), (e) => e);
      assert.equal(err.code, "ADAPTER", err.message);
      assert.match(err.message, /kept failing after retries \(HTTP 500 InternalError\)/);
      assert.ok(plan.failed.length >= 2 && plan.failed.length <= 5, `attempts: ${plan.failed.length}`);
    } finally {
      plan.failAll = null;
      await s.close();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });
});
