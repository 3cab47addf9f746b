// A private LAN of network namespaces for mDNS tests: one namespace per peer (lo + eth1,
// 10.77.0.<i>/24) and one holding the bridge that joins their veths. Nothing is created in the
// host namespace, so multicast never reaches a real interface. Needs root (`ip netns add`).
// Names carry the test process's pid so parallel runs never collide.
import { execFileSync } from "node:child_process";

const ip = (...args) => execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();

/** The interface names listed in /proc/net/dev inside namespace `ns`. */
export function interfacesIn(ns) {
  const text = execFileSync("ip", ["netns", "exec", ns, "cat", "/proc/net/dev"]).toString();
  return text.split("\n").slice(2).map((l) => l.split(":")[0].trim()).filter(Boolean).sort();
}

export class Lan {
  /** `label`: a short word for the names; `count`: peers. */
  constructor(label, count) {
    this.prefix = `p2pt-${label}-${process.pid}`;
    this.bridge = `${this.prefix}-br`;
    this.count = count;
    this.created = [];
  }

  ns(i) { return `${this.prefix}-${i}`; }

  /** Creates the namespaces, then refuses (throws) unless each peer namespace holds only lo and
   * its own veth. */
  create() {
    const add = (name) => { ip("netns", "add", name); this.created.push(name); };
    add(this.bridge);
    ip("-n", this.bridge, "link", "add", "br0", "type", "bridge");
    ip("-n", this.bridge, "link", "set", "br0", "up");
    for (let i = 1; i <= this.count; i++) {
      const ns = this.ns(i);
      add(ns);
      ip("-n", ns, "link", "add", "eth1", "type", "veth", "peer", "name", `v${i}`, "netns", this.bridge);
      ip("-n", this.bridge, "link", "set", `v${i}`, "master", "br0");
      ip("-n", this.bridge, "link", "set", `v${i}`, "up");
      ip("-n", ns, "link", "set", "lo", "up");
      ip("-n", ns, "addr", "add", `10.77.0.${i}/24`, "dev", "eth1");
      ip("-n", ns, "link", "set", "eth1", "up");
    }
    for (let i = 1; i <= this.count; i++) {
      const seen = interfacesIn(this.ns(i));
      if (JSON.stringify(seen) !== JSON.stringify(["eth1", "lo"])) {
        throw new Error(`refusing to run mDNS in ${this.ns(i)}: it sees interfaces ${seen.join(", ")}, expected only lo and eth1`);
      }
    }
    return this;
  }

  /** Cuts peer `i` off the LAN (its bridge port goes down) or joins it again. */
  down(i) { ip("-n", this.bridge, "link", "set", `v${i}`, "down"); }
  up(i) { ip("-n", this.bridge, "link", "set", `v${i}`, "up"); }

  /** Deletes every namespace this Lan created (errors ignored: used in after()). */
  destroy() {
    for (const name of this.created.splice(0).reverse()) {
      try { ip("netns", "del", name); } catch {}
    }
  }
}
