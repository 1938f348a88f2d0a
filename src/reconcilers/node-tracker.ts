// When each node started to look unusable (cordoned, tainted, NotReady), as this replica observed it.
// Node objects do not record when a cordon or a custom taint happened, and the settle period needs that.
// Every replica watches every node, so each keeps its own copy; it is a rebuildable cache, not state:
// a replica that starts late just waits at most one extra settle period.

import type { V1Node } from "@kubernetes/client-node";

/** Whether the node looks unusable in any way: cordoned, a NoSchedule or NoExecute taint, not Ready. */
function looksUnusable(node: V1Node): boolean {
  const tainted = (node.spec?.taints ?? []).some(
    (t) => t.effect === "NoSchedule" || t.effect === "NoExecute",
  );
  const ready = node.status?.conditions?.find((c) => c.type === "Ready")?.status ?? "True";
  return !!node.spec?.unschedulable || tainted || ready !== "True";
}

export class NodeTracker {
  /** Node name → when it went bad (ms), kept while it stays bad in any way. */
  private readonly since = new Map<string, number>();

  observe(node: V1Node, now = Date.now()): void {
    const name = node.metadata?.name;
    if (!name) return;
    if (!looksUnusable(node)) {
      this.since.delete(name);
      return;
    }
    // Keep the first time it went bad while it stays bad in any way.
    if (!this.since.has(name)) this.since.set(name, now);
  }

  forget(name: string): void {
    this.since.delete(name);
  }

  /** When the node started to look unusable; `now` if we have not seen it happen. */
  troubleSince(name: string, now = Date.now()): number {
    return this.since.get(name) ?? now;
  }
}
