import { spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const SUPPORT_DIR = dirname(fileURLToPath(import.meta.url));
export const TEST_DIR = resolve(SUPPORT_DIR, "..");
export const REPO_ROOT = resolve(TEST_DIR, "..");
export const supportScript = (name) => join(SUPPORT_DIR, name);

/**
 * Runs a command to completion. Resolves { code, signal, stdout, stderr }; never rejects on a
 * non-zero exit (the caller asserts), rejects only if it cannot be started or times out.
 */
export function run(cmd, args, { cwd, env, timeoutMs = 120_000, input } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d) => { stdout += d; });
    child.stderr.setEncoding("utf8").on("data", (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${cmd} ${args.join(" ")} timed out after ${timeoutMs} ms\nstdout:\n${stdout.slice(-4000)}\nstderr:\n${stderr.slice(-4000)}`));
    }, timeoutMs);
    child.on("error", (e) => { clearTimeout(timer); reject(e); });
    child.on("close", (code, signal) => { clearTimeout(timer); resolvePromise({ code, signal, stdout, stderr }); });
    if (input !== undefined) child.stdin.end(input); else child.stdin.end();
  });
}

/** Runs `node <script> ...args`. */
export const runNode = (script, args = [], opts = {}) => run(process.execPath, [script, ...args], opts);

/** Formats a run result for assertion messages. */
export const describeRun = (r) => `exit ${r.code} signal ${r.signal}\nstdout:\n${r.stdout.slice(-4000)}\nstderr:\n${r.stderr.slice(-4000)}`;

/**
 * Spawns `node <script> ...args` and calls onLine(line) for every complete stdout line.
 * Returns { child, exited: Promise<{code, signal}>, stderr(): string }.
 */
export function spawnNodeLines(script, args, onLine, { cwd, nodeArgs = [] } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
  let buf = "", err = "";
  child.stdout.setEncoding("utf8").on("data", (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      onLine(line);
    }
  });
  child.stderr.setEncoding("utf8").on("data", (d) => { err += d; });
  const exited = new Promise((r) => child.on("close", (code, signal) => r({ code, signal })));
  return { child, exited, stderr: () => err };
}
