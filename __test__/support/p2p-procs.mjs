// Spawns p2p peers (support/p2p-peer.mjs) as child processes, optionally inside a network
// namespace (`netns`: run through `ip netns exec <name>`), and talks to them.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createServer } from "node:net";

const PEER = fileURLToPath(new URL("./p2p-peer.mjs", import.meta.url));

export class Peer {
  #next = 1;
  #waits = new Map();
  events = [];
  #eventWaiters = [];
  constructor(config, { netns, prefix } = {}) {
    const args = [PEER, JSON.stringify(config)];
    const [cmd, argv] = prefix ? [prefix[0], [...prefix.slice(1), process.execPath, ...args]]
      : netns ? ["ip", ["netns", "exec", netns, process.execPath, ...args]] : [process.execPath, args];
    this.proc = spawn(cmd, argv, { stdio: ["pipe", "pipe", "inherit"], cwd: process.cwd() });
    this.exited = new Promise((resolve) => this.proc.once("exit", resolve));
    this.ready = new Promise((resolve, reject) => {
      this.proc.once("exit", (code) => reject(new Error(`peer exited with ${code} before it was ready`)));
      createInterface({ input: this.proc.stdout }).on("line", (line) => {
        const msg = JSON.parse(line);
        if (msg.ready) { this.peerId = msg.peerId; resolve(this); return; }
        if (msg.event) {
          this.events.push(msg);
          for (const w of this.#eventWaiters.splice(0)) w();
          return;
        }
        const w = this.#waits.get(msg.id);
        if (!w) return;
        this.#waits.delete(msg.id);
        if (msg.ok) w.resolve(msg.value);
        else w.reject(Object.assign(new Error(msg.error?.message), { code: msg.error?.code }));
      });
    });
  }

  /** Runs `fn(store)` (an async function; its source is sent) in the peer; resolves its value. */
  run(fn) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waits.set(id, { resolve, reject });
      this.proc.stdin.write(JSON.stringify({ id, code: fn.toString() }) + "\n");
    });
  }

  /** Closes the store and waits for the process to end. */
  async stop() {
    this.proc.stdin.end();
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(t);
  }

  kill() { this.proc.kill("SIGKILL"); return this.exited; }
}

export async function startPeer(config, opts) {
  const p = new Peer(config, opts);
  await p.ready;
  return p;
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on("error", reject);
  });
}

/** Polls `fn` until it returns true or `ms` pass. */
export async function until(fn, ms = 10000, what = "condition") {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
